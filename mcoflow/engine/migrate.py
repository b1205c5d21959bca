"""Schema creation and upgrades through Alembic."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import URL

MIGRATIONS = Path(__file__).parent / "migrations"
_ASSIGNMENT = re.compile(
    r"""^(revision|down_revision)\b[^=\n]*=\s*(?:"([^"\n]*)"|'([^'\n]*)'|None)\s*$""", re.M
)


@functools.cache
def head_revision() -> str | None:
    """The newest revision, read from the scripts' text without Alembic (which takes a
    good part of a second to import and load them); None unless they form one chain."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        found = {name: dq or sq for name, dq, sq in _ASSIGNMENT.findall(script.read_text())}
        if not found.get("revision") or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def alembic_config(url: URL) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic is synchronous: use the sync flavour of the same driver.
    sync = url.set(drivername="sqlite") if url.get_backend_name() == "sqlite" else url
    cfg.attributes["url"] = sync
    return cfg


def upgrade(url: URL, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current(url: URL) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(alembic_config(url).attributes["url"])
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()

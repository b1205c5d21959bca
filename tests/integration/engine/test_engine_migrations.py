"""The Alembic migrations build exactly the schema the store's code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from mcoflow.engine.migrate import alembic_config, current, upgrade
from mcoflow.engine.schema import metadata
from mcoflow.engine.store import normalize_url


def _head(url: URL) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_migrating_to_head_gives_the_declared_schema(db_url: str) -> None:
    url = normalize_url(db_url)
    upgrade(url)
    assert current(url) == _head(url) == "0006"
    engine = create_engine(alembic_config(url).attributes["url"])
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_an_existing_database_upgrades_one_revision_at_a_time(db_url: str) -> None:
    url = normalize_url(db_url)
    upgrade(url, "0001")
    assert current(url) == "0001"
    upgrade(url)
    assert current(url) == _head(url)

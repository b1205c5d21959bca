"""`mcoflow executor --check`: the settings, the caller and host keys, the broker, and the
database at this mcoflow's schema, without serving."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcoflow.checks import (
    ANSWER_TIMEOUT,
    Area,
    Checklist,
    Problem,
    broker_answers,
    check_transport_url,
    is_mcollective_url,
    private_key,
    trusted_keys,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from mcoflow.settings import Settings


def check_executor(overrides: dict[str, Any], imports: list[str]) -> int:
    """Print one line per check; the exit status (0: ready to run). ``overrides`` are the
    command's options (None: not given), as `mcoflow executor` takes them."""
    checklist = Checklist("mcoflow executor --check")
    settings = checklist.value(Area.SETTINGS, "settings", lambda: _load(overrides))
    if settings is None:
        return checklist.finish((Area.KEYS, Area.BROKER, Area.DATABASE))
    url = settings.transport_url
    mcollective = _is_mcollective(url)
    plan = (
        (
            Area.SETTINGS,
            (
                ("transport_url", lambda: check_transport_url("transport_url", url, settings)),
                *((("mcollective_psk", lambda: _psk(settings)),) if mcollective else ()),
                ("database_url", lambda: _database_url(settings.database_url)),
                ("imports", lambda: _imports([*settings.imports, *imports])),
            ),
        ),
        (
            Area.KEYS,
            (
                ("caller key", lambda: _caller_key(settings)),
                ("host keys", lambda: _NO_HOST_KEYS if mcollective else _hosts(settings)),
            ),
        ),
        (Area.BROKER, (("broker", lambda: broker_answers("transport_url", url, settings)),)),
        (Area.DATABASE, (("database", lambda: _database(settings.database_url)),)),
    )
    return asyncio.run(checklist.areas(plan))


_NO_HOST_KEYS = "not used: MCollective nodes sign their replies with mcollective_psk"


def _is_mcollective(url: str) -> bool:
    try:
        return is_mcollective_url(url)
    except ValueError:  # the transport_url check says what is wrong
        return False


def _psk(settings: Settings) -> str:
    """MCollective nodes drop a request whose digest was not made with their plugin.psk."""
    psk = settings.mcollective_psk
    if psk is None or not psk.get_secret_value():
        raise Problem(
            "mcollective_psk: not set; stomp+mcollective:// needs the nodes' plugin.psk "
            "(MCOFLOW_MCOLLECTIVE_PSK or mcollective_psk in the config file)"
        )
    return "set (the nodes' plugin.psk)"


def _load(overrides: dict[str, Any]) -> tuple[Settings, str]:
    from mcoflow.settings import SettingsError, config_file, load_settings

    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise Problem(str(exc)) from None
    path = config_file()
    source = f"config file {path}" if path else "no config file (environment and defaults)"
    return settings, f"{source}; caller {settings.caller}, collective {settings.collective}"


def _database_url(url: str) -> str:
    from sqlalchemy.exc import ArgumentError

    from mcoflow.engine.store.base import normalize_url
    from mcoflow.engine.store.unavailable import shown_url

    try:
        return shown_url(normalize_url(url))
    except (ArgumentError, ValueError) as exc:
        raise Problem(f"database_url: {exc}") from None


def _imports(modules: list[str]) -> str:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise Problem(f"imports: cannot import {module!r}: {exc}") from None
    return ", ".join(modules) if modules else "none (the built-in actions)"


def _caller_key(settings: Settings) -> str:
    """orchestrator/<caller>.key signs requests; agents trust its public half, which
    must be in callers/ (under any name) and not in callers/revoked/. A check creates
    neither (the executor would, in a keys_dir it may write)."""
    keys, caller = settings.keys_dir, settings.caller
    path = keys / "orchestrator" / f"{caller}.key"
    init = "create it with `mcoflow keys init` (same keys_dir and caller)"
    mine = _raw(private_key("keys_dir", path, init).public_key())
    if any(_file_raw(p) == mine for p in (keys / "callers" / "revoked").glob("*.pub")):
        raise Problem(
            f"keys_dir: {path} is revoked (in callers/revoked/): agents refuse its "
            "requests; `mcoflow keys rotate` makes a new one"
        )
    published = sorted((keys / "callers").glob("*.pub"))
    if not any(_file_raw(p) == mine for p in published):
        raise Problem(
            f"keys_dir: the public half of {path} is not in {keys / 'callers'}: agents "
            f"given that folder refuse its requests; {init}"
        )
    return f"{path} signs requests as {caller!r}"


def _raw(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _file_raw(path: Path) -> bytes | None:
    from mcoflow.rpc.security import load_public_key

    try:
        return _raw(load_public_key(path))
    except (OSError, ValueError):
        return None


def _hosts(settings: Settings) -> str:
    directory = settings.keys_dir / "hosts"
    names = trusted_keys(
        "keys_dir",
        directory,
        "every reply would be refused: add each host's public key there "
        "(`mcoflow keys host NAME` writes hosts/NAME.pub and the host's host-keys/NAME.key)",
    )
    return f"{directory}: {len(names)} trusted"


async def _database(url: str) -> str:
    """The database answers and its schema is this mcoflow's newest revision."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from mcoflow.engine import Store
    from mcoflow.engine.store.unavailable import describe, shown_url

    store = Store(url)
    shown = shown_url(store.url)
    upgrade = "run `mcoflow db upgrade` with the same settings"
    if _missing_file(store.url.database if not store.is_postgresql else None):
        # connecting would create it
        raise Problem(f"database_url: {shown}: the file does not exist; {upgrade}")
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            async with store.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            revision = await store.schema_revision()
    except TimeoutError:
        raise Problem(f"database_url: {shown}: no answer in {ANSWER_TIMEOUT:g} s") from None
    except (DBAPIError, OSError) as exc:
        raise Problem(f"database_url: {describe(store.url, exc)}") from None
    finally:
        await store.close()
    head = _head()
    if revision is None:
        raise Problem(f"database_url: {shown} has no mcoflow schema; {upgrade}")
    if revision != head:
        raise Problem(
            f"database_url: {shown}: schema at revision {revision}, this mcoflow's is "
            f"{head}; {upgrade} (or, if a newer mcoflow upgraded it, upgrade this one)"
        )
    return f"{shown}: schema at revision {head}"


def _missing_file(database: str | None) -> bool:
    """An SQLite file (not an in-memory database) that is not there."""
    return database not in (None, "", ":memory:") and not Path(str(database)).exists()


def _head() -> str | None:
    from mcoflow.engine.migrate import MIGRATIONS, head_revision

    head = head_revision()
    if head is None:  # not one chain of scripts: ask Alembic
        from alembic.script import ScriptDirectory

        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    return head

"""`mcoflow keys init | host | rotate | use | retire | revoke | list`: the Ed25519 key
pairs, and the caller keys' rotation and revocation (mcoflow.caller_keys)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from mcoflow.cli.app import (
    cli_settings,
    console,
    keys_app,
)

if TYPE_CHECKING:
    from mcoflow.caller_keys import KeyInfo


@keys_app.command("init")
def keys_init() -> None:
    """Create the orchestrator's signing key. In keys_dir/orchestrator and callers/."""
    from mcoflow.orchestrator import ensure_caller_key

    settings = cli_settings()
    key = ensure_caller_key(settings.keys_dir, settings.caller)
    console.print(f"orchestrator key {key}; give agents {settings.keys_dir}/callers/ to trust")


@keys_app.command("host")
def keys_host(
    name: Annotated[str, typer.Argument(help="the key's name: the host's identity")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            help="trust this public key (PEM) the host made itself, e.g. with `openssl "
            "genpkey -algorithm ed25519`, instead of making a key pair here",
        ),
    ] = None,
) -> None:
    """Create a host key pair, or trust a host's own public key.

    The host gets host-keys/NAME.key (copy it to the host's key_file), the
    orchestrator trusts hosts/NAME.pub. Running executors read hosts/ at start:
    restart them after adding a host."""
    from mcoflow.orchestrator import ensure_host_key
    from mcoflow.rpc.security import _check_name

    settings = cli_settings()
    keys = settings.keys_dir
    try:
        _check_name(name)
    except ValueError as exc:
        _fail(ValueError(f"name: {exc}"))
    trusted = keys / "hosts" / f"{name}.pub"
    if public_key is not None:
        _trust_host_key(trusted, public_key)
        return
    if trusted.exists() and not (keys / "host-keys" / f"{name}.key").exists():
        # a new pair would leave the old public half trusted: every reply refused
        _fail(
            ValueError(
                f"{trusted} exists but not its private key host-keys/{name}.key (given to "
                f"the host and removed here?); to give {name} a new key, delete {trusted} "
                "first, then restart the executors"
            )
        )
    key = ensure_host_key(keys, name)
    console.print(f"host key {key}; the orchestrator trusts {trusted}", soft_wrap=True)


def _trust_host_key(trusted: Path, source: Path) -> None:
    """Copy a host's public key to hosts/NAME.pub, once checked."""
    from mcoflow.rpc.security import fingerprint, load_public_key

    try:
        new = fingerprint(load_public_key(source))
    except (OSError, ValueError) as exc:
        _fail(ValueError(f"--public-key: {source}: not a usable Ed25519 public key ({exc})"))
    if trusted.exists():
        try:
            old: str | None = fingerprint(load_public_key(trusted))
        except (OSError, ValueError):
            old = None
        if old != new:
            _fail(
                ValueError(
                    f"{trusted} already holds another key ({(old or 'unreadable')[:16]}); "
                    "delete it first if the host has a new key"
                )
            )
        console.print(f"{trusted} already trusts this key ({new[:16]})", soft_wrap=True)
        return
    trusted.parent.mkdir(parents=True, exist_ok=True)
    trusted.write_bytes(source.read_bytes())
    console.print(f"the orchestrator trusts {trusted} ({new[:16]})", soft_wrap=True)


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2) from None


@keys_app.command("rotate")
def keys_rotate(
    stage: Annotated[
        bool,
        typer.Option(
            "--stage",
            help="publish the new key only; sign with it after `mcoflow keys use NAME` "
            "(for agents on other machines: copy callers/ to them first)",
        ),
    ] = False,
) -> None:
    """Make a new signing key.

    Its public half goes to callers/ (agents pick it up), the orchestrator signs
    with it (running processes within a second). The old key stays trusted until
    `mcoflow keys retire OLD`."""
    from mcoflow.caller_keys import KeysError, rotate, signing_fingerprint

    settings = cli_settings()
    try:
        old = signing_fingerprint(settings.keys_dir, settings.caller)
        new = rotate(settings.keys_dir, settings.caller, stage=stage)
    except (KeysError, OSError, ValueError) as exc:
        _fail(exc)
    console.print(f"new key {new.name} ({new.fingerprint[:16]}), {new.state}: {new.path}")
    if stage:
        console.print(f"copy callers/ to the agents, then `mcoflow keys use {new.name}`")
    elif old is not None:
        console.print(
            f"the old key {old[:16]} stays trusted: once no request signed with it is in "
            f"flight (their ttl), `mcoflow keys retire {old[:16]}`"
        )


@keys_app.command("use")
def keys_use(name: Annotated[str, typer.Argument(help="staged key: name or fingerprint")]) -> None:
    """Sign with a staged key (`rotate --stage`) from now on."""
    from mcoflow.caller_keys import use

    key = _change(use, name)
    console.print(f"signing with {key.name} ({key.fingerprint[:16]}) from now on")


@keys_app.command("retire")
def keys_retire(name: Annotated[str, typer.Argument(help="key name or fingerprint")]) -> None:
    """Stop trusting a caller key.

    Agents stop trusting it: moved from callers/ to retired/."""
    from mcoflow.caller_keys import retire

    key = _change(retire, name)
    console.print(f"retired {key.name} ({key.fingerprint[:16]}): {key.path}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="key name or fingerprint")]) -> None:
    """Refuse a caller key.

    Agents refuse it from their next look at callers/ (trusted_keys_reload seconds,
    or at once on SIGHUP): moved to callers/revoked/."""
    from mcoflow.caller_keys import revoke

    key = _change(revoke, name)
    console.print(f"revoked {key.name} ({key.fingerprint[:16]}): {key.path}")


def _change(operation: Callable[[Path, str, str], KeyInfo], name: str) -> KeyInfo:
    from mcoflow.caller_keys import KeysError

    settings = cli_settings()
    try:
        return operation(settings.keys_dir, settings.caller, name)
    except (KeysError, OSError, ValueError) as exc:
        _fail(exc)


@keys_app.command("list")
def keys_list(
    trusted: Annotated[
        Path | None,
        typer.Option(
            "--trusted", metavar="DIR", help="list an agent's trusted_keys directory instead"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """List the keys with their fingerprint and state.

    States: signing, staged, trusted, retired, revoked."""
    import json

    from rich.table import Table

    from mcoflow.caller_keys import KeysError, list_directory, list_keys

    settings = cli_settings()
    try:
        rows = list_directory(trusted) if trusted else list_keys(settings.keys_dir, settings.caller)
    except (KeysError, OSError, ValueError) as exc:
        _fail(exc)
    if as_json:
        for row in rows:
            fields = {"kind": row.kind, "name": row.name, "fingerprint": row.fingerprint}
            print(json.dumps({**fields, "state": row.state.value, "path": str(row.path)}))
        return
    table = Table("kind", "name", "fingerprint", "state")
    for row in rows:
        table.add_row(row.kind, row.name, row.fingerprint[:16], row.state.value)
    console.print(table)

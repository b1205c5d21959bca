"""`mcoflow keys init | host`: the Ed25519 key pairs."""

from __future__ import annotations

import typer

from mcoflow.cli.app import (
    cli_settings,
    console,
    keys_app,
)


@keys_app.command("init")
def keys_init() -> None:
    """Create the orchestrator's signing key. In keys_dir/orchestrator and callers/."""
    from mcoflow.orchestrator import ensure_caller_key

    settings = cli_settings()
    key = ensure_caller_key(settings.keys_dir, settings.caller)
    console.print(f"orchestrator key {key}; give agents {settings.keys_dir}/callers/ to trust")


@keys_app.command("host")
def keys_host(name: str) -> None:
    """Create a host key pair. The host gets host-keys/NAME.key, the orchestrator
    trusts hosts/NAME.pub."""
    from mcoflow.orchestrator import ensure_host_key

    settings = cli_settings()
    try:
        key = ensure_host_key(settings.keys_dir, name)
    except ValueError as exc:
        console.print(f"[red]error:[/red] name: {exc}")
        raise typer.Exit(2) from None
    console.print(f"host key {key}")

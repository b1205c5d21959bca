"""How `mcoflow serve` protects the web console, from the settings.

Authentication is off only in the embedded default (in-process broker) listening on
loopback with no user or API token configured; everywhere else it is on, and then at
least one user (a login for the pages) or API token must be configured.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mcoflow.settings import Settings
from mcoflow.web.auth import AuthSettings

SECRET_FILE = "web-secret"
MIN_SECRET_LENGTH = 32


class WebConfigError(ValueError):
    """A setting the operator must change before the web console can start."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a name: it may resolve to anything
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def parse_listen(text: str) -> Listen:
    """``127.0.0.1:9292``, ``0.0.0.0:9292``, ``[::1]:9292`` (port 0: any free port)."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or int(port) > 65535:
        raise WebConfigError(
            f"listen: expected HOST:PORT (127.0.0.1:9292, 0.0.0.0:9292, [::1]:9292), got {text!r}"
        )
    return Listen(host, int(port))


def _entries(lines: tuple[str, ...]) -> list[tuple[str, str]]:
    """``NAME:HASH`` lines (checked by Settings) -> (name, hash)."""
    return [(name, digest) for name, _, digest in (line.partition(":") for line in lines)]


def web_auth(settings: Settings, *, embedded: bool) -> AuthSettings:
    """The console's authentication, or WebConfigError saying what to configure."""
    listen = parse_listen(settings.listen)
    users = dict(_entries(settings.web_users))
    tokens = {digest: name for name, digest in _entries(settings.web_api_tokens)}
    if not users and not tokens:
        if embedded and listen.loopback and not settings.trusted_proxies:
            return AuthSettings.loopback()
        if not embedded:
            broker = settings.transport_url.split("://", 1)[0]
            where = f"the broker is {broker}://, not the in-process one"
        elif not listen.loopback:
            where = f"it listens on {settings.listen}, not only on loopback"
        else:  # the proxy is there to serve other machines
            where = f"trusted_proxies is set ({', '.join(settings.trusted_proxies)})"
        raise WebConfigError(
            f"the web console needs a login here ({where}), but no user or API token is "
            "configured. Add a user: run `mcoflow web hash-password NAME` and put the line "
            "it prints in web_users (mcoflow.yaml: `web_users: ['NAME:scrypt$…']`, or "
            """MCOFLOW_WEB_USERS='["NAME:scrypt$…"]'); for the REST API run """
            "`mcoflow web new-token --name NAME` and add its line to web_api_tokens."
        )
    return AuthSettings(enabled=True, users=users, api_tokens=tokens, secret=web_secret(settings))


def web_secret(settings: Settings) -> bytes:
    """The key signing session cookies: configured, or kept under state_dir."""
    if settings.web_secret is not None:
        value = settings.web_secret.get_secret_value().encode()
        if len(value) < MIN_SECRET_LENGTH:
            raise WebConfigError(
                f"web_secret: use at least {MIN_SECRET_LENGTH} random characters, or unset it "
                f"to keep a generated one in {settings.state_dir / SECRET_FILE}"
            )
        return value
    return persisted_secret(settings.state_dir / SECRET_FILE)


def persisted_secret(path: Path) -> bytes:
    """Read the secret at ``path``, or create it readable by this user only. Kept across
    restarts so logins survive them; shared by every process of one state_dir."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(MIN_SECRET_LENGTH) + "\n")
    try:
        os.link(partial, path)  # atomic, and never replaces another process's secret
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise WebConfigError(f"{path} is readable by other users: run `chmod 600 {path}`")
    value = path.read_bytes().strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise WebConfigError(f"{path} is too short: delete it and a new one is made")
    return value

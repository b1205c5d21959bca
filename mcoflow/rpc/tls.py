"""TLS to the brokers: the settings of one connection and the ``ssl.SSLContext`` they
make.

The server's certificate is always checked against ``ca_file`` (or the system's CAs
when unset); ``verify_hostname=False`` only stops checking that it names the host of
the URL (for a broker reached by an address its certificate does not list), and says
so in the log when the transport connects. ``cert_file`` / ``key_file`` are the
client's certificate, for a broker that asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "TLS_SCHEMES",
    "BrokerTlsSettings",
    "TlsError",
    "TlsOptions",
    "check_tls_url",
    "client_context",
    "speaks_tls",
    "tls_refusal",
    "use_tls_url",
    "uses_tls",
]

TLS_SCHEMES = frozenset({"amqps", "tls", "stomp+ssl+mcollective"})
_DEFAULT_PORTS = {"amqp": 5672, "nats": 4222}


class TlsError(ValueError):
    """The TLS settings cannot be used; the message names the file and why."""


class BrokerTlsSettings(Protocol):
    """The ``broker_tls_*`` settings, of the orchestrator's and the agent's settings."""

    @property
    def broker_tls_ca(self) -> Path | None: ...
    @property
    def broker_tls_cert(self) -> Path | None: ...
    @property
    def broker_tls_key(self) -> Path | None: ...
    @property
    def broker_tls_verify_hostname(self) -> bool: ...


@dataclass(frozen=True)
class TlsOptions:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None  # unset: the key is in cert_file
    verify_hostname: bool = True

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise TlsError("a TLS client key needs its certificate (broker_tls_cert)")

    @classmethod
    def from_settings(cls, settings: BrokerTlsSettings) -> TlsOptions:
        return cls(
            ca_file=settings.broker_tls_ca,
            cert_file=settings.broker_tls_cert,
            key_file=settings.broker_tls_key,
            verify_hostname=settings.broker_tls_verify_hostname,
        )

    @property
    def is_default(self) -> bool:
        """Whether nothing differs from the system's CAs and a checked host name."""
        return self == TlsOptions()

    def context(self) -> ssl.SSLContext:
        """A client context: the server's certificate checked against ``ca_file``."""
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=_path(self.ca_file)
            )
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load the TLS CA file {self.ca_file}: {_why(exc)}") from exc
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, _path(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                files = " / ".join(str(p) for p in (self.cert_file, self.key_file) if p)
                raise TlsError(
                    f"cannot load the TLS client certificate {files}: {_why(exc)}"
                ) from exc
        # the chain is still verified (CERT_REQUIRED); only the name is not
        context.check_hostname = self.verify_hostname
        return context


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


def check_tls_url(url: str, options: TlsOptions | None) -> None:
    """TlsError when TLS settings are given for a plain-text broker URL: the operator
    asked for TLS, so falling back to plain text would be a silent mistake."""
    if options is not None and not options.is_default and not uses_tls(url):
        scheme = urlsplit(url).scheme.lower()
        raise TlsError(
            f"TLS settings (broker_tls_*) are set but {scheme}:// is not TLS: "
            "use amqps:// or tls://"
        )


def client_context(url: str, options: TlsOptions | None, log: logging.Logger) -> ssl.SSLContext:
    """The context a transport connects to ``url`` with (a TLS URL); logs that host
    names are not checked when so (once per transport: reconnections reuse it)."""
    options = options or TlsOptions()
    if not options.verify_hostname:
        log.warning(
            "TLS to %s: the server's host name is not checked (broker_tls_verify_hostname "
            "is off): any certificate of the CA is accepted",
            _where(url),
        )
    return options.context()


def tls_refusal(exc: BaseException | None) -> str | None:
    """Why the TLS handshake failed, from ``exc``'s chain; None: it was not TLS."""
    seen: set[int] = set()
    current = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = (current.verify_message or _why(current)).rstrip(".")
            hint = (
                "use a host name the certificate lists (or broker_tls_verify_hostname: false)"
                if "mismatch" in why
                else "is it signed by the CA of broker_tls_ca?"
            )
            return f"the server's TLS certificate was refused ({why}); {hint}"
        if isinstance(current, ssl.SSLError):
            reason = current.reason or _why(current)
            said = reason.replace("_", " ").lower()
            if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
                # the server's alert about our side: a missing, unknown or bad certificate
                return (
                    f"the server refused the client certificate ({said}); check "
                    "broker_tls_cert and broker_tls_key (a CA the server trusts)"
                )
            return f"the TLS handshake failed ({said})"
        current = current.__cause__ or current.__context__
    return None


def use_tls_url(url: str, scheme: str) -> str:
    """The error of a plain-text ``url`` whose server speaks TLS."""
    from mcoflow.rpc.unreachable import safe_url  # (it imports this module)

    return (
        f"cannot connect to the broker {safe_url(url)}: the server speaks TLS on that "
        f"port; use a {scheme}:// URL (and the broker_tls_* settings)"
    )


async def speaks_tls(url: str, *, timeout: float = 3.0) -> bool:
    """Whether the server of ``url`` answers a TLS handshake (any certificate): asked
    when a plain-text URL failed, to tell the operator the port wants TLS."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    if parts.hostname is None or port is None:
        return False
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(parts.hostname, port, ssl=probe)
    except ssl.SSLError as exc:
        # a TLS alert (e.g. "certificate required") is an answer in TLS too
        return "ALERT" in (exc.reason or "")
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    return True


def _where(url: str) -> str:
    parts = urlsplit(url)  # no user or password in a log line
    return f"{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__

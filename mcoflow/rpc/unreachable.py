"""A broker that does not answer, said in one line: its URL (password hidden), why,
and what to do."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from mcoflow.rpc.tls import tls_refusal


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _reason(exc: BaseException | None) -> str:
    seen: set[int] = set()
    current = exc
    while current is not None and id(current) not in seen:  # the root cause says most
        seen.add(id(current))
        if (
            isinstance(current, ConnectionRefusedError)
            or "connect call failed" in str(current).lower()
            or "connection refused" in str(current).lower()
        ):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, (TimeoutError, OSError)) and not str(current):
            return "no answer"
        current = current.__cause__ or current.__context__
    text = " ".join(str(exc).split()) if exc is not None else ""
    return text or (type(exc).__name__ if exc is not None else "no answer")


def broker_unreachable(server: str, url: str, exc: BaseException | None) -> str:
    """``cannot connect to the broker URL: connection refused; is RabbitMQ running …?``"""
    refusal = tls_refusal(exc)
    if refusal is not None:  # it answered: "is it running" would mislead
        return f"cannot connect to the broker {safe_url(url)}: {refusal}"
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}{':' + str(parts.port) if parts.port else ''}"
    return (
        f"cannot connect to the broker {safe_url(url)}: {_reason(exc)}; "
        f"is {server} running and listening on {where}?"
    )

"""A broker that does not answer, said in one line: its URL (password hidden), why,
and what to do."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

from mcoflow.rpc.tls import tls_refusal


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name stays); each of
    a comma-separated list of a cluster's nodes."""
    if "," in url:
        return ",".join(safe_url(part) for part in url.split(","))
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
    refusal = tls_refusal(exc) or _rabbitmq_refusal(url, exc)
    if refusal is not None:  # it answered: "is it running" would mislead
        return f"cannot connect to the broker {safe_url(url)}: {refusal}"
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}{':' + str(parts.port) if parts.port else ''}"
    reason = _reason(exc)
    for part in url.split(","):  # a client's message may quote the URL it was given
        password = urlsplit(part).password
        if password:
            reason = reason.replace(password, "***")
    return (
        f"cannot connect to the broker {safe_url(url)}: {reason}; "
        f"is {server} running and listening on {where}?"
    )


def _rabbitmq_refusal(url: str, exc: BaseException | None) -> str | None:
    """A login or a vhost RabbitMQ refused, said as such (the client's words are a
    protocol error that names neither)."""
    said, current, seen = [], exc, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        said.append(str(current))
        current = current.__cause__ or current.__context__
    text = " ".join(said)
    parts = urlsplit(url)
    user = unquote(parts.username or "guest")
    if "ACCESS_REFUSED" in text and "Login was refused" in text:
        return (
            f"RabbitMQ refused the login of user {user!r}: check the user name and the "
            f"password in the URL (rabbitmqctl authenticate_user {user} PASSWORD)"
        )
    if "Connection.OpenOk" in text and "Connection.Close" in text:
        vhost = unquote(parts.path[1:]) or "/"
        return (
            f"RabbitMQ refused to open vhost {vhost!r} (the URL's path) for user {user!r}: "
            f"it does not exist, or the user has no permissions there (rabbitmqctl "
            f"list_permissions -p {vhost})"
        )
    return None

"""The NATS transport's first connection: bounded in time, over TLS when the URL says
so (and never silently in plain text), and failing with one line that says why.

A comma-separated URL lists a cluster's servers: nats-py tries them in turn, learns
the others from the servers' gossip, and on a lost connection moves to one that
answers; the servers are not shuffled, so the operator's order is the preference."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats
from nats.aio.client import Client

from mcoflow.rpc.cluster import server_urls
from mcoflow.rpc.tls import TlsError, TlsOptions, client_context, tls_refusal, use_tls_url, uses_tls
from mcoflow.rpc.transport import TransportError
from mcoflow.rpc.unreachable import broker_unreachable, safe_url

FIRST_CONNECT_TIMEOUT = 10.0  # seconds a first connection may take (each try: 5 s)

log = logging.getLogger("mcoflow.rpc.transports.nats")


async def first_connection(
    url: str, tls: TlsOptions | None, reconnected: Callable[[], None]
) -> Client:
    """A connection that reconnects by itself afterwards, calling ``reconnected`` each
    time; TransportError if the first one cannot be made."""
    try:
        context = client_context(url, tls, log) if uses_tls(url) else None
    except TlsError as exc:
        raise TransportError(str(exc)) from exc

    failures: list[Exception] = []
    connecting: asyncio.Future[Client] | None = None
    established = False

    async def on_error(exc: Exception) -> None:
        if not established:  # still the first connection: the caller says why, once
            failures.append(exc)
            if connecting is not None and tls_refusal(exc) is not None:
                connecting.cancel()  # a certificate does not change by retrying
            return
        log.warning("NATS: %r", exc)

    async def on_disconnect() -> None:
        log.info("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        client = connecting.result() if connecting is not None and connecting.done() else None
        log.info("NATS: reconnected to %s", _server(client))
        reconnected()  # nats-py awaits this callback

    try:
        # nats-py retries a first connection forever with unlimited reconnects: bound
        # it (not with asyncio.wait_for: on Python 3.11 it can lose a cancellation)
        async with asyncio.timeout(FIRST_CONNECT_TIMEOUT):
            connecting = asyncio.ensure_future(
                nats.connect(
                    server_urls(url),
                    name="mcoflow",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    allow_reconnect=True,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    connect_timeout=5,
                    dont_randomize=True,
                    **({"tls": context} if context is not None else {}),
                )
            )
            nc = await connecting
    except (Exception, asyncio.CancelledError) as exc:
        current = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and current and current.cancelling():
            raise  # this task is cancelled, not only the connection attempt
        cause = failures[-1] if failures else exc
        if context is None and tls_refusal(cause) is not None:
            # nats-py upgrades a nats:// URL when the server requires TLS
            raise TransportError(use_tls_url(url, "tls")) from exc
        raise TransportError(broker_unreachable("the NATS server", url, cause)) from exc
    established = True
    log.info("NATS: connected to %s", _server(nc))
    if context is not None and not _encrypted(nc):
        # nats-py goes TLS only when the server asks: a tls:// URL must not fall back
        # to plain text with a server (or a man in the middle) that does not
        await nc.close()
        raise TransportError(
            f"cannot connect to the broker {safe_url(url)}: the NATS server did "
            "not offer TLS; refusing plain text on a tls:// URL"
        )
    return nc


def _server(nc: Client | None) -> str:
    """The server ``nc`` is connected to, as host:port (never its credentials)."""
    uri = getattr(getattr(nc, "_current_server", None), "uri", None)
    return f"{uri.hostname}:{uri.port}" if uri is not None else "?"


def _encrypted(nc: Client) -> bool:
    # nats-py does not say whether the connection it made is TLS; its writer does
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    return writer is None or writer.get_extra_info("ssl_object") is not None

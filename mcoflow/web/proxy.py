"""Behind a TLS-terminating reverse proxy: what it forwards, believed from it alone.

A request whose peer address is in ``trusted_proxies`` takes its scheme from
X-Forwarded-Proto, its client address from X-Forwarded-For and its Host from
X-Forwarded-Host; from any other peer these headers are ignored. Everything after this
middleware (the Secure cookie, redirects, the Host and Origin checks, the access log)
then sees the request as the browser sent it. uvicorn's own ProxyHeadersMiddleware is
switched off in server.py: it trusts loopback by default and knows no X-Forwarded-Host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from mcoflow.web.middleware import host_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# a Host header value: a name or IPv4 address, or a bracketed IPv6 one, and a port
_HOST_VALUE = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-for", b"x-forwarded-host")


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.5``, ``10.0.0.0/24``, ``::1`` (checked by Settings) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


class TrustedProxies:
    """Pure ASGI middleware; with no networks it changes nothing."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str] = ()) -> None:
        self.app = app
        self.networks = parse_networks(trusted)

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(host_name(address))
        except ValueError:  # "unknown", an obfuscated name, a unix socket
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and self.trusts(client[0]):
            self._apply(scope)
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        values: dict[bytes, list[str]] = {name: [] for name in _FORWARDED}
        for name, value in scope["headers"]:
            if name in values:
                values[name] += [v.strip() for v in value.decode("latin-1").split(",")]
        # the nearest proxy's entry is the last one: earlier ones may come from the client
        proto = values[b"x-forwarded-proto"][-1:]
        if proto and proto[0].lower() in ("http", "https"):
            scope["scheme"] = proto[0].lower()
        chain = [entry for entry in values[b"x-forwarded-for"] if entry]
        if chain:
            # the first address from the right that is not one of our proxies
            client = next((a for a in reversed(chain) if not self.trusts(a)), chain[0])
            scope["client"] = (host_name(client), 0)
        host = values[b"x-forwarded-host"][-1:]
        if host and _HOST_VALUE.fullmatch(host[0]):
            headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
            scope["headers"] = [*headers, (b"host", host[0].encode("latin-1"))]

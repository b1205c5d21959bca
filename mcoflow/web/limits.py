"""A bound on request bodies: the body is read and parsed on the event loop that also
runs the executor and the in-process agents, so one huge body must not hold it.

The largest legitimate body is a job naming the most hosts a request takes
(``MAX_HOSTS_PER_REQUEST`` names of up to 255 characters); anything larger is refused
with 413 before it is read.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcoflow.job_request import MAX_HOSTS_PER_REQUEST

MAX_BODY_BYTES = 32 * 1024 * 1024


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over ``limit`` bytes (by Content-Length, or
    counted while it streams in)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # the app's error handlers answer it, as any HTTP error
                    raise HTTPException(413, self.detail)
            return message

        await self.app(scope, counted, send)

    @property
    def detail(self) -> str:
        return (
            f"request body over {self.limit // (1024 * 1024)} MiB; a job names at most "
            f"{MAX_HOSTS_PER_REQUEST} hosts (more: several jobs, or a filter)"
        )

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self.detail, "field": None}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

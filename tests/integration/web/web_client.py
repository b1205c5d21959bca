"""The web app on a real engine (SQLite file, in-process executor) with the fake jobs,
reached in-process through httpx on the test's event loop."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from web_fakes import DELAY, FakeJobs

from mcoflow.engine import World
from mcoflow.testing import engine_harness
from mcoflow.web import AuthSettings, create_app

PASSWORD = "correct horse battery staple"
TOKEN = "test-token-0123456789abcdef"


@dataclass
class Web:
    client: httpx.AsyncClient
    world: World
    jobs: FakeJobs
    transport: httpx.ASGITransport  # the app, for a client of another kind (https://)

    async def csrf(self, path: str = "/") -> str:
        """Load a page and return the CSRF token of its forms."""
        page = await self.client.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match[1]


async def open_web(auth: AuthSettings, **headers: str) -> AsyncIterator[Web]:
    DELAY["seconds"] = 0.05
    async with engine_harness() as harness:
        jobs = FakeJobs(harness.world)
        app = create_app(
            harness.world, auth=auth, jobs=jobs, broker_state=lambda: "connected", sse_interval=0.05
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            yield Web(client, harness.world, jobs, transport)

"""Fixtures of the web app's integration tests (helpers in web_client)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from web_client import PASSWORD, TOKEN, Web, open_web

from mcoflow.web import AuthSettings, hash_password, hash_token


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    """Authentication off, as on loopback in the embedded default."""
    async for w in open_web(AuthSettings.loopback()):
        yield w


@pytest.fixture
async def secure_web() -> AsyncIterator[Web]:
    """Authentication on: user alice, and one API token."""
    auth = AuthSettings(
        enabled=True,
        users={"alice": hash_password(PASSWORD)},
        api_tokens={hash_token(TOKEN): "ci"},
    )
    async for w in open_web(auth):
        yield w

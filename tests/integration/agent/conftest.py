"""Fixtures for the agent daemon over the real brokers (see agent_site.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_site import Site, broker_url

__all__ = ["broker_url", "site"]


@pytest.fixture
async def site(broker_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    site = Site(broker_url, tmp_path)
    try:
        yield site
    finally:
        await site.cleanup()

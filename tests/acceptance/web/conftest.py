"""Browser tests: Debian's Chromium driven by Playwright against a real `mcoflow serve`
subprocess with simulated hosts (sim-00001…).

Without Chromium they are skipped with the reason, except with CI set: there they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_process import mcoflow_serve, serve_env
from web_site import BROKEN, DELAY, HOSTS, SAVED, SCREENSHOTS, SIMULATION

CHROMIUM = Path(os.environ.get("MCOFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options: the system Chromium, headless, no sandbox."""
    if not CHROMIUM.exists():
        message = (
            f"Chromium is not installed at {CHROMIUM}: `sudo apt-get install -y chromium` "
            "(`make test` does it when run as root), or point MCOFLOW_TEST_CHROMIUM at one"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must have it", pytrace=False)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mcoflow serve` with simulated hosts (and no agent for this machine), set up by
    its command-line options and its config file."""
    directory = tmp_path_factory.mktemp("serve")
    args = ["--no-local-agent", "--simulate-hosts", str(HOSTS)]
    args += ["--simulate-delay", str(DELAY), "--simulate-broken-package", BROKEN]
    args += ["--log-level", "warning"]
    with mcoflow_serve(directory, args, serve_env(directory, {"simulation": SIMULATION})) as s:
        yield s.url


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the run leaves screenshots for people to look at (build/ is ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def base_url(server_url: str) -> str:
    """Replaces pytest-base-url's fixture (which warns on pytest 9) for pytest-playwright."""
    return server_url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in SAVED:
        terminalreporter.write_line(f"screenshot: {path}")

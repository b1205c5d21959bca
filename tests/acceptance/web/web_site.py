"""What the browser tests' server simulates, and the screenshots the run leaves."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

HOSTS = 8  # sim-00001 … sim-00008
# Each change on a simulated host takes DELAY, so the plan page is seen running (every
# host starts with telnet installed: uninstalling it takes that time too). One package
# never installs; two install at their second attempt only.
DELAY = 0.8  # through `serve --simulate-delay`
BROKEN = "broken-ui"  # through `serve --simulate-broken-package`
FLAKY = "flaky-ui"
FLAKY_ON_SIM5 = "flaky-fleet"  # fails once on sim-00005 only
SIMULATION = {  # the `simulation` setting of the config file
    "packages": {"telnet": "0.17-49"},
    "flaky_packages": [FLAKY, f"{FLAKY_ON_SIM5}@sim-00005"],
}

SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"
SAVED: list[Path] = []  # listed at the end of the run


def save_screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    SAVED.append(path)

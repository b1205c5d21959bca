"""The console in a real browser against `mcoflow serve` with simulated hosts: trigger,
live updates, resume / skip with confirmation, a fleet's host table, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect
from serve_process import mcoflow_serve, serve_env
from web_site import BROKEN, DELAY, FLAKY, FLAKY_ON_SIM5, save_screenshot

LIVE_TIMEOUT = 20_000  # ms
HTML_VERSION = "1.0<b>bold</b><img src=x onerror=alert(2)>"


def _fill(page: Page, server_url: str, hosts: str, parameter: str) -> None:
    """Open the trigger form and fill in its hosts and parameter."""
    page.goto(f"{server_url}/")
    page.fill("#hosts", hosts)
    page.fill("#parameter", parameter)


def _press(page: Page, button: str) -> None:
    page.get_by_role("button", name=button, exact=True).click()


def _trigger(page: Page, server_url: str, button: str, hosts: str, parameter: str) -> str:
    """Fill the trigger form, press a button; return the plan page's first HTML."""
    _fill(page, server_url, hosts, parameter)
    with page.expect_navigation(url=re.compile(r"/plans/[0-9a-f]{32}$")) as landing:
        _press(page, button)
    response = landing.value
    assert response is not None
    # a marker that a reload would wipe: the page must change by itself
    page.evaluate("window.__sameDocument = true")
    return response.text()


def _still_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


@pytest.mark.parametrize(
    ("button", "parameter", "steps"),
    [
        ("Install", "nginx,curl", 2),
        ("Uninstall", "telnet", 1),
        ("Restart", "nginx", 1),
        ("Install and restart", "nginx,openssl;nginx", 3),
    ],
)
def test_each_button_lands_on_the_plan_and_it_succeeds_live(
    page: Page, server_url: str, button: str, parameter: str, steps: int
) -> None:
    first = _trigger(page, server_url, button, "sim-00001", parameter)
    assert 'data-finished="false"' in first, "the plan had finished before the page loaded"
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    expect(page.locator('[data-plan="progress-text"]')).to_have_text("100%")
    expect(page.locator("#flow .step.state-success")).to_have_count(steps)
    expect(page.locator("#history-rows tr").last).to_contain_text("stopped")
    assert _still_same_document(page)


def test_failed_install_resume_then_skip(page: Page, server_url: str, screenshots: Path) -> None:
    _trigger(page, server_url, "Install and restart", "sim-00002", f"{FLAKY},{BROKEN},nginx;nginx")
    state = page.locator('[data-plan="state"]')
    expect(state).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("error")
    expect(page.locator("#flow .step.state-error")).to_have_count(2)
    assert _still_same_document(page)
    failed = page.locator("details.step-detail.state-error")
    expect(failed.first).to_have_attribute("open", "")
    expect(failed.locator('[data-field="error_message"]')).to_contain_text(
        [f"download of {FLAKY} failed", f"package {BROKEN} is broken"]
    )
    expect(failed.first.locator('[data-field="reply.statuscode"]')).to_have_text("1")
    save_screenshot(page, screenshots / "plan-page.png")

    # saying no to the confirmation changes nothing
    page.once("dialog", lambda d: d.dismiss())
    page.click("#resume")
    expect(state).to_have_text("paused")
    assert _still_same_document(page)

    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#resume")
    page.wait_for_url(re.compile(r"\?done=resumed$"))
    assert questions == ["Resume this plan? Its failed steps run again."]
    expect(page.get_by_role("status")).to_contain_text("The plan was resumed")
    # the flaky package installs at its second attempt, the broken one fails again
    expect(page.locator("#history-rows")).to_contain_text("resumed")
    expect(state).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(page.locator("#flow .step.state-error")).to_have_count(1)
    expect(page.locator("details.step-detail.state-error")).to_contain_text(BROKEN)

    page.once("dialog", accept)
    page.locator("details.step-detail.state-error .skip-button").click()
    page.wait_for_url(re.compile(r"\?done=skipped$"))
    assert questions[-1].startswith("Skip step")
    expect(state).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("warning")
    # the restart needed the broken package's output, so it was skipped with it
    expect(page.locator("#flow .step.state-skipped")).to_have_count(2)
    expect(page.locator("#flow .step.state-success")).to_have_count(2)
    expect(page.locator("#resume")).to_be_hidden()
    save_screenshot(page, screenshots / "plan-page-skipped.png")


def test_fleet_job_host_table_and_rerun_on_failed_hosts(
    page: Page, server_url: str, screenshots: Path
) -> None:
    _fill(page, server_url, "sim-00003, sim-00004 sim-00005,sim-00006", f"nginx,{FLAKY_ON_SIM5}")
    page.click("summary:has-text('Fleet options')")
    page.fill("#concurrency", "2")
    with page.expect_navigation(url=re.compile(r"/plans/[0-9a-f]{32}$")):
        _press(page, "Install")
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#host-rows tr")
    expect(page.locator('[data-plan="state"]')).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(rows).to_have_count(4)
    expect(page.locator('#host-rows tr[data-status="success"]')).to_have_count(3)
    # the failed host waits for the operator (paused) and counts as an error
    failed = page.locator('#host-rows tr[data-status="error"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("sim-00005")
    expect(failed.locator("td.message")).to_contain_text(f"download of {FLAKY_ON_SIM5} failed")
    expect(failed.locator("button.host-skip")).to_be_visible()
    expect(page.locator('#host-filters [data-count="error"]')).to_have_text("1")
    expect(page.locator("#host-summary")).to_have_text(
        "4 hosts: 3 succeeded, 1 failed (1 waiting for the operator), 0 cancelled"
    )
    assert _still_same_document(page)
    save_screenshot(page, screenshots / "fleet-page.png")

    page.click("#host-filters a[data-filter='error']")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("sim-00005")

    page.once("dialog", lambda d: d.accept())
    page.click("#rerun-failed")
    page.wait_for_url(re.compile(r"\?done=rerun$"))
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("sim-00005")
    expect(page.locator("#rerun-failed")).to_be_hidden()  # no host failed in this one


def test_fleet_job_by_filter_finds_its_hosts_by_discovery(page: Page, server_url: str) -> None:
    page.goto(f"{server_url}/")
    page.select_option("#target", "filter")
    page.fill("#hosts", "identity:/^sim-0000[78]$/")
    page.fill("#parameter", "curl")
    with page.expect_navigation(url=re.compile(r"/plans/[0-9a-f]{32}$")):
        _press(page, "Install")
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    rows = page.locator("#host-rows tr")
    expect(rows).to_have_count(2)
    expect(rows).to_contain_text(["sim-00007", "sim-00008"])


@pytest.fixture(scope="module")
def html_output_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose simulated host reports versions with HTML in them."""
    directory = tmp_path_factory.mktemp("serve-html")
    simulation = {"delay": DELAY, "default_version": HTML_VERSION}
    args = ["--no-local-agent", "--simulate-hosts", "1", "--log-level", "warning"]
    with mcoflow_serve(directory, args, serve_env(directory, {"simulation": simulation})) as s:
        yield s.url


def test_host_output_is_text_in_live_updates(page: Page, html_output_server: str) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    first = _trigger(page, html_output_server, "Install", "sim-00001", "vim")
    assert "onerror" not in first  # the reply arrives through the live updates
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    output = page.locator('[data-field="reply.output"]', has_text="<img")
    expect(output).to_have_count(1)
    expect(output).to_have_text(f"simulated: installed vim {HTML_VERSION}")
    assert page.locator("main img, main b").count() == 0
    assert dialogs == []


def test_a_bad_host_is_shown_next_to_the_field(page: Page, server_url: str) -> None:
    _fill(page, server_url, "sim-00001 nowhere-1", "vim")
    _press(page, "Install")
    expect(page.locator("#error-hosts")).to_contain_text(
        "unknown host nowhere-1: never seen by a discovery or a reply; run `mcoflow discover`"
    )
    expect(page.locator("#hosts")).to_have_value("sim-00001 nowhere-1")
    expect(page.locator("#parameter")).to_have_value("vim")


def test_a_bad_package_name_is_shown_as_text_next_to_the_field(page: Page, server_url: str) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _fill(page, server_url, "sim-00001", "<script>alert(1)</script>")
    _press(page, "Install")
    expect(page.locator("#error-parameter")).to_have_text(
        "'<script>alert(1)</script>' is not a valid package name"
    )
    expect(page.locator("#parameter")).to_have_value("<script>alert(1)</script>")
    assert dialogs == []


def test_plan_list_and_executors_pages(page: Page, server_url: str) -> None:
    page.goto(f"{server_url}/plans")
    expect(page.locator("h1")).to_have_text("Plans")
    page.select_option("select[name=result]", "success")
    page.click("button:has-text('Filter')")
    expect(page).to_have_url(re.compile(r"result=success"))
    page.goto(f"{server_url}/executors")
    expect(page.locator("#broker-state")).to_have_text("memory: connected")
    expect(page.locator("table tbody tr")).to_have_count(1)

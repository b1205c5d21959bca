"""The console in a real browser against a real server: trigger, live updates,
resume / skip with confirmation, a fleet's host table, escaping in the live path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

LIVE_TIMEOUT = 20_000  # ms


def _trigger(page: Page, server_url: str, button: str, hosts: str, parameter: str) -> str:
    """Fill the trigger form, press a button; return the plan page's first HTML."""
    page.goto(f"{server_url}/")
    page.fill("#hosts", hosts)
    page.fill("#parameter", parameter)
    with page.expect_navigation(url=re.compile(r"/plans/[0-9a-f]{32}$")) as landing:
        page.get_by_role("button", name=button, exact=True).click()
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
    first = _trigger(page, server_url, button, "web-01", parameter)
    assert 'data-finished="false"' in first, "the plan had finished before the page loaded"
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    expect(page.locator('[data-plan="progress-text"]')).to_have_text("100%")
    expect(page.locator("#flow .step.state-success")).to_have_count(steps)
    expect(page.locator("#history-rows tr").last).to_contain_text("stopped")
    assert _still_same_document(page)


def test_failed_install_resume_then_skip(page: Page, server_url: str, artifacts: Path) -> None:
    _trigger(
        page, server_url, "Install and restart", "web-02", "fail-once-ui,broken-ui,nginx;nginx"
    )
    state = page.locator('[data-plan="state"]')
    expect(state).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("error")
    expect(page.locator("#flow .step.state-error")).to_have_count(2)
    assert _still_same_document(page)
    failed = page.locator("details.step-detail.state-error").first
    expect(failed).to_have_attribute("open", "")
    expect(failed.locator('[data-field="error_message"]')).to_contain_text(
        "Unable to locate package"
    )
    expect(failed.locator('[data-field="reply.statuscode"]')).to_have_text("1")
    page.screenshot(path=str(artifacts / "plan-page.png"), full_page=True)

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
    # fail-once-ui now succeeds, broken-ui fails again
    expect(state).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(page.locator("#flow .step.state-error")).to_have_count(1)

    page.once("dialog", accept)
    page.locator("details.step-detail.state-error .skip-button").click()
    page.wait_for_url(re.compile(r"\?done=skipped$"))
    assert questions[-1].startswith("Skip step")
    expect(state).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("warning")
    # the restart needed broken-ui's output, so it was skipped with it
    expect(page.locator("#flow .step.state-skipped")).to_have_count(2)
    expect(page.locator("#flow .step.state-success")).to_have_count(2)
    expect(page.locator("#resume")).to_be_hidden()
    page.screenshot(path=str(artifacts / "plan-page-skipped.png"), full_page=True)


def test_fleet_job_host_table_and_rerun_on_failed_hosts(
    page: Page, server_url: str, artifacts: Path
) -> None:
    page.goto(f"{server_url}/")
    page.fill("#hosts", "web-03, web-04 web-05,web-06")
    page.fill("#parameter", "nginx,fail-once-fleet@web-05")
    page.click("summary:has-text('Fleet options')")
    page.fill("#concurrency", "2")
    with page.expect_navigation(url=re.compile(r"/plans/[0-9a-f]{32}$")):
        page.get_by_role("button", name="Install", exact=True).click()
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#host-rows tr")
    expect(page.locator('[data-plan="state"]')).to_have_text("paused", timeout=LIVE_TIMEOUT)
    expect(rows).to_have_count(4)
    expect(page.locator('#host-rows tr[data-status="success"]')).to_have_count(3)
    failed = page.locator('#host-rows tr[data-status="paused"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("web-05")
    expect(failed.locator("td.message")).to_contain_text("Unable to locate package")
    assert _still_same_document(page)
    page.screenshot(path=str(artifacts / "fleet-page.png"), full_page=True)

    page.click("#host-filters a[data-filter='paused']")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("web-05")

    page.once("dialog", lambda d: d.accept())
    page.click("#rerun-failed")
    page.wait_for_url(re.compile(r"\?done=rerun$"))
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator('[data-plan="result"]')).to_have_text("success")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("web-05")


def test_host_output_is_text_in_live_updates(page: Page, server_url: str) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _trigger(page, server_url, "Install", "web-07", "<script>alert(1)</script>,html-output")
    expect(page.locator('[data-plan="state"]')).to_have_text("stopped", timeout=LIVE_TIMEOUT)
    expect(page.locator("h1")).to_have_text(
        "install <script>alert(1)</script>,html-output on web-07"
    )
    output = page.locator('[data-field="reply.output"]', has_text="<img")
    expect(output).to_have_count(1)
    expect(output).to_have_text("<b>bold</b><img src=x onerror=alert(2)>")
    assert page.locator("main img, main b").count() == 0
    assert dialogs == []


def test_a_bad_host_is_shown_next_to_the_field(page: Page, server_url: str) -> None:
    page.goto(f"{server_url}/")
    page.fill("#hosts", "web-01 nowhere-1")
    page.fill("#parameter", "vim")
    page.get_by_role("button", name="Install", exact=True).click()
    expect(page.locator("#error-hosts")).to_have_text("unknown host: nowhere-1")
    expect(page.locator("#hosts")).to_have_value("web-01 nowhere-1")
    expect(page.locator("#parameter")).to_have_value("vim")


def test_plan_list_and_executors_pages(page: Page, server_url: str) -> None:
    page.goto(f"{server_url}/plans")
    expect(page.locator("h1")).to_have_text("Plans")
    page.select_option("select[name=result]", "success")
    page.click("button:has-text('Filter')")
    expect(page).to_have_url(re.compile(r"result=success"))
    page.goto(f"{server_url}/executors")
    expect(page.locator("#broker-state")).to_have_text("connected")
    expect(page.locator("table tbody tr")).to_have_count(1)

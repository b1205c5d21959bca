"""``/metrics``: Prometheus text read back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from web_client import TOKEN, Web

from mcoflow.engine import PlanResult


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_report_plans_steps_and_executors(web: Web) -> None:
    plan = await web.jobs.trigger("install", hosts=["db-01"], parameter="nginx", by="alice")
    assert (await web.world.wait(plan.id)).result is PlanResult.SUCCESS
    response = await web.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "set-cookie" not in response.headers  # scrapers get no session
    got = samples(response.text)
    assert got[("mcoflow_plans", (("result", "success"), ("state", "stopped")))] >= 1
    assert got[("mcoflow_steps", (("state", "success"),))] >= 1
    assert got[("mcoflow_executors", ())] == 1
    assert got[("mcoflow_broker_connected", ())] == 1
    assert got[("mcoflow_outbox_waiting", ())] == 0
    durations = [k for k in got if k[0] == "mcoflow_step_duration_seconds_count"]
    assert durations and all(got[k] >= 1 for k in durations)


async def test_metrics_need_an_api_token_when_authentication_is_on(secure_web: Web) -> None:
    refused = await secure_web.client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    wrong = await secure_web.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    allowed = await secure_web.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert "mcoflow_plans" in allowed.text

"""schemathesis against the API's own OpenAPI schema: no 500, responses match it.

schemathesis drives an ASGI app on one event loop of its own, so the engine is opened
in the app's lifespan, on that loop, with a few plans in every state to find.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from starlette.types import Receive, Scope, Send
from web_fakes import DELAY, FakeJobs

from mcoflow.actions import Jobs
from mcoflow.engine import World
from mcoflow.recurring.service import Schedules
from mcoflow.testing import engine_harness
from mcoflow.web import AuthSettings, create_app, hash_token

TOKEN = "schemathesis-token"


class EngineApp:
    """The web app, built on an engine opened at lifespan start-up."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()
        async with contextlib.AsyncExitStack() as stack:
            DELAY["seconds"] = 0.05
            harness = await stack.enter_async_context(engine_harness())
            jobs = FakeJobs(harness.world)
            for kind, parameter in [("install", "vim"), ("install", "broken-s")]:
                plan = await jobs.trigger(
                    kind,
                    hosts=["web-01", "web-02"],
                    parameter=parameter,
                    by="seed",
                )
                await harness.world.wait(plan.id)
            auth = AuthSettings(enabled=True, api_tokens={hash_token(TOKEN): "schemathesis"})
            self.app = create_app(harness.world, auth=auth, jobs=jobs, sse_interval=0.05)
            self.app.state.schedules = Schedules(Jobs(harness.world, check_hosts=False))
            await send({"type": "lifespan.startup.complete"})
            await receive()
        await send({"type": "lifespan.shutdown.complete"})


def _schema() -> Any:
    # The schema is read from an app without an engine: collecting this module must not
    # start one. schemathesis starts EngineApp's lifespan at the first call.
    shape = create_app(cast(World, None), auth=AuthSettings(enabled=False)).openapi()
    loaded = schemathesis.openapi.from_dict(shape)
    loaded.app = EngineApp()
    return loaded


schema = _schema()


@pytest.fixture(scope="module", autouse=True)
def _stop_engine() -> Iterator[None]:
    yield
    # stop the engine the lifespan opened, on schemathesis' own event loop
    schemathesis.python.asgi.shutdown_lifespans()


# Input valid by the schema can still name an unknown host or a malformed parameter:
# those operations may answer 422, but then with the field at fault.
SEMANTIC_422 = {
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/hosts"),
    ("POST", "/api/v1/hosts/discover"),
    # an agent or action the hosts do not declare, an input it does not take
    ("POST", "/api/v1/rpc"),
    ("POST", "/api/v1/agents"),
    # a group's filter of no valid words, a name saved already
    ("POST", "/api/v1/groups"),
    # a cron expression or time zone of no valid words, a job that would not start now
    ("POST", "/api/v1/schedules"),
    # a job template's inputs, or its run's batch_size / max_failures ("0")
    ("POST", "/api/v1/templates/{name}/run"),
}
# a schedule's fields (its job's too: job.request.parameter, job.hosts, job.host_args.x)
SCHEDULE_FIELDS = {"name", "cron", "timezone", "end_at", "max_runs", "job"}


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("MCOFLOW_SCHEMA_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    # with a valid token; schemathesis also checks that invalid ones are refused
    headers = {"Authorization": f"Bearer {TOKEN}"}
    excluded: list[Any] = []
    if case.method.upper() == "GET":
        # Negative cases for optional string query parameters are not invalid once sent:
        # a query string carries text only, so "a null" or "a boolean" arrives as the text
        # "" or "false", which is a valid value. Unknown and repeated parameters are still
        # refused (test_web_api), and POST bodies keep this check.
        excluded.append(negative_data_rejection)
    if (case.method.upper(), case.path) not in SEMANTIC_422:
        case.call_and_validate(headers=headers, excluded_checks=excluded)
        return
    response = case.call_and_validate(
        headers=headers, excluded_checks=[*excluded, positive_data_acceptance]
    )
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and response.status_code == 422:
        body = response.json()
        assert (
            body["field"].startswith("inputs")
            or body["field"]
            in {
                "hosts",
                "filter",
                "parameter",
                "batch_size",
                "max_failures",
                "start_at",
                "start_before",
                "agent",
                "action",
                "name",
            }
            or body["field"].split(".")[0] in SCHEDULE_FIELDS
        )
        assert body["detail"].startswith(body["field"])

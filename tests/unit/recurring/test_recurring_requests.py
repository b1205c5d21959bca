"""What operators ask a schedule to run: the request's checks name the field at fault,
and a job reads as what runs where."""

from __future__ import annotations

import pytest

from mcoflow.job_request import JobInputError
from mcoflow.recurring.job import ScheduleRequest, describe_job, job_json


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (
            {"request": {"kind": "install", "hosts": ["a"], "parameter": ""}},
            "job.request.parameter",
        ),
        (
            {"request": {"kind": "install", "parameter": "x", "concurency": 2}},
            "job.request.concurency",
        ),
        (
            {
                "request": {
                    "kind": "install",
                    "hosts": ["a"],
                    "parameter": "x",
                    "start_at": "2030-01-01",
                }
            },
            "job.request",
        ),
        ({"action": "mcoflow.agent_call", "batch_size": "many"}, "job.batch_size"),
        ({"action": "mcoflow.agent_call", "hosts": "a"}, "job.hosts"),
        ({"neither": 1}, "job.neither"),
        ({}, "job"),
        ({"action": "mcoflow.agent_call", "request": {"kind": "install", "parameter": "x"}}, "job"),
        ({"request": {"kind": "install", "parameter": "x"}, "hosts": ["a"]}, "job"),
        ("install nginx", "job"),
    ],
)
def test_a_schedule_request_names_the_field_that_is_wrong(job: object, field: str) -> None:
    with pytest.raises(JobInputError) as caught:
        ScheduleRequest.parse(name="n", cron="* * * * *", job=job)
    assert caught.value.field == field, caught.value


def test_jobs_read_as_what_runs_where() -> None:
    four = {"request": {"kind": "install", "hosts": ["a", "b"], "parameter": "nginx"}}
    assert describe_job(four) == "install nginx on a, b"
    call = {
        "action": "mcoflow.agent_call",
        "host_args": {"agent": "service", "action": "status", "data": {"service": "cron"}},
        "filter": "class:web",
    }
    assert describe_job(call) == "service.status on filter class:web"
    many = {"action": "mcoflow.template", "what": "rolling update", "hosts": list("abcdef")}
    assert describe_job(many) == "rolling update on a, b, c and 3 more"


def test_a_job_is_stored_as_given() -> None:
    job = {"request": {"kind": "restart", "filter": "class:web", "parameter": "nginx"}}
    request = ScheduleRequest.parse(name="n", cron="@daily", job=job)
    assert job_json(request.job) == job
    call = {"action": "mcoflow.agent_call", "host_args": {"agent": "rpcutil", "action": "ping"}}
    request = ScheduleRequest.parse(name="n", cron="@daily", job=call | {"hosts": ["a"]})
    assert job_json(request.job) == call | {"hosts": ["a"]}

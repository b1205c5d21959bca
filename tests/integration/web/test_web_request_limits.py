"""Bounds on what one request may ask, so that none holds the event loop for long
(issue 16): at most MAX_HOSTS_PER_REQUEST hosts per job, and a bounded body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from web_client import Web

from mcoflow.web.limits import MAX_BODY_BYTES, MAX_HOSTS_PER_REQUEST


async def test_a_job_names_at_most_the_documented_number_of_hosts(web: Web) -> None:
    hosts = [f"h{n}" for n in range(MAX_HOSTS_PER_REQUEST + 1)]
    r = await web.client.post(
        "/api/v1/jobs", json={"kind": "install", "hosts": hosts, "parameter": "curl"}
    )
    assert r.status_code == 422, r.text[:300]
    assert r.json()["field"] == "hosts"
    assert f"at most {MAX_HOSTS_PER_REQUEST}" in r.json()["detail"]
    schema = (await web.client.get("/api/v1/openapi.json")).json()
    documented = schema["components"]["schemas"]["TriggerIn"]["properties"]["hosts"]
    assert documented["maxItems"] == MAX_HOSTS_PER_REQUEST
    assert f"at most {MAX_HOSTS_PER_REQUEST}" in documented["description"]


async def test_a_body_over_the_limit_is_refused_before_it_is_parsed(web: Web) -> None:
    body = json.dumps({"kind": "install", "parameter": "x" * MAX_BODY_BYTES}).encode()
    r = await web.client.post(
        "/api/v1/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text[:300]
    assert "request body over 32 MiB" in r.json()["detail"]

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for at in range(0, len(body), 1 << 20):
            yield body[at : at + (1 << 20)]

    r = await web.client.post(
        "/api/v1/jobs", content=streamed(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text[:300]
    assert "request body over 32 MiB" in r.json()["detail"]

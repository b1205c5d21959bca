"""Requests that must be refused: logged with the reason, and nothing run."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcoflow.agent.journal import Journal
from mcoflow.agent.providers import SimulationSettings
from mcoflow.rpc.envelope import seal
from mcoflow.rpc.messages import Request, StatusCode
from mcoflow.testing import assert_eventually

MakeRequest = Callable[..., Request]


def _logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    return any(all(p in r.getMessage() for p in parts) for r in caplog.records)


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcoflow.agent")


def _install(make_request: MakeRequest, **kw: Any) -> Request:
    return make_request("package", "install", {"package": "hello"}, **kw)


async def _refused_unanswered(harness: Any, caplog: pytest.LogCaptureFixture, *parts: str) -> None:
    """Logged as refused with ``parts``; no reply, and nothing run."""
    await assert_eventually(lambda: _logged(caplog, *parts))
    assert harness.replies == []
    assert harness.fleet.calls == {}


def _forged(harness: Any, request: Request) -> bytes:
    frame = json.loads(seal(request, harness.keys.caller))
    tampered = request.model_copy(update={"data": {"package": "evil"}})
    frame["body"] = base64.b64encode(tampered.model_dump_json().encode()).decode()
    return json.dumps(frame).encode()


@pytest.mark.parametrize(
    ("caller", "envelope", "reason"),
    [
        pytest.param("ops", _forged, ("bad signature", "ops"), id="forged-signature"),
        pytest.param(
            "intruder",
            lambda harness, request: seal(request, harness.keys.intruder),
            ("unknown signer", "intruder"),
            id="unknown-signer",
        ),
        # Signed by a trusted key, but claiming to be somebody else.
        pytest.param(
            "admin",
            lambda harness, request: seal(request, harness.keys.caller),
            ("claims caller 'admin'",),
            id="caller-impersonation",
        ),
        pytest.param(
            "ops",
            lambda harness, request: request.model_dump_json().encode(),
            ("version 1 expected",),
            id="unsigned",
        ),
        pytest.param("ops", lambda *_: b"\xff\x00not json", ("invalid JSON",), id="garbage"),
    ],
)
async def test_an_untrusted_message_is_refused_unanswered(
    harness: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
    caller: str,
    envelope: Callable[[Any, Request], bytes],
    reason: tuple[str, ...],
) -> None:
    request = _install(make_request, caller=caller)
    await harness.send(request, envelope=envelope(harness, request))
    await _refused_unanswered(harness, caplog, "refused message", *reason)


@pytest.mark.parametrize(("offset", "ttl"), [(-120.0, 60.0), (3600.0, 60.0)])
async def test_expired_or_future_request_is_refused(
    harness: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
    offset: float,
    ttl: float,
) -> None:
    request = _install(make_request, now=time.time() + offset, ttl=ttl)
    await harness.send(request)
    await _refused_unanswered(harness, caplog, "refused request", request.id, "ttl/time window")


async def test_replayed_read_only_request_is_refused(
    harness: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = make_request("rpcutil", "ping")
    envelope = seal(request, harness.keys.caller)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 1)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: _logged(caplog, "refused request", request.id, "replay"))
    assert len(harness.replies_to(request)) == 1


async def test_replayed_change_is_answered_from_the_journal_not_run(
    harness: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = _install(make_request)
    envelope = seal(request, harness.keys.caller)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 1)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 2)
    first, second = harness.replies_to(request)
    assert (first.statuscode, first.data) == (second.statuscode, second.data)
    assert first.data["changed"] is True
    assert harness.fleet.install_count("web1") == 1
    assert _logged(caplog, request.id, "answering from the journal")


async def test_journal_survives_a_restart(harness_factory: Any, make_request: MakeRequest) -> None:
    first = await harness_factory()
    request = _install(make_request)
    envelope = seal(request, first.keys.caller)
    await first.send(request, envelope=envelope)
    await assert_eventually(lambda: len(first.replies_to(request)) == 1)
    await first.daemon.stop()
    # A new process: empty replay guard, fresh simulated host, the same journal file.
    second = await harness_factory()
    await second.send(request, envelope=envelope)
    await assert_eventually(lambda: len(second.replies_to(request)) == 1)
    [reply] = second.replies_to(request)
    assert reply.statuscode is StatusCode.OK
    assert reply.data["changed"] is True
    assert second.fleet.install_count("web1") == 0


async def test_idempotent_request_interrupted_by_a_crash_is_run_again_once(
    harness_factory: Any, make_request: MakeRequest, tmp_path: Path
) -> None:
    """An install is idempotent in effect: after a crash it runs again (see
    test_agent_rerun for the actions that are not, and for a second crash)."""
    request = _install(make_request)
    crashed = Journal(tmp_path / "journal.sqlite")
    assert crashed.begin("web1", request.id, "package", "install") is None
    crashed.close()
    harness = await harness_factory()
    await harness.send(request)
    await assert_eventually(lambda: len(harness.replies_to(request)) == 1)
    [reply] = harness.replies_to(request)
    assert reply.statuscode is StatusCode.OK
    assert harness.fleet.install_count("web1") == 1
    entry = harness.daemon.journal.lookup("web1", request.id)
    assert entry is not None
    assert (entry.state.value, entry.runs) == ("done", 2)


async def test_unauthorized_request_is_refused_with_status_1(
    harness_factory: Any,
    make_request: MakeRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - allow: {caller: ops, agent: rpcutil}\n"
        "  - allow: {caller: ops, agent: package, action: status}\n"
    )
    harness = await harness_factory(policy_file=policy)
    [denied] = await harness.call(_install(make_request))
    [allowed] = await harness.call(make_request("package", "status", {"package": "hello"}))
    assert denied.statuscode is StatusCode.ABORTED
    assert "not authorized" in denied.statusmsg
    assert allowed.statuscode is StatusCode.OK
    assert harness.fleet.calls == {}
    assert _logged(caplog, "refused request", "caller ops", "not authorized", "deny by default")


async def test_request_for_another_collective_is_refused(
    harness: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = _install(make_request, collective="other")
    # Delivered to web1's queue by hand, as a misrouting broker would.
    queue = harness.broker.host_queues[("mcoflow", "web1")]
    queue.put(seal(request, harness.keys.caller))
    await _refused_unanswered(harness, caplog, "refused request", request.id, "collective 'other'")


async def test_redelivery_while_running_is_not_run_twice(
    harness_factory: Any,
    make_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = await harness_factory(simulation=SimulationSettings(delay=0.3))
    request = _install(make_request)
    envelope = seal(request, harness.keys.caller)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: harness.fleet.install_count("web1") == 1)
    await harness.send(request, envelope=envelope)
    await assert_eventually(lambda: _logged(caplog, request.id, "still running"))
    await assert_eventually(lambda: len(harness.replies_to(request)) == 1)
    later = make_request()
    await harness.call(later)
    assert len(harness.replies_to(request)) == 1
    assert harness.fleet.install_count("web1") == 1

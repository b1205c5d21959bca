"""The harness's own tests: real mcollectived nodes answer the real Ruby `mco` client.

Both nodes run the simulated package and service agents; one module-wide collective
(start-up well under a second), each test on packages or services of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.mco_nodes import McoCollective, NodeSpec, require_mcollective

pytestmark = pytest.mark.rabbitmq

WEB = NodeSpec("web1", {"osfamily": "Debian", "role": "web"}, classes=["nginx"])
DB = NodeSpec("db1", {"osfamily": "RedHat", "role": "db"}, classes=["postgresql"])


@pytest.fixture(scope="module")
def fleet() -> Iterator[McoCollective]:
    require_mcollective()
    with McoCollective([WEB, DB]) as collective:
        yield collective


def by_sender(replies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {reply["sender"]: reply for reply in replies}


def test_each_node_answers_with_its_own_facts(fleet: McoCollective) -> None:
    replies = by_sender(fleet.rpc("rpcutil", "get_fact", "fact=role"))

    assert {sender: r["data"]["value"] for sender, r in replies.items()} == {
        "web1": "web",
        "db1": "db",
    }


def test_install_reports_ensure_and_a_second_install_fails(fleet: McoCollective) -> None:
    [first] = fleet.rpc("package", "install", "package=hello", "-I", "web1")
    [second] = fleet.rpc("package", "install", "package=hello", "-I", "web1")

    assert (first["statuscode"], first["data"]["ensure"]) == (0, "1.0-1")
    assert first["data"]["output"]
    # a plain error in the real agent too: MCollective answers it with statuscode 5
    assert (second["statuscode"], second["statusmsg"]) == (5, "Package is already installed")
    assert second["data"]["ensure"] == "1.0-1"
    assert fleet["web1"].installed == {"hello": "1.0-1"}
    assert "hello" not in fleet["db1"].installed


def test_a_fact_filter_picks_the_node(fleet: McoCollective) -> None:
    replies = fleet.rpc("package", "install", "package=postgresql-15", "-F", "role=db")

    assert [(r["sender"], r["statuscode"]) for r in replies] == [("db1", 0)]
    assert "postgresql-15" in fleet["db1"].installed
    assert "postgresql-15" not in fleet["web1"].installed


def test_service_restarts_are_counted(fleet: McoCollective) -> None:
    replies = [fleet.rpc("service", "restart", "service=nginx", "-C", "nginx") for _ in range(2)]

    assert [[(r["sender"], r["data"]["restarts"]) for r in rs] for rs in replies] == [
        [("web1", 1)],
        [("web1", 2)],
    ]
    assert (fleet["web1"].restarts("nginx"), fleet["db1"].restarts("nginx")) == (2, 0)
    assert fleet["web1"].state["services"]["nginx"]["status"] == "running"


def test_every_declared_action_answers(fleet: McoCollective) -> None:
    with fleet["db1"].edit_state() as state:
        state["packages"]["curl"] = "7.88.1-10"
        state["available"]["curl"] = "7.88.1-11"
        state["broken_packages"].append("broken-pkg")
    # (agent, action, input, statuscode, where to look: statusmsg or an output, expected)
    calls = [
        ("package", "status", "package=curl", 0, "ensure", "7.88.1-10"),
        ("package", "update", "package=curl", 0, "ensure", "7.88.1-11"),
        ("package", "uninstall", "package=curl", 0, "ensure", "absent"),
        (
            "package",
            "purge",
            "package=curl",
            5,
            "statusmsg",
            "Package is not present on the system",
        ),
        ("package", "install", "package=curl", 0, "ensure", "7.88.1-11"),
        (
            "package",
            "install",
            "package=broken-pkg",
            1,
            "statusmsg",
            "E: simulated failure installing broken-pkg",
        ),
        ("service", "start", "service=cron", 0, "status", "running"),
        (
            "service",
            "start",
            "service=cron",
            1,
            "statusmsg",
            "Could not start service 'cron': Service is already running",
        ),
        ("service", "stop", "service=cron", 0, "status", "stopped"),
        ("service", "status", "service=cron", 0, "status", "stopped"),
        ("echo", "run", "msg=hello world", 0, "msg", "hello world"),
    ]
    for agent, action, arg, code, where, expected in calls:
        [reply] = fleet.rpc(agent, action, arg, "-I", "db1")
        seen = reply["statusmsg"] if where == "statusmsg" else reply["data"][where]
        assert (reply["statuscode"], seen) == (code, expected), (agent, action, arg, reply)
    assert [h["state"] for h in fleet["db1"].state["history"]][-6:] == [
        "done",
        "done",
        "done",
        "failed",
        "done",
        "done",
    ]


def test_a_killed_node_comes_back(fleet: McoCollective) -> None:
    node = fleet["web1"]
    old_pid = node.pid

    node.kill()
    killed = node.alive
    node.start()
    node.wait_ready()

    assert (killed, node.alive, node.pid != old_pid) == (False, True, True)
    [reply] = fleet.rpc("rpcutil", "ping", "-I", "web1")
    assert reply["statuscode"] == 0

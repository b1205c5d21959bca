"""mcoflow's RPC client on the MCollective transport, against real `mcollectived` nodes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcoflow.rpc.mcollective.options import McollectiveOptions
from mcoflow.rpc.security import Signer
from mcoflow.rpc.targeting import parse as parse_filter
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.mcollective import McollectiveTransport
from mcoflow.testing import NO_RESPONSE, DirectClient
from tests.mco_nodes import McoCollective, NodeSpec, require_mcollective
from tests.mco_rogue import rogue_node


@pytest.fixture(scope="module")
def nodes() -> Iterator[McoCollective]:
    require_mcollective()
    specs = [
        NodeSpec("web1", {"osfamily": "Debian", "role": "web"}, classes=("webserver",)),
        NodeSpec("db1", {"osfamily": "RedHat", "role": "db"}, classes=("dbserver",)),
    ]
    with McoCollective(specs) as collective:
        yield collective


@contextlib.asynccontextmanager
async def client(nodes: McoCollective, *, psk: str | None = None) -> AsyncIterator[DirectClient]:
    transport = transport_from_url(
        nodes.broker.mcoflow_url, mcollective=McollectiveOptions(psk=psk or nodes.psk)
    )
    await transport.connect()
    try:
        async with DirectClient(
            transport,
            Signer("mcoflow", Ed25519PrivateKey.generate()),
            collective="mcoflow",
            reply_to=f"mcoflow-test-{uuid.uuid4().hex[:8]}",
            transient_replies=True,
        ) as direct:
            yield direct
    finally:
        await transport.close()


async def test_discovery_with_a_fact_or_class_filter_picks_the_right_nodes(
    nodes: McoCollective,
) -> None:
    async with client(nodes) as c:
        assert await c.discover(timeout=2) == ["db1", "web1"]
        assert await c.discover(parse_filter("role=db"), timeout=2) == ["db1"]
        assert await c.discover(parse_filter("osfamily=Debian"), timeout=2) == ["web1"]
        assert await c.discover(parse_filter("class:webserver"), timeout=2) == ["web1"]
        assert await c.discover(parse_filter("role=nothing"), timeout=1) == []


async def test_facts_and_actions_come_back_as_mcoflow_replies(nodes: McoCollective) -> None:
    async with client(nodes) as c:
        facts = await c.call("rpcutil", "get_fact", {"fact": "role"}, identities=["db1"])
        assert facts.result_for("db1").data == {"fact": "role", "value": "db"}
        inventory = await c.call("rpcutil", "inventory", identities=["web1"], timeout=10)
        web = inventory.result_for("web1")
        assert web.ok and web.data["facts"]["role"] == "web"
        assert {"package", "service", "rpcutil"} <= set(web.data["agents"])
        assert "webserver" in web.data["classes"]
        echo = await c.call("echo", "run", {"msg": "héllo ☃"}, identities=["web1", "db1"])
        assert {r.identity: r.data["msg"] for r in echo.results} == {
            "web1": "héllo ☃",
            "db1": "héllo ☃",
        }
        # the node's DDL refuses a missing input: statuscode 4, as mco shows it
        refused = await c.call("echo", "run", {}, identities=["web1"])
        assert refused.result_for("web1").statuscode == 4


async def test_the_package_agents_answers_come_as_the_node_sent_them(
    nodes: McoCollective,
) -> None:
    package = f"pkg{uuid.uuid4().hex[:6]}"
    async with client(nodes) as c:
        first = await c.call("package", "install", {"package": package}, identities=["web1"])
        again = await c.call("package", "install", {"package": package}, identities=["web1"])
        installed = first.result_for("web1")
        assert installed.ok and installed.data["ensure"] == "1.0-1"
        # nothing to do: the agent raises, MCollective answers status 5 (the Install step
        # reads it as done, nothing changed: tests/unit/test_install_on_mcollective.py)
        refused = again.result_for("web1")
        assert (refused.statuscode, refused.statusmsg) == (5, "Package is already installed")
        assert refused.data["ensure"] == "1.0-1" and refused.data["output"] is None
        assert package in nodes["web1"].installed


async def test_a_reply_signed_with_another_psk_is_dropped_and_counted(
    nodes: McoCollective,
) -> None:
    async with client(nodes, psk="not-the-nodes-psk") as c:
        # the nodes drop requests with a wrong digest: nobody answers
        result = await c.call("echo", "run", {"msg": "x"}, identities=["web1"], timeout=2)
        assert result.result_for("web1").statuscode == NO_RESPONSE

    async with client(nodes) as c, rogue_node(nodes, "rogue1", psk="forger") as rogue:
        transport = c.transport
        assert isinstance(transport, McollectiveTransport)
        result = await c.call("echo", "run", {"msg": "x"}, identities=["rogue1"], timeout=2)
        assert rogue.answered == 1  # it did answer, with a digest made with another psk
        assert result.result_for("rogue1").statuscode == NO_RESPONSE
        assert transport.dropped_replies() == {"bad digest": 1}
        assert c.rejected_replies == 1

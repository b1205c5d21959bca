"""TLS to the brokers, against real servers started by the test on spare ports: a NATS
server and a second RabbitMQ node (the shared ones are not touched), each requiring
a client certificate from a CA generated here.

Shown for amqps:// and tls://: a request and its reply go through an agent daemon
configured with the broker_tls_* settings; a server certificate from another CA, or
one naming another host, is refused with a message that says so; a plain-text URL to
the TLS port fails with a message that says to use TLS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mcoflow.rpc.tls import TlsOptions
from mcoflow.rpc.transport import TransportError
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.unreachable import safe_url
from mcoflow.testing.rpc import DirectClient
from tests.integration.agent.agent_site import Site
from tests.rpc_fixtures import require_nats
from tests.tls_servers import NATS_SERVER, RABBITMQ_SERVER, Issued, Pki, tls_broker


@pytest.fixture(
    params=[
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
    ]
)
def kind(request: pytest.FixtureRequest) -> str:
    binary = NATS_SERVER if request.param == "nats" else RABBITMQ_SERVER
    if shutil.which(binary) is None:
        message = f"{binary} is not installed: the TLS tests start a TLS broker of their own"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(request.param)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@contextlib.asynccontextmanager
async def agent_site(folder: Path) -> AsyncIterator[Site]:
    """Keys, daemons and clients, stopped before the broker is."""
    site = Site("memory://unused", folder)  # each daemon names its broker
    try:
        yield site
    finally:
        await site.cleanup()


def client_tls(pki: Pki, **options: bool) -> TlsOptions:
    return TlsOptions(ca_file=pki.ca, cert_file=pki.client.cert, key_file=pki.client.key, **options)


async def ping_through_an_agent(site: Site, url: str, tls: TlsOptions) -> None:
    daemon = await site.daemon(
        broker_url=url,
        broker_tls_ca=tls.ca_file,
        broker_tls_cert=tls.cert_file,
        broker_tls_key=tls.key_file,
        broker_tls_verify_hostname=tls.verify_hostname,
    )
    transport = transport_from_url(url, tls=tls)
    await transport.connect()
    client = DirectClient(
        transport,
        site.signer("ops"),
        collective=site.collective,
        reply_to=f"mcoflow-test.tls.{uuid.uuid4().hex[:10]}",
        verifier=site.host_verifier,
    )
    site.clients.append(client)
    await client.start()
    result = await client.call("rpcutil", "ping", identities=[daemon.config.identity], timeout=10)
    assert result.stats.responded == (daemon.config.identity,)


async def connect_error(url: str, tls: TlsOptions | None) -> str:
    transport = transport_from_url(url, tls=tls)
    with pytest.raises(TransportError) as caught:
        await transport.connect()
    await transport.close()
    return str(caught.value)


async def test_a_request_and_its_reply_go_over_tls_and_plain_text_is_refused(
    kind: str, pki: Pki, tmp_path: Path
) -> None:
    async with tls_broker(kind, tmp_path, pki.server, pki.ca) as urls:
        async with agent_site(tmp_path / "site") as site:
            await ping_through_an_agent(site, urls.tls, client_tls(pki))

        message = await connect_error(urls.plain, None)
    assert safe_url(urls.plain) in message, message
    scheme = "tls" if kind == "nats" else "amqps"
    assert f"the server speaks TLS on that port; use a {scheme}:// URL" in message, message


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("other_server", "(unable to get local issuer certificate); is it signed by the CA"),
        ("misnamed", "(IP address mismatch, certificate is not valid for '127.0.0.1')"),
    ],
)
async def test_a_server_certificate_not_for_us_is_refused(
    kind: str, pki: Pki, tmp_path: Path, server: str, problem: str
) -> None:
    issued: Issued = getattr(pki, server)
    async with tls_broker(kind, tmp_path, issued, pki.ca) as urls:
        message = await connect_error(urls.tls, client_tls(pki))
    assert "the server's TLS certificate was refused" in message, message
    assert problem in message, message
    assert "guest:***@" in message or kind == "nats"  # the password stays out


async def test_without_the_host_name_check_a_misnamed_certificate_is_accepted_with_a_warning(
    kind: str, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcoflow.rpc")
    async with (
        tls_broker(kind, tmp_path, pki.misnamed, pki.ca) as urls,
        agent_site(tmp_path / "site") as site,
    ):
        await ping_through_an_agent(site, urls.tls, client_tls(pki, verify_hostname=False))
    warnings = [r for r in caplog.records if "host name is not checked" in r.getMessage()]
    assert len(warnings) == 2  # the agent's transport and the client's, once each
    assert "guest" not in warnings[0].getMessage()


async def test_without_a_client_certificate_the_server_refuses(
    kind: str, pki: Pki, tmp_path: Path
) -> None:
    async with tls_broker(kind, tmp_path, pki.server, pki.ca) as urls:
        message = await connect_error(urls.tls, TlsOptions(ca_file=pki.ca))
    assert "the server refused the client certificate" in message, message
    assert "check broker_tls_cert" in message


@pytest.mark.nats
async def test_a_tls_url_to_a_plain_text_nats_server_is_refused(pki: Pki) -> None:
    # nats-py follows the server's word on TLS: a tls:// URL must not end in plain text
    plain = urlsplit(require_nats())
    message = await connect_error(f"tls://{plain.netloc}", client_tls(pki))
    assert "did not offer TLS; refusing plain text" in message, message

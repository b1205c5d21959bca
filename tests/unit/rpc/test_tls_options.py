"""The broker_tls_* settings make the SSL context the transports connect with."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mcoflow.agent.settings import AgentSettings
from mcoflow.rpc.tls import TlsError, TlsOptions, client_context
from mcoflow.rpc.transport import TransportError
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.amqp import AmqpTransport
from mcoflow.rpc.transports.nats import NatsTransport
from mcoflow.settings import SettingsError, load_settings
from tests.tls_servers import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


def test_the_context_checks_the_chain_against_the_ca_and_the_host_name(pki: Pki) -> None:
    context = TlsOptions(
        ca_file=pki.ca, cert_file=pki.client.cert, key_file=pki.client.key
    ).context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == [
        "mcoflow test CA"
    ]


def test_without_the_host_name_check_the_chain_is_still_checked(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test.tls")
    context = client_context(
        "amqps://u:secret@broker:5671/", TlsOptions(ca_file=pki.ca, verify_hostname=False), log
    )
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    [warning] = [r.getMessage() for r in caplog.records if r.name == "test.tls"]
    assert "host name is not checked" in warning
    assert "broker:5671" in warning
    assert "secret" not in warning


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"ca_file": Path("/nonexistent/ca.pem")},
            r"cannot load the TLS CA file /nonexistent/ca\.pem",
        ),
        ({"cert_file": Path("/nonexistent/c.pem")}, r"client certificate /nonexistent/c\.pem"),
    ],
)
def test_a_file_that_cannot_be_read_is_named(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(TlsError, match=expected):
        TlsOptions(**options).context()


def test_a_key_without_its_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(TlsError, match="needs its certificate"):
        TlsOptions(key_file=pki.client.key)


def test_tls_settings_with_a_plain_text_url_are_refused(pki: Pki) -> None:
    for url in ("nats://h:4222", "amqp://u:p@h/", "memory://"):
        with pytest.raises(ValueError, match="is not TLS: use amqps:// or tls://"):
            transport_from_url(url, tls=TlsOptions(ca_file=pki.ca))
    assert isinstance(transport_from_url("nats://h:4222", tls=TlsOptions()), NatsTransport)


def test_the_transports_get_the_options(pki: Pki) -> None:
    tls = TlsOptions(ca_file=pki.ca)
    amqp = transport_from_url("amqps://u:p@h/", tls=tls)
    nats = transport_from_url("tls://h:4222", tls=tls)
    assert isinstance(amqp, AmqpTransport) and amqp.tls is tls
    assert isinstance(nats, NatsTransport) and nats.tls is tls


async def test_amqps_connects_with_the_context_of_the_settings(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def connect_robust(url: str, **kwargs: Any) -> Any:
        seen.update(kwargs, url=url)
        raise ConnectionRefusedError("stop here")

    monkeypatch.setattr("aio_pika.connect_robust", connect_robust)
    tls = TlsOptions(ca_file=pki.ca, cert_file=pki.client.cert, key_file=pki.client.key)
    with pytest.raises(TransportError, match="connection refused"):
        await AmqpTransport("amqps://u:p@127.0.0.1:1/", tls=tls).connect()
    context = seen["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert len(context.get_ca_certs()) == 1

    seen.clear()
    with pytest.raises(TransportError):
        await AmqpTransport("amqp://u:p@127.0.0.1:1/").connect()
    assert seen["ssl_context"] is None


async def test_an_unreadable_ca_fails_the_connection_with_its_name() -> None:
    transport = NatsTransport("tls://127.0.0.1:1", tls=TlsOptions(ca_file=Path("/nope/ca.pem")))
    with pytest.raises(TransportError, match=r"cannot load the TLS CA file /nope/ca\.pem"):
        await transport.connect()


def test_the_settings_name_the_files(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCOFLOW_TRANSPORT_URL", "amqps://u:p@b/")
    monkeypatch.setenv("MCOFLOW_BROKER_TLS_CA", str(pki.ca))
    monkeypatch.setenv("MCOFLOW_BROKER_TLS_VERIFY_HOSTNAME", "false")
    monkeypatch.chdir(tmp_path)  # no mcoflow.yaml here
    monkeypatch.delenv("MCOFLOW_CONFIG", raising=False)
    settings = load_settings()
    assert TlsOptions.from_settings(settings) == TlsOptions(ca_file=pki.ca, verify_hostname=False)

    config = tmp_path / "agent.yaml"
    config.write_text(
        "key_file: host.key\ntrusted_keys: trusted\nbroker_url: tls://b:4222\n"
        "broker_tls_ca: tls/ca.pem\nbroker_tls_cert: tls/me.pem\nbroker_tls_key: tls/me.key\n"
    )
    agent = TlsOptions.from_settings(AgentSettings.load(config))
    assert agent == TlsOptions(
        ca_file=tmp_path / "tls/ca.pem",
        cert_file=tmp_path / "tls/me.pem",
        key_file=tmp_path / "tls/me.key",
    )


def test_tls_settings_with_a_plain_text_broker_url_are_a_settings_error(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCOFLOW_CONFIG", raising=False)
    with pytest.raises(SettingsError, match=r"broker_tls_\*\) are set but nats:// is not TLS"):
        load_settings(transport_url="nats://b:4222", broker_tls_ca=str(pki.ca))
    with pytest.raises(SettingsError, match="a TLS client key needs its certificate"):
        load_settings(transport_url="tls://b:4222", broker_tls_key=str(pki.client.key))
    with pytest.raises(ValidationError, match="amqp:// is not TLS"):
        AgentSettings(
            key_file=tmp_path / "k",
            trusted_keys=tmp_path,
            broker_url="amqp://b/",
            broker_tls_verify_hostname=False,
        )

"""TLS brokers for tests: a throw-away PKI and NATS / RabbitMQ servers that speak TLS
on spare loopback ports (never the shared servers on their standard ports).

``Pki`` writes, in a folder: a CA, a server certificate for 127.0.0.1 and localhost, a
client certificate, and a second, unrelated CA with a server certificate of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


SERVER_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Issued  # 127.0.0.1 and localhost, from ca
    client: Issued  # from ca
    other_ca: Path
    other_server: Issued  # 127.0.0.1 and localhost, from other_ca
    misnamed: Issued  # from ca, for broker.mcoflow.test only

    @classmethod
    def create(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _ca("mcoflow test CA")
        other_key, other_cert = _ca("unrelated CA")
        return cls(
            ca=_write_cert(folder / "ca.pem", ca_cert),
            server=_issue(folder, "server", ca_key, ca_cert, names=SERVER_NAMES),
            client=_issue(folder, "client", ca_key, ca_cert, names=()),
            other_ca=_write_cert(folder / "other-ca.pem", other_cert),
            other_server=_issue(folder, "other-server", other_key, other_cert, names=SERVER_NAMES),
            misnamed=_issue(
                folder, "misnamed", ca_key, ca_cert, names=(x509.DNSName("broker.mcoflow.test"),)
            ),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    folder: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    names: tuple[x509.GeneralName, ...],  # none: a client certificate
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(f"{name}.mcoflow.test", ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_path = folder / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Issued(cert=_write_cert(folder / f"{name}.pem", cert), key=key_path)


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(port: int, process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port} after {timeout} s")
        await asyncio.sleep(0.1)


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def nats_tls_server(folder: Path, issued: Issued, ca: Path) -> AsyncIterator[int]:
    """A nats-server with JetStream that requires TLS and a client certificate from
    ``ca``, its own certificate ``issued``; yields its port."""
    port = spare_port()
    config = folder / f"nats-{port}.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{folder / f"js-{port}"}" }}\n'
        f'tls {{ cert_file: "{issued.cert}", key_file: "{issued.key}", '
        f'ca_file: "{ca}", verify: true, timeout: 2 }}\n'
    )
    log = (folder / f"nats-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        NATS_SERVER, "-c", str(config), stdout=log, stderr=log
    )
    try:
        await wait_for_port(port, process, timeout=15)
        yield port
    finally:
        await _stop(process)
        log.close()


@dataclass(frozen=True)
class RabbitNode:
    amqp_port: int  # plain text, for the test's own checks
    tls_port: int


@contextlib.asynccontextmanager
async def rabbitmq_tls_node(folder: Path, issued: Issued, ca: Path) -> AsyncIterator[RabbitNode]:
    """A second RabbitMQ node of its own (name, ports, data, cookie) with a TLS listener
    that requires a client certificate from ``ca``; the shared node is left alone."""
    amqp_port, tls_port, dist_port = spare_port(), spare_port(), spare_port()
    node = f"mcoflow-tls-{tls_port}@localhost"
    home = folder / f"rabbit-{tls_port}"
    (home / "log").mkdir(parents=True)
    (home / "plugins").write_text("[].\n")
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
        f"listeners.ssl.default = 127.0.0.1:{tls_port}\n"
        f"ssl_options.cacertfile = {ca}\n"
        f"ssl_options.certfile = {issued.cert}\n"
        f"ssl_options.keyfile = {issued.key}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "loopback_users = none\n"
    )
    environment = {
        **os.environ,
        "HOME": str(home),  # its own Erlang cookie
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        "RABBITMQ_PID_FILE": str(home / "pid"),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
    }
    log = (home / "stdout.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        RABBITMQ_SERVER, env=environment, stdout=log, stderr=log, start_new_session=True
    )
    try:
        await wait_for_port(tls_port, process, timeout=90)
        yield RabbitNode(amqp_port=amqp_port, tls_port=tls_port)
    finally:
        await _stop(process)
        log.close()


@dataclass(frozen=True)
class BrokerUrls:
    tls: str  # amqps:// or tls://
    plain: str  # the same port, as a plain-text URL


@contextlib.asynccontextmanager
async def tls_broker(
    kind: str, folder: Path, issued: Issued, ca: Path
) -> AsyncIterator[BrokerUrls]:
    """``kind`` "nats" or "amqp": a server of that kind presenting ``issued``."""
    if kind == "nats":
        async with nats_tls_server(folder, issued, ca) as port:
            yield BrokerUrls(tls=f"tls://127.0.0.1:{port}", plain=f"nats://127.0.0.1:{port}")
        return
    async with rabbitmq_tls_node(folder, issued, ca) as node:
        where = f"guest:guest@127.0.0.1:{node.tls_port}/"
        yield BrokerUrls(tls=f"amqps://{where}", plain=f"amqp://{where}")

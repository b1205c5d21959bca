"""A TLS-terminating reverse proxy for tests, as nginx in front of `mcoflow serve`, and
a CA with a server certificate for it.

The proxy accepts TLS, opens a plain connection to the backend from ``source`` (a
loopback address of its own, so the server can tell it from a direct client), rewrites
the request head as nginx's ``proxy_pass`` does (Host: the backend; X-Forwarded-Proto,
-For and -Host set, whatever the client sent in them) and pipes the bytes both ways. One
request per connection (``Connection: close``), so only one head needs rewriting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# replaced by the proxy's own (hop-by-hop, or only the proxy may say them)
_DROPPED = frozenset(
    {b"host", b"connection", b"keep-alive"}
    | {b"x-forwarded-proto", b"x-forwarded-for", b"x-forwarded-host"}
)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None = None
) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_certificates(directory: Path) -> Certificates:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost, as PEM files."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _certificate("mcoflow test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        _certificate("localhost", key, issuer=ca_cert.subject)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def rewrite_head(head: bytes, backend: str, client: str) -> bytes:
    """The request head as the proxy forwards it to ``backend`` (host:port)."""
    request_line, *fields = [line for line in head.split(b"\r\n") if line]
    host = b""
    kept = []
    for field in fields:
        name = field.partition(b":")[0].strip().lower()
        if name == b"host":
            host = field.partition(b":")[2].strip()
        if name not in _DROPPED:
            kept.append(field)
    added = [
        b"Host: " + backend.encode(),
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-For: " + client.encode(),
        b"X-Forwarded-Host: " + host,
        b"Connection: close",
    ]
    return b"\r\n".join([request_line, *kept, *added]) + b"\r\n\r\n"


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        target.close()


@contextlib.asynccontextmanager
async def tls_proxy(
    certificates: Certificates, backend: tuple[str, int], source: str = "127.0.0.2"
) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 (the port is yielded) and forward to ``backend``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*backend, local_addr=(source, 0))
        client = writer.get_extra_info("peername")[0]
        up_writer.write(rewrite_head(head, f"{backend[0]}:{backend[1]}", client))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    context = certificates.server_context()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()

"""What the README's fleet walkthrough turned up: a host key added while the executors
run is trusted from its first reply; `mcoflow keys host` never leaves a trusted public
key without its private half, and trusts a host's own public key; `mcoflow config`
hides passwords and says where each setting came from; a refused RabbitMQ login or vhost
is said as such, with no password in the message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcoflow.agent.trust import TrustWatcher
from mcoflow.rpc import Reply, transport_from_url
from mcoflow.rpc.client import RpcClient
from mcoflow.rpc.envelope import seal
from mcoflow.rpc.messages import StatusCode, build_reply, build_request
from mcoflow.rpc.security import Signer, generate_keypair, public_pem, write_private_key
from mcoflow.rpc.unreachable import broker_unreachable

MCOFLOW = str(Path(sys.executable).parent / "mcoflow")


# -- the orchestrator trusts a host added to hosts/ while it runs ---------------------


def _reply_from(host: str, key: Ed25519PrivateKey) -> bytes:
    request = build_request(
        sender="b", caller="mcoflow", collective="c", agent="rpcutil", action="ping",
        reply_to="replies",
    )  # fmt: skip
    reply = build_reply(request, sender=host, statuscode=StatusCode.OK, data={"pong": 1})
    return seal(reply, Signer(host, key))


def _client(hosts: Path, *, reload: bool) -> tuple[RpcClient, list[Reply]]:
    (hosts.parent / "orchestrator").mkdir(parents=True, exist_ok=True)
    generate_keypair(hosts.parent / "orchestrator", "mcoflow")
    watcher = TrustWatcher(hosts)
    received: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        received.append(reply)

    client = RpcClient(
        transport_from_url("memory://deploy-fixes"),
        Signer.from_file(hosts.parent / "orchestrator" / "mcoflow.key"),
        collective="c",
        reply_to="replies",
        verifier=watcher.verifier,
        on_reply=on_reply,
        refresh_trust=watcher.on_unknown_key if reload else None,
    )
    return client, received


@pytest.mark.parametrize("reload", [True, False])
async def test_a_host_key_added_after_the_start_is_trusted_from_its_first_reply(
    tmp_path: Path, reload: bool
) -> None:
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    client, received = _client(hosts, reload=reload)
    key = Ed25519PrivateKey.generate()
    (hosts / "web3.pub").write_bytes(public_pem(key.public_key()))  # after the start
    await client._on_envelope(_reply_from("web3", key))
    if reload:
        assert [r.sender for r in received] == ["web3"] and client.rejected_replies == 0
    else:  # as before: refused until a restart
        assert received == [] and client.rejected_replies == 1


async def test_a_reply_from_an_unknown_host_is_still_refused(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    client, received = _client(hosts, reload=True)
    await client._on_envelope(_reply_from("intruder", Ed25519PrivateKey.generate()))
    assert received == [] and client.rejected_replies == 1


# -- mcoflow keys host, mcoflow config --------------------------------------------------


def mcoflow(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCOFLOW, *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MCOFLOW_KEYS_DIR": str(tmp_path / "keys"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_host_refuses_a_new_pair_beside_a_public_key_given_out(tmp_path: Path) -> None:
    assert mcoflow(tmp_path, "keys", "host", "web1").returncode == 0
    trusted = (tmp_path / "keys" / "hosts" / "web1.pub").read_bytes()
    (tmp_path / "keys" / "host-keys" / "web1.key").unlink()  # given to the host
    again = mcoflow(tmp_path, "keys", "host", "web1")
    assert again.returncode == 2
    assert "exists but not its private key host-keys/web1.key" in " ".join(again.stdout.split())
    assert (tmp_path / "keys" / "hosts" / "web1.pub").read_bytes() == trusted
    assert not (tmp_path / "keys" / "host-keys" / "web1.key").exists()


def test_keys_host_trusts_a_public_key_the_host_made(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    write_private_key(tmp_path / "web2.key", key)
    (tmp_path / "web2.pub").write_bytes(public_pem(key.public_key()))
    done = mcoflow(tmp_path, "keys", "host", "web2", "--public-key", "web2.pub")
    assert done.returncode == 0, done.stdout + done.stderr
    trusted = tmp_path / "keys" / "hosts" / "web2.pub"
    assert trusted.read_bytes() == (tmp_path / "web2.pub").read_bytes()
    assert not (tmp_path / "keys" / "host-keys").exists()  # no private key made here
    assert mcoflow(tmp_path, "keys", "host", "web2", "--public-key", "web2.pub").returncode == 0
    other = Ed25519PrivateKey.generate().public_key()
    (tmp_path / "other.pub").write_bytes(public_pem(other))
    refused = mcoflow(tmp_path, "keys", "host", "web2", "--public-key", "other.pub")
    assert refused.returncode == 2 and "already holds another key" in refused.stdout
    private = mcoflow(tmp_path, "keys", "host", "web3", "--public-key", "web2.key")
    assert private.returncode == 2 and "not a usable Ed25519 public key" in private.stdout
    assert trusted.read_bytes() == (tmp_path / "web2.pub").read_bytes()


def test_config_hides_passwords_and_names_each_settings_source(tmp_path: Path) -> None:
    (tmp_path / "mcoflow.yaml").write_text("listen: 127.0.0.1:9999\n")
    done = mcoflow(
        tmp_path,
        "config",
        MCOFLOW_CONFIG=str(tmp_path / "mcoflow.yaml"),
        MCOFLOW_DATABASE_URL="postgresql://mcoflow:db-secret@a.example.com/mcoflow",
        MCOFLOW_TRANSPORT_URL="amqp://mcoflow:mq-secret@a.example.com/mcoflow",
    )
    assert done.returncode == 0, done.stderr
    assert "db-secret" not in done.stdout and "mq-secret" not in done.stdout
    lines = done.stdout.splitlines()
    assert (
        "database_url = postgresql://mcoflow:***@a.example.com/mcoflow  (MCOFLOW_DATABASE_URL)"
        in lines
    )
    assert "listen = 127.0.0.1:9999  (file)" in lines
    assert "collective = mcoflow  (default)" in lines


# -- RabbitMQ's refusals -------------------------------------------------------------


class InvalidFrameError(Exception):
    """aiormq's words for a connection closed at open (an unknown vhost)."""


@pytest.mark.parametrize(
    ("url", "exc", "said"),
    [
        (
            "amqp://agent:s3cret@a.example.com/mcoflow",
            ConnectionError("ACCESS_REFUSED - Login was refused using authentication mechanism"),
            "RabbitMQ refused the login of user 'agent': check the user name and the password",
        ),
        (
            "amqp://agent:s3cret@a.example.com/nosuch",
            InvalidFrameError("Expected one of ['Connection.OpenOk'], got <Connection.Close>"),
            "RabbitMQ refused to open vhost 'nosuch' (the URL's path) for user 'agent'",
        ),
        (
            "amqp://agent:s3cret@a.example.com/mcoflow",
            ValueError("got URL('amqp://agent:s3cret@a.example.com/mcoflow')"),
            "got URL('amqp://agent:***@a.example.com/mcoflow'); is RabbitMQ running",
        ),
    ],
)
def test_a_refused_login_or_vhost_is_said_as_such_without_the_password(
    url: str, exc: Exception, said: str
) -> None:
    message = broker_unreachable("RabbitMQ", url, exc)
    assert said in message
    assert "s3cret" not in message
    assert ("is RabbitMQ running" in message) == ("got URL" in said)

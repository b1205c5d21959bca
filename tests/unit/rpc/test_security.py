from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from mcoflow.rpc import (
    ReplayGuard,
    SecurityError,
    Signer,
    Verifier,
    build_request,
    generate_keypair,
    load_private_key,
    load_public_key,
    open_reply,
    open_request,
    seal,
)
from tests.rpc_fixtures import Keys


def request_for(caller: str = "alice") -> bytes:
    from mcoflow.rpc.messages import encode_message

    return encode_message(
        build_request(
            sender="o",
            caller=caller,
            collective="c",
            agent="package",
            action="status",
            reply_to="r",
        )
    )


def test_generate_keypair_writes_pem_files_with_private_mode(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "keys", "alice")
    assert private.name == "alice.key"
    assert public.name == "alice.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    signer = Signer("alice", load_private_key(private))
    verifier = Verifier({"alice": load_public_key(public)})
    assert verifier.open(signer.sign(b"hello")) == ("alice", b"hello")


def test_generate_keypair_never_overwrites(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "alice")
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path, "alice")


def test_verifier_from_directory_trusts_every_pub_by_stem(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "alice")
    generate_keypair(tmp_path, "bob")
    verifier = Verifier.from_directory(tmp_path)
    assert verifier.names == {"alice", "bob"}
    bob = Signer.from_file(tmp_path / "bob.key")
    assert verifier.open(bob.sign(b"x")) == ("bob", b"x")


def test_envelope_format(keys: Keys) -> None:
    frame = json.loads(keys.caller.sign(b"body"))
    assert frame["v"] == 1
    assert frame["signer"] == "alice"
    assert base64.b64decode(frame["body"]) == b"body"
    assert len(base64.b64decode(frame["sig"])) == 64


def test_signatures_are_standard_ed25519_both_ways() -> None:
    """Signing goes through libsodium; any RFC 8032 implementation (here OpenSSL's, via
    ``cryptography``) must produce and accept the same signatures."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    frame = json.loads(Signer("carol", private).sign(b"body"))
    signature = base64.b64decode(frame["sig"])
    assert signature == private.sign(b"body")  # deterministic: the very same bytes
    private.public_key().verify(signature, b"body")

    other = Ed25519PrivateKey.generate()
    envelope = json.dumps(
        {
            "v": 1,
            "signer": "carol",
            "body": base64.b64encode(b"x").decode(),
            "sig": base64.b64encode(other.sign(b"x")).decode(),
        }
    ).encode()
    assert Verifier({"carol": other.public_key()}).open(envelope) == ("carol", b"x")
    with pytest.raises(SecurityError, match="bad signature"):
        Verifier({"carol": private.public_key()}).open(envelope)


def tamper(envelope: bytes, **changes: object) -> bytes:
    frame = json.loads(envelope)
    frame.update(changes)
    return json.dumps(frame).encode()


def test_tampered_body_is_refused(keys: Keys) -> None:
    envelope = keys.caller.sign(b'{"a":1}')
    forged = tamper(envelope, body=base64.b64encode(b'{"a":2}').decode())
    with pytest.raises(SecurityError, match="bad signature"):
        keys.trusts_caller.open(forged)


def test_unknown_signer_and_impersonation_are_refused(keys: Keys) -> None:
    with pytest.raises(SecurityError, match="unknown signer 'mallory'"):
        keys.trusts_caller.open(keys.stranger.sign(b"x"))
    # mallory signs with her key but claims to be alice
    claimed = tamper(keys.stranger.sign(b"x"), signer="alice")
    with pytest.raises(SecurityError, match="bad signature"):
        keys.trusts_caller.open(claimed)


@pytest.mark.parametrize(
    "envelope",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v":2,"signer":"a","body":"","sig":""}',
        b'{"v":1,"signer":"alice","body":"e30="}',
        b'{"v":1,"signer":"alice","body":"!!","sig":"AAAA"}',
        b'{"v":1,"signer":"al ice","body":"e30=","sig":"AAAA"}',
        b'{"v":1,"signer":"alice","body":"e30=","sig":"AAAA"}',
    ],
)
def test_unsigned_or_malformed_envelopes_are_refused(keys: Keys, envelope: bytes) -> None:
    with pytest.raises(SecurityError):
        keys.trusts_caller.open(envelope)


def test_a_plain_unsigned_request_is_refused(keys: Keys) -> None:
    with pytest.raises(SecurityError, match="not a signed envelope"):
        open_request(request_for(), keys.trusts_caller)


def test_open_request_requires_the_caller_to_be_the_signer(keys: Keys) -> None:
    request = build_request(
        sender="o", caller="bob", collective="c", agent="package", action="status", reply_to="r"
    )
    with pytest.raises(SecurityError, match="claims caller 'bob'"):
        open_request(seal(request, keys.caller), keys.trusts_caller)


def test_open_reply_can_bind_sender_to_key(keys: Keys) -> None:
    from mcoflow.rpc import StatusCode, build_reply

    request = build_request(
        sender="o", caller="alice", collective="c", agent="package", action="status", reply_to="r"
    )
    reply = build_reply(request, sender="web1", statuscode=StatusCode.OK)
    envelope = seal(reply, keys.host)
    assert open_reply(envelope, keys.trusts_host).sender == "web1"
    assert open_reply(envelope, None).sender == "web1"
    with pytest.raises(SecurityError, match="signed by 'hosts'"):
        open_reply(envelope, keys.trusts_host, bind_sender=True)
    with pytest.raises(SecurityError, match="unknown signer"):
        open_reply(envelope, keys.trusts_caller)


def test_replay_guard_refuses_replays_and_expired_and_future() -> None:
    guard = ReplayGuard(clock_skew=60)
    guard.check("a", time=1000, ttl=30, now=1010)
    with pytest.raises(SecurityError, match="replay"):
        guard.check("a", time=1000, ttl=30, now=1011)
    with pytest.raises(SecurityError, match="expired"):
        guard.check("b", time=1000, ttl=30, now=1031)
    with pytest.raises(SecurityError, match="future"):
        guard.check("c", time=1100, ttl=30, now=1000)
    guard.check("d", time=1050, ttl=30, now=1000)  # within the clock-skew allowance


def test_replay_guard_forgets_ids_once_they_cannot_be_accepted() -> None:
    guard = ReplayGuard(clock_skew=10)
    for number in range(1000):
        guard.check(f"id{number}", time=1000, ttl=5, now=1000)
    assert len(guard) == 1000
    guard.check("late", time=2000, ttl=5, now=2000)
    assert len(guard) == 1
    # the forgotten ids are still refused, by the time window
    with pytest.raises(SecurityError, match="expired"):
        guard.check("id1", time=1000, ttl=5, now=2000)


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(max_entries=3)
    for number in range(3):
        guard.check(str(number), time=1000, ttl=60, now=1000)
    with pytest.raises(SecurityError, match="full"):
        guard.check("4", time=1000, ttl=60, now=1000)


def test_a_reply_batch_is_verified_once_and_parsed_whole(keys: Keys) -> None:
    from mcoflow.rpc import MessageError, StatusCode, build_reply, open_replies
    from mcoflow.rpc.messages import encode_message, encode_reply_batch, parse_replies

    request = build_request(
        sender="o", caller="alice", collective="c", agent="rpcutil", action="ping", reply_to="r"
    )
    bodies = [
        encode_message(build_reply(request, sender=f"sim{n}", statuscode=StatusCode.OK))
        for n in range(3)
    ]
    envelope = keys.host.sign(encode_reply_batch(bodies))
    replies = open_replies(envelope, keys.trusts_host)
    assert [r.sender for r in replies] == ["sim0", "sim1", "sim2"]
    # A lone reply opens the same way, as a list of one.
    assert [r.sender for r in open_replies(keys.host.sign(bodies[0]), keys.trusts_host)] == ["sim0"]
    with pytest.raises(SecurityError, match="signed by 'hosts'"):
        open_replies(envelope, keys.trusts_host, bind_sender=True)
    with pytest.raises(SecurityError, match="unknown signer"):
        open_replies(envelope, keys.trusts_caller)
    # Tampering with any reply of the batch breaks the one signature.
    frame = json.loads(envelope)
    body = base64.b64decode(frame["body"]).replace(b"sim2", b"sim9")
    frame["body"] = base64.b64encode(body).decode()
    with pytest.raises(SecurityError, match="bad signature"):
        open_replies(json.dumps(frame).encode(), keys.trusts_host)
    # A batch whose replies are malformed is refused whole, with the reason.
    with pytest.raises(MessageError, match="invalid replybatch"):
        parse_replies(encode_reply_batch([b'{"version":1}']))
    with pytest.raises(MessageError, match="at least one"):
        encode_reply_batch([])

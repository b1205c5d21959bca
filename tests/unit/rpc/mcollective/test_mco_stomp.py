"""STOMP 1.2 framing: RabbitMQ's own bytes, escaping, partial reads and hostile peers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcoflow.rpc.mcollective.psk import decode_reply
from mcoflow.rpc.mcollective.stomp import Frame, FrameReader, StompError, encode_frame
from tests.unit.rpc.mcollective.mco_fixtures import PSK, STOMP_SESSION


def test_reads_a_real_rabbitmq_session() -> None:
    frames = FrameReader().feed(STOMP_SESSION)
    assert [frame.command for frame in frames] == ["CONNECTED", "MESSAGE"]
    assert frames[0].header("version") == "1.2"
    message = frames[1]
    assert message.header("subscription") == "/temp-queue/mcollective_reply_discovery"
    assert message.header("mc_sender") == "node1"
    assert message.header("destination").startswith("/queue/amq.gen-")
    assert len(message.body) == int(message.header("content-length"))
    reply = decode_reply(message.body, psk=PSK, ttl=60, now=0)
    assert (reply.senderid, reply.body) == ("node1", "pong")


def test_binary_body_and_escaped_headers_round_trip() -> None:
    body = b"\x04\x08\x00\n\n\x00binary"
    headers = {"destination": "/exchange/x/y", "odd": "a:b\nc\\d\re", "é": "☃"}
    data = encode_frame("SEND", headers, body)
    assert b"odd:a\\cb\\nc\\\\d\\re\n" in data
    assert b"content-length:12\n" in data
    [frame] = FrameReader().feed(data)
    assert frame == Frame("SEND", {**headers, "content-length": "12"}, body)


def test_connect_headers_are_not_escaped() -> None:
    data = encode_frame("CONNECT", {"login": "a:b", "passcode": "p\\w"})
    assert data == b"CONNECT\nlogin:a:b\npasscode:p\\w\n\n\0"
    assert FrameReader().feed(b"CONNECTED\nserver:x:y\\z\n\n\0")[0].headers == {"server": "x:y\\z"}
    with pytest.raises(ValueError, match="line break"):
        encode_frame("CONNECT", {"passcode": "a\nb"})


def test_heartbeats_crlf_and_bodies_without_length() -> None:
    data = b"\n\r\nRECEIPT\r\nreceipt-id:7\r\n\r\n\0\n\nMESSAGE\nx:1\nx:2\n\nhello\0\n"
    frames = FrameReader().feed(data)
    assert frames == [Frame("RECEIPT", {"receipt-id": "7"}), Frame("MESSAGE", {"x": "1"}, b"hello")]


@given(st.lists(st.integers(0, len(STOMP_SESSION)), max_size=30))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    reader = FrameReader()
    frames: list[Frame] = []
    points = [0, *sorted(cuts), len(STOMP_SESSION)]
    for start, end in itertools.pairwise(points):
        frames += reader.feed(STOMP_SESSION[start:end])
    assert frames == FrameReader().feed(STOMP_SESSION)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"MESSAGE\nbad\\t:x\n\n\0", "undefined escape"),
        (b"MESSAGE\nx:\xff\n\n\0", "not UTF-8"),
        (b"MESSAGE\nno colon\n\n\0", "without ':'"),
        (b"MES SAGE\n\n\0", "invalid STOMP command"),
        (b"MESSAGE\ncontent-length:3\n\nabcd\0", "not followed by NUL"),
        (b"MESSAGE\ncontent-length:-1\n\n\0", "invalid or too large content-length"),
        (b"MESSAGE\ncontent-length:99999999999\n\n", "invalid or too large content-length"),
        (b"MESSAGE\nx:" + b"y" * 70_000, "frame head longer than"),
        (b"MESSAGE\n\n" + b"z" * 2_000, "frame body longer than 1000 bytes"),
    ],
)
def test_broken_or_hostile_peers(data: bytes, message: str) -> None:
    with pytest.raises(StompError, match=message):
        FrameReader(max_body=1000).feed(data)


def test_incomplete_frames_wait_for_more() -> None:
    reader = FrameReader()
    assert reader.feed(b"MESSAGE\ncontent-length:4\n\nab") == []
    assert reader.feed(b"\0\0") == []  # a NUL inside the announced length is body
    assert reader.feed(b"\0") == [Frame("MESSAGE", {"content-length": "4"}, b"ab\0\0")]
    assert reader.feed(b"ERROR\n\nno length") == []
    assert reader.feed(b" yet\0") == [Frame("ERROR", {}, b"no length yet")]


def test_invalid_frames_are_not_written() -> None:
    with pytest.raises(ValueError, match="invalid STOMP command"):
        encode_frame("SEND\nx", {})
    with pytest.raises(ValueError, match="name cannot hold"):
        encode_frame("CONNECT", {"a:b": "c"})

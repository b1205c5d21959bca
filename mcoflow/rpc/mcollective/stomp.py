"""STOMP 1.2 frames without I/O: encode a frame, and cut a byte stream into frames.

The mcollective transport runs it on asyncio streams (RabbitMQ's STOMP plugin speaks 1.0-1.2;
the Ruby side of MCollective uses 1.0, which the broker translates). Bodies are always sent
with ``content-length``, so binary Marshal bodies holding NUL bytes pass unchanged. Header
names and values are UTF-8 and escaped as 1.2 asks (except in CONNECT and CONNECTED); the
first of a repeated header wins. Limits keep a hostile or broken peer from growing the buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["HEARTBEAT", "Frame", "FrameReader", "StompError", "encode_frame"]

HEARTBEAT = b"\n"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
_UNESCAPED = frozenset({"CONNECT", "CONNECTED"})
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"}
_UNESCAPES = {b"\\\\": b"\\", b"\\n": b"\n", b"\\r": b"\r", b"\\c": b":"}
_ESCAPE_SEQUENCE = re.compile(rb"\\.?", re.DOTALL)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class StompError(ValueError):
    """The peer broke the STOMP framing; the connection cannot be trusted any more."""


@dataclass(frozen=True)
class Frame:
    command: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


def _escape(text: str, command: str) -> str:
    if command in _UNESCAPED:
        if any(c in text for c in "\r\n"):
            raise ValueError(f"{command} header text cannot hold a line break: {text!r}")
        return text
    return "".join(_ESCAPES.get(c, c) for c in text)


def encode_frame(
    command: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """One frame; ``content-length`` is added to every frame with a body."""
    if not command.isalpha():
        raise ValueError(f"invalid STOMP command {command!r}")
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    lines = [command]
    for name, value in pairs:
        if command in _UNESCAPED and ":" in name:
            raise ValueError(f"{command} header name cannot hold ':': {name!r}")
        lines.append(f"{_escape(name, command)}:{_escape(value, command)}")
    if body and not any(name == "content-length" for name, _ in pairs):
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"


def _unescape(raw: bytes) -> str:
    def one(found: re.Match[bytes]) -> bytes:
        try:
            return _UNESCAPES[found.group()]
        except KeyError:
            raise StompError(f"undefined escape {found.group()!r} in a header") from None

    try:
        return _ESCAPE_SEQUENCE.sub(one, raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StompError(f"header is not UTF-8: {exc}") from None


class FrameReader:
    """Feed it bytes as they arrive; it returns the frames they complete."""

    def __init__(self, *, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self._buffer = bytearray()
        self._nul_from = 0  # where the search for a body's NUL goes on (bodies without length)
        self._max_head = max_head
        self._max_body = max_body

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> Frame | None:
        buffer = self._buffer
        start = 0
        while start < len(buffer) and buffer[start] in b"\r\n":  # heart-beats, padding
            start += 1
        del buffer[:start]
        end = _BLANK_LINE.search(buffer, 0, self._max_head + 4)
        if end is None:
            if len(buffer) > self._max_head:
                raise StompError(f"frame head longer than {self._max_head} bytes")
            return None
        command, headers = self._head(bytes(buffer[: end.start()]))
        body_start = end.end()
        if "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit() or int(length) > self._max_body:
                raise StompError(f"invalid or too large content-length {length[:20]!r}")
            nul = body_start + int(length)
            if len(buffer) <= nul:
                return None
            if buffer[nul] != 0:
                raise StompError("frame body is not followed by NUL")
        else:
            found = buffer.find(b"\0", max(body_start, self._nul_from))
            if found < 0:
                if len(buffer) - body_start > self._max_body:
                    raise StompError(f"frame body longer than {self._max_body} bytes")
                self._nul_from = len(buffer)
                return None
            nul = found
        frame = Frame(command, headers, bytes(buffer[body_start:nul]))
        del buffer[: nul + 1]
        self._nul_from = 0
        return frame

    @staticmethod
    def _head(head: bytes) -> tuple[str, dict[str, str]]:
        lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
        command = lines[0].decode("ascii", "replace")
        if not command.isalpha():
            raise StompError(f"invalid STOMP command {command[:20]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise StompError(f"header line without ':' in {command}")
            if command in _UNESCAPED:
                key, text = name.decode("utf-8", "replace"), value.decode("utf-8", "replace")
            else:
                key, text = _unescape(name), _unescape(value)
            headers.setdefault(key, text)
        return command, headers

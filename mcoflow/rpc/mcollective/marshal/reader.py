"""Marshal 4.8 reader that builds plain data only (see the package docstring)."""

from __future__ import annotations

import re

from mcoflow.rpc.mcollective.marshal.values import MarshalError, RubyKey, RubyValue, Symbol

__all__ = ["MAX_DEPTH", "MAX_NODES", "loads"]

MAX_DEPTH = 64
MAX_NODES = 1_000_000  # values built, counting each reuse of a linked Array/Hash in full
MAX_BIGNUM_BYTES = 128
MAX_FLOAT_TEXT = 64
_FLOAT_TEXT = re.compile(rb"-?(?:inf|nan|[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)")
# other encodings Ruby names in an :encoding ivar and that Python decodes the same way
_ENCODINGS = {b"ISO-8859-1": "latin-1", b"Windows-1252": "cp1252", b"UTF-16LE": "utf-16-le"}
_REFUSED = {
    ord("o"): "object",
    ord("c"): "class",
    ord("m"): "module",
    ord("M"): "old-style module",
    ord("u"): "user type (_dump)",
    ord("U"): "user type (marshal_dump)",
    ord("e"): "extended object",
    ord("C"): "user class",
    ord("/"): "regexp",
    ord("S"): "struct",
    ord("d"): "data object",
}


class _Reader:
    def __init__(self, data: bytes, max_depth: int, max_nodes: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.nodes_left = max_nodes
        self.symbols: list[Symbol] = []
        # object table: the value, its size in nodes, and whether it is still being built
        self.objects: list[tuple[RubyValue, int, bool]] = []

    def fail(self, message: str, at: int | None = None) -> MarshalError:
        return MarshalError(message, self.pos if at is None else at)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise self.fail(f"length {n} runs past the end of data")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def long(self) -> int:
        c = self.byte()
        c = c - 256 if c > 127 else c
        if c == 0:
            return 0
        if c > 4:
            return c - 5
        if c < -4:
            return c + 5
        raw = self.take(abs(c))
        value = int.from_bytes(raw, "little")
        return value if c > 0 else value - (1 << (8 * -c))

    def count(self, per_item: int) -> int:
        at = self.pos
        n = self.long()
        # every element takes at least one byte: a huge count cannot be honest
        if n < 0 or n * per_item > len(self.data) - self.pos:
            raise self.fail(f"count {n} does not fit in the data", at)
        return n

    def spend(self, nodes: int) -> None:
        self.nodes_left -= nodes
        if self.nodes_left < 0:
            raise self.fail("too many values")

    def remember(self, value: RubyValue, size: int = 1, building: bool = False) -> int:
        self.objects.append((value, size, building))
        return len(self.objects) - 1

    def symbol(self) -> Symbol:
        """A plain Symbol or a link to one (a Symbol with an encoding comes through ``I``)."""
        at = self.pos
        tag = self.byte()
        if tag == ord(":"):
            return self.symbol_body(None)
        if tag == ord(";"):
            index = self.long()
            if not 0 <= index < len(self.symbols):
                raise self.fail(f"symbol link {index} to an unknown symbol", at)
            return self.symbols[index]
        raise self.fail(f"expected a symbol, found {chr(tag)!r}", at)

    def symbol_body(self, ivars_depth: int | None) -> Symbol:
        raw = self.take(self.count(1))
        index = len(self.symbols)
        self.symbols.append(Symbol())  # Ruby numbers the symbol before reading its ivars
        encoding = None
        if ivars_depth is not None:
            encoding = self.encoding(self.count(2), b"UTF-8", ivars_depth)
        self.symbols[index] = Symbol(raw.decode(encoding or "utf-8", errors="replace"))
        return self.symbols[index]

    def encoding(self, n: int, default: bytes | None, depth: int) -> str | None:
        """Read ``n`` string ivars; only an encoding (``:E`` or ``:encoding``) is allowed."""
        name = default
        for _ in range(n):
            at = self.pos
            key = self.symbol()
            value = self.value(depth + 1)
            if key == "E" and isinstance(value, bool):
                name = b"UTF-8" if value else b"US-ASCII"
            elif key == "encoding" and isinstance(value, bytes):
                name = value
            else:
                raise self.fail(f"unsupported String instance variable {key!r}", at)
        if name in (b"UTF-8", b"US-ASCII"):  # US-ASCII is a subset of UTF-8
            return "utf-8"
        return None if name is None else _ENCODINGS.get(name)

    def value(self, depth: int) -> RubyValue:
        if depth > self.max_depth:
            raise self.fail("nesting too deep")
        self.spend(1)
        at = self.pos
        tag = self.byte()
        match chr(tag):
            case "0":
                return None
            case "T":
                return True
            case "F":
                return False
            case "i":
                return self.long()
            case ":" | ";":
                self.pos = at
                return self.symbol()
            case '"':
                raw = self.take(self.count(1))
                self.remember(raw)
                return raw
            case "I":
                return self.with_ivars(depth, at)
            case "f":
                return self.float(at)
            case "l":
                return self.bignum(at)
            case "[":
                return self.array(depth)
            case "{" | "}":
                return self.hash(depth, with_default=tag == ord("}"), at=at)
            case "@":
                return self.link(at)
        what = _REFUSED.get(tag)
        if what is None:
            raise self.fail(f"unknown Marshal type {chr(tag)!r}", at)
        raise self.fail(f"refused Marshal {what} ({chr(tag)!r}){self.peek_name()}", at)

    def peek_name(self) -> str:
        # only for the error message: the class name, read as bytes, never resolved
        try:
            tag = self.data[self.pos - 1]
            if tag == ord("/"):
                return ""
            name = self.take(self.count(1)) if tag in b"cmM" else self.symbol().encode()
            return f" of class {name.decode('utf-8', 'replace')!r}"
        except MarshalError:
            return ""

    def with_ivars(self, depth: int, at: int) -> RubyValue:
        inner = self.byte()
        if inner == ord(":"):
            return self.symbol_body(depth)
        if inner != ord('"'):
            self.pos -= 1
            what = _REFUSED.get(inner, f"type {chr(inner)!r}")
            raise self.fail(f"refused instance variables on a Marshal {what}", at)
        raw = self.take(self.count(1))
        index = self.remember(raw)
        encoding = self.encoding(self.count(2), None, depth)
        text: RubyValue = raw if encoding is None else raw.decode(encoding, errors="replace")
        self.objects[index] = (text, 1, False)
        return text

    def float(self, at: int) -> float:
        raw = self.take(self.count(1))
        if len(raw) > MAX_FLOAT_TEXT or _FLOAT_TEXT.fullmatch(raw) is None:
            raise self.fail(f"malformed Float {raw[:MAX_FLOAT_TEXT]!r}", at)
        number = float(raw)
        self.remember(number)
        return number

    def bignum(self, at: int) -> int:
        sign = self.byte()
        if sign not in b"+-":
            raise self.fail(f"malformed Bignum sign {chr(sign)!r}", at)
        shorts = self.count(2)
        if shorts * 2 > MAX_BIGNUM_BYTES:
            raise self.fail(f"Bignum of {shorts * 2} bytes is too large", at)
        number = int.from_bytes(self.take(shorts * 2), "little")
        number = number if sign == ord("+") else -number
        self.remember(number)
        return number

    def array(self, depth: int) -> list[RubyValue]:
        items: list[RubyValue] = []
        index = self.remember(items, building=True)
        before = self.nodes_left
        for _ in range(self.count(1)):
            items.append(self.value(depth + 1))
        self.objects[index] = (items, 1 + before - self.nodes_left, False)
        return items

    def hash(self, depth: int, with_default: bool, at: int) -> dict[RubyKey, RubyValue]:
        table: dict[RubyKey, RubyValue] = {}
        index = self.remember(table, building=True)
        before = self.nodes_left
        for _ in range(self.count(2)):
            key_at = self.pos
            key = self.value(depth + 1)
            if isinstance(key, list | dict):
                raise self.fail("a Hash key that is an Array or Hash is not supported", key_at)
            if key in table:
                raise self.fail(f"duplicate Hash key {key!r}", key_at)
            table[key] = self.value(depth + 1)
        if with_default:
            self.value(depth + 1)
        self.objects[index] = (table, 1 + before - self.nodes_left, False)
        return table

    def link(self, at: int) -> RubyValue:
        index = self.long()
        if not 0 <= index < len(self.objects):
            raise self.fail(f"object link {index} to an unknown object", at)
        value, size, building = self.objects[index]
        if building:
            raise self.fail("cyclic object link", at)
        # a shared Array or Hash counts in full each time, so links cannot multiply the work
        # of whoever walks the result
        self.spend(size - 1)
        return value


def loads(data: bytes, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> RubyValue:
    """Read one Marshal 4.8 stream of plain data; :class:`MarshalError` for anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    reader = _Reader(bytes(data), max_depth, max_nodes)
    if reader.data[:2] != b"\x04\x08":
        raise MarshalError(f"not a Marshal 4.8 stream (starts {reader.data[:2]!r})", 0)
    reader.pos = 2
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} trailing bytes")
    return value

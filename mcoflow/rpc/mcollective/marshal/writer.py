"""Marshal 4.8 writer for plain data, byte for byte as Ruby's ``Marshal.dump``."""

from __future__ import annotations

import math
from decimal import Decimal

from mcoflow.rpc.mcollective.marshal.reader import MAX_DEPTH
from mcoflow.rpc.mcollective.marshal.values import MarshalError, Symbol

__all__ = ["dumps", "float_text"]

_FIXNUM_MIN, _FIXNUM_MAX = -(2**30), 2**30 - 1  # beyond this Ruby writes a Bignum


class _Writer:
    def __init__(self, max_depth: int) -> None:
        self.out = bytearray(b"\x04\x08")
        self.symbols: dict[str, int] = {}
        self.max_depth = max_depth

    def long(self, n: int) -> None:
        if n == 0:
            self.out.append(0)
        elif 0 < n < 123:
            self.out.append(n + 5)
        elif -124 < n < 0:
            self.out.append((n - 5) & 0xFF)
        else:
            size = 1
            while size < 4 and not -(1 << (8 * size)) <= n < (1 << (8 * size)):
                size += 1
            self.out.append(size if n > 0 else 256 - size)
            self.out += (n % (1 << (8 * size))).to_bytes(size, "little")

    def raw(self, data: bytes) -> None:
        self.long(len(data))
        self.out += data

    def symbol(self, name: str) -> None:
        if name in self.symbols:
            self.out.append(ord(";"))
            self.long(self.symbols[name])
            return
        self.symbols[name] = len(self.symbols)
        data = name.encode("utf-8")
        if data.isascii():
            self.out.append(ord(":"))
            self.raw(data)
        else:
            self.out += b"I:"
            self.raw(data)
            self.encoding_ivar()

    def encoding_ivar(self) -> None:
        self.long(1)
        self.symbol("E")
        self.out.append(ord("T"))

    def value(self, value: object, depth: int) -> None:
        if depth > self.max_depth:
            raise MarshalError("nesting too deep to write")
        if value is None:
            self.out.append(ord("0"))
        elif value is True or value is False:
            self.out.append(ord("T" if value else "F"))
        elif isinstance(value, int):
            self.integer(value)
        elif isinstance(value, float):
            self.out.append(ord("f"))
            self.raw(float_text(value))
        elif isinstance(value, Symbol):
            self.symbol(value)
        elif isinstance(value, str):
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MarshalError(f"cannot write a str that is not valid Unicode: {exc}") from None
            self.out += b'I"'
            self.raw(data)
            self.encoding_ivar()
        elif isinstance(value, bytes | bytearray):
            self.out.append(ord('"'))
            self.raw(bytes(value))
        elif isinstance(value, list | tuple):
            self.out.append(ord("["))
            self.long(len(value))
            for item in value:
                self.value(item, depth + 1)
        elif isinstance(value, dict):
            self.out.append(ord("{"))
            self.long(len(value))
            for key, item in value.items():
                self.value(key, depth + 1)
                self.value(item, depth + 1)
        else:
            raise MarshalError(f"cannot write a {type(value).__name__} as plain Marshal data")

    def integer(self, n: int) -> None:
        if _FIXNUM_MIN <= n <= _FIXNUM_MAX:
            self.out.append(ord("i"))
            self.long(n)
            return
        magnitude = abs(n).to_bytes((abs(n).bit_length() + 15) // 16 * 2, "little")
        self.out += b"l+" if n > 0 else b"l-"
        self.long(len(magnitude) // 2)
        self.out += magnitude


def float_text(number: float) -> bytes:
    """A Float's text exactly as Ruby's ``Marshal.dump`` writes it (shortest round trip)."""
    if math.isnan(number):
        return b"nan"
    if math.isinf(number):
        return b"inf" if number > 0 else b"-inf"
    sign = "-" if math.copysign(1.0, number) < 0 else ""
    if number == 0:
        return f"{sign}0".encode()
    _, digit_tuple, exponent = Decimal(repr(abs(number))).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    exponent = int(exponent) + len(all_digits) - len(digits)
    decpt = len(digits) + exponent  # position of the decimal point, as dtoa reports it
    if decpt < -3 or decpt > len(digits):
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{decpt - 1}"
    elif decpt > 0:
        text = digits[:decpt] + ("." + digits[decpt:] if len(digits) > decpt else "")
    else:
        text = "0." + "0" * -decpt + digits
    return (sign + text).encode()


def dumps(value: object, *, max_depth: int = MAX_DEPTH) -> bytes:
    """Write plain data as Ruby ``Marshal.dump`` does: ``str`` as a UTF-8 String, ``bytes``
    as a binary String, :class:`Symbol` as a Symbol, ``tuple`` like ``list``."""
    writer = _Writer(max_depth)
    writer.value(value, 0)
    return bytes(writer.out)

"""The restricted Ruby Marshal reader/writer against Ruby's own bytes, limits and fuzzing."""

from __future__ import annotations

import contextlib
import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcoflow.rpc.mcollective.marshal import MarshalError, RubyValue, Symbol, dumps, loads
from tests.unit.rpc.mcollective.mco_fixtures import RUBY_DUMPS


def ruby(name: str) -> bytes:
    return bytes.fromhex(RUBY_DUMPS[name])


def same(a: object, b: object) -> bool:
    """Equal with the same Python types all the way down (Symbol is not str, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    return a == b


INTS = [0, 1, -1, 122, 123, -123, -124, 255, 256, -256, -257, 65535, 65536]
INTS += [2**30 - 1, -(2**30), 2**30, -(2**30) - 1, 2**31, 2**62, -(2**64), 2**100]
FLOATS = [0.0, -0.0, 1.0, 1.5, -2.25, 100.0, 123.0, 1e16, 1e-5, 0.001, 0.1, 1 / 3, 6.02e23]
FLOATS += [5e-324, math.inf, -math.inf]
NESTED = {
    Symbol("a"): [1, {"b": [None, True]}],
    "s": Symbol("a"),
    1: 2.5,
    None: False,
}

# values whose Ruby dump our writer reproduces byte for byte
EXACT: list[tuple[str, RubyValue]] = [
    ("nil", None),
    ("true", True),
    ("false", False),
    ("ints", INTS),
    ("floats", FLOATS),
    ("symbols", [Symbol("a"), Symbol("a"), Symbol("b"), Symbol("héllo"), Symbol("héllo")]),
    ("nested", NESTED),
]


@pytest.mark.parametrize(("name", "value"), EXACT, ids=[name for name, _ in EXACT])
def test_reads_and_writes_exactly_what_ruby_does(name: str, value: RubyValue) -> None:
    assert same(loads(ruby(name)), value)
    assert dumps(value) == ruby(name)


def test_strings_by_encoding() -> None:
    # "", "abc", "héllo ☃" (UTF-8); "abc".b, "\xff\x00".b (binary); "abc" in US-ASCII
    assert same(loads(ruby("strings")), ["", "abc", "héllo ☃", b"abc", b"\xff\x00", "abc"])
    assert same(loads(ruby("latin1")), "café")
    assert same(loads(ruby("sjis")), b"abc")  # an encoding we do not decode stays bytes
    assert loads(dumps(["héllo", b"\xff"])) == ["héllo", b"\xff"]


def test_invalid_utf8_is_replaced() -> None:
    assert loads(b'\x04\x08I"\x07\xffa\x06:\x06ET') == "\ufffda"


def test_object_links_give_the_shared_value() -> None:
    value = loads(ruby("links"))  # [s, s, arr, arr, 1.5, 1.5] with s and arr shared
    assert same(value, ["x", "x", [1], [1], 1.5, 1.5])
    assert isinstance(value, list)
    assert value[2] is value[3]


def test_hash_default_is_read_and_dropped() -> None:
    assert same(loads(ruby("default")), {Symbol("k"): 1})


def test_nan() -> None:
    value = loads(ruby("nan"))
    assert isinstance(value, float)
    assert math.isnan(value)
    assert dumps(math.nan) == ruby("nan")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("object", "refused Marshal object ('o') of class 'Foo' at offset 2"),
        ("struct", "refused Marshal struct ('S') of class 'Obj' at offset 2"),
        ("class", "refused Marshal class ('c') of class 'String' at offset 2"),
        ("module", "refused Marshal module ('m') of class 'Kernel' at offset 2"),
        ("regexp", "refused instance variables on a Marshal regexp at offset 2"),
        ("time", "refused instance variables on a Marshal user type (_dump) at offset 2"),
        ("ivarstr", "unsupported String instance variable :@x at offset 11"),
    ],
)
def test_refuses_everything_but_plain_data(name: str, message: str) -> None:
    with pytest.raises(MarshalError) as caught:
        loads(ruby(name))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'\x04\x08e:\x0fComparableI"\x06s\x06:\x06ET', "extended object ('e')"),
        (b"\x04\x08U:\x08Foo0", "user type (marshal_dump) ('U') of class 'Foo'"),
        (b"\x04\x08u:\x08Foo\x06x", "user type (_dump) ('u')"),
        (b'\x04\x08C:\x08Foo"\x06x', "user class ('C')"),
        (b"\x04\x08d:\x08Foo0", "data object ('d')"),
        (b"\x04\x08[\x06o:\x08Foo\x00", "object ('o') of class 'Foo' at offset 4"),
        (b"\x04\x08{\x06:\x06ao:\x08Foo\x00", "object ('o') of class 'Foo' at offset 7"),
        (b"\x04\x08Z", "unknown Marshal type 'Z' at offset 2"),
        (b"\x04\x07[\x00", "not a Marshal 4.8 stream"),
        (b"", "not a Marshal 4.8 stream"),
        (b"\x04\x080\x00", "1 trailing bytes"),
        (b"\x04\x08[\x06", "count 1 does not fit in the data at offset 3"),
        (b"\x04\x08[\x06i", "unexpected end of data at offset 5"),
        (b'\x04\x08"\x04\xff\xff\xff\x7f', "count 2147483647 does not fit"),
        (b"\x04\x08[\x04\xff\xff\xff\x7f", "count 2147483647 does not fit in the data"),
        (b"\x04\x08{\x04\xff\xff\xff\x7f", "does not fit in the data"),
        (b"\x04\x08l+\x04\xff\xff\xff\x7f", "does not fit in the data"),
        (b"\x04\x08l+\x46" + b"\x01" * 130, "Bignum of 130 bytes is too large"),
        (b"\x04\x08l*\x06\x01\x00", "malformed Bignum sign"),
        (b"\x04\x08f\x08abc", "malformed Float"),
        (b"\x04\x08f\x08nan", None),
        (b"\x04\x08[\x06@\x00", "cyclic object link at offset 4"),
        (b"\x04\x08@\x00", "object link 0 to an unknown object"),
        (b"\x04\x08;\x00", "symbol link 0 to an unknown symbol"),
        (b'\x04\x08{\x07:\x06ai\x06I"\x06a\x06:\x06ETi\x07', "duplicate Hash key 'a'"),
        (b"\x04\x08{\x06[\x000", "a Hash key that is an Array or Hash is not supported"),
        (b'\x04\x08I"\x06a\x06:\x06Ei\x06', "unsupported String instance variable :E"),
        (b"\x04\x08I[\x00\x00", "refused instance variables on a Marshal type '['"),
    ],
)
def test_malformed_and_hostile_input(data: bytes, fragment: str | None) -> None:
    if fragment is None:
        assert math.isnan(loads(data))  # type: ignore[arg-type]
        return
    with pytest.raises(MarshalError, match=re.escape(fragment)):
        loads(data)


def test_depth_is_limited() -> None:
    deep = b"\x04\x08" + b"[\x06" * 100 + b"0"
    with pytest.raises(MarshalError, match="nesting too deep"):
        loads(deep)
    assert loads(b"\x04\x08" + b"[\x06" * 10 + b"0", max_depth=10) is not None
    with pytest.raises(MarshalError, match="nesting too deep to write"):
        dumps(loads(b"\x04\x08" + b"[\x06" * 60 + b"0"), max_depth=20)


def test_nested_string_ivars_count_as_depth() -> None:
    # each String's :E value is another String with an :E ivar, 20000 deep
    stream = b"\x04\x08" + b'I"\x00\x06:\x06E' * 20000 + b"T" + b"\x00" * 20000
    with pytest.raises(MarshalError, match="nesting too deep"):
        loads(stream)


def chain(levels: int) -> bytes:
    """[[0], [a1, a1], [a2, a2], ...]: each array links twice to the one before it."""
    stream = b"\x04\x08[" + bytes([levels + 1 + 5]) + b"[\x06i\x00"
    for k in range(1, levels + 1):
        stream += b"[\x07@" + bytes([k + 5]) + b"@" + bytes([k + 5])
    return stream


def test_links_cannot_multiply_the_work() -> None:
    # walking the result of 40 levels would visit 2**40 values: each link is charged in full
    assert loads(chain(3)) == [[0], [[0], [0]], [[[0], [0]], [[0], [0]]], [[[[0], [0]]] * 2] * 2]
    started = time.monotonic()
    with pytest.raises(MarshalError, match="too many values"):
        loads(chain(40))
    assert time.monotonic() - started < 1


def test_writer_refuses_what_ruby_could_not_read_back_as_data() -> None:
    with pytest.raises(MarshalError, match="cannot write a set"):
        dumps({1, 2})
    with pytest.raises(MarshalError, match="not valid Unicode"):
        dumps("\ud800")
    assert dumps((1, 2)) == dumps([1, 2])


# ---- properties ------------------------------------------------------------------------

keys = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.text(max_size=10).map(Symbol)
)
plain = st.recursive(
    keys,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def only_plain(value: object, depth: int = 0) -> None:
    assert depth < 100
    if isinstance(value, list):
        for item in value:
            only_plain(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert type(key) in (type(None), bool, int, float, str, bytes, Symbol)
            only_plain(item, depth + 1)
    else:
        assert type(value) in (type(None), bool, int, float, str, bytes, Symbol)


@given(plain)
def test_round_trip(value: RubyValue) -> None:
    assert same(loads(dumps(value)), value)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_plain_data_or_marshal_error(data: bytes) -> None:
    for candidate in (data, b"\x04\x08" + data):
        try:
            value = loads(candidate)
        except MarshalError:
            continue
        only_plain(value)


@settings(max_examples=300)
@given(plain, st.data())
def test_mutated_valid_streams_give_plain_data_or_marshal_error(
    value: RubyValue, data: st.DataObject
) -> None:
    stream = bytearray(dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.sampled_from(b'oucmeUSd/CI@;:[{}"lfiTF0\x00\x7f\xff'))
    with contextlib.suppress(MarshalError):
        only_plain(loads(bytes(stream)))

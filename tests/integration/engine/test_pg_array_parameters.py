"""The store's own array dumper (``mcoflow.engine.store.pgarrays``) against the real
PostgreSQL: whatever list the write path sends, the server reads the same values back
as psycopg's own dumper would have sent them."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcoflow.engine.store.pgarrays import FastListDumper, array_literal, use_fast_arrays

pytestmark = pytest.mark.postgresql

TEXT = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40)
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
).map(json.dumps)


@pytest.fixture(scope="module")
def connection(pg_server: str) -> Any:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        use_fast_arrays(conn)
        yield conn


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | TEXT | JSON_TEXT, max_size=30))
def test_text_arrays_read_back_unchanged(connection: Any, values: list[str | None]) -> None:
    (read,) = connection.execute("SELECT CAST(%s AS text[])", [values]).fetchone()
    assert read == values


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=30),
    st.lists(st.none() | st.floats(allow_nan=False, width=64), max_size=30),
)
def test_number_arrays_read_back_unchanged(
    connection: Any, integers: list[int | None], floats: list[float | None]
) -> None:
    row = connection.execute(
        "SELECT CAST(%s AS int[]), CAST(%s AS float8[])", [integers, floats]
    ).fetchone()
    assert row == (integers, floats)


def test_anything_else_goes_to_psycopgs_dumper(connection: Any) -> None:
    assert array_literal([True]) is None
    assert array_literal([[1, 2]]) is None
    assert array_literal(["a\x00b"]) is None
    (nested,) = connection.execute("SELECT CAST(%s AS int[])", [[[1, 2], [3, 4]]]).fetchone()
    assert nested == [[1, 2], [3, 4]]
    with pytest.raises(psycopg.DataError, match="NUL"):
        connection.execute("SELECT CAST(%s AS text[])", [["a\x00b"]])


async def test_the_store_registers_it_on_its_connections(pg_url: str) -> None:
    from mcoflow.engine.store import Store

    store = Store(pg_url)
    try:
        async with store.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            dumper = raw.driver_connection.adapters.get_dumper(list, "s")  # type: ignore[union-attr]
            assert issubclass(dumper, FastListDumper)
    finally:
        await store.close()

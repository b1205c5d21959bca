"""The engine's IN lists: one statement text whatever the batch size on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from mcoflow.engine.schema import steps
from mcoflow.engine.store.statements import among, pairs_among


def _sql(statement: Select[tuple[object]], dialect: Dialect) -> str:
    return str(statement.compile(dialect=dialect))


def test_postgresql_sends_one_array_parameter_whatever_the_size() -> None:
    texts = {
        _sql(select(steps.c.idx).where(among(steps.c.plan_id, ids, True)), postgresql.dialect())
        for ids in (["a"], [f"p{n}" for n in range(500)])
    }
    assert len(texts) == 1
    (text,) = texts
    assert "= ANY (CAST(" in text and "AS VARCHAR(32)[])" in text


def test_postgresql_pairs_are_unnested_arrays() -> None:
    pairs = [("a", 1), ("b", 2), ("c", 3)]
    statement = select(steps.c.state).where(pairs_among(steps.c.plan_id, steps.c.idx, pairs, True))
    text = _sql(statement, postgresql.dialect())
    assert "unnest(CAST(" in text and "AS INTEGER[])" in text
    assert text.count("%(") == 2  # two parameters, not one per pair


def test_sqlite_keeps_a_plain_in_list() -> None:
    statement = select(steps.c.idx).where(among(steps.c.plan_id, ["a", "b"], False))
    assert " IN (__[POSTCOMPILE_" in _sql(statement, sqlite.dialect())

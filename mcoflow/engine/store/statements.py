"""Statements the write path runs for many rows at once, and the dialect's list
parameters: on PostgreSQL one array per column (``unnest``, ``= ANY``), elsewhere
executemany and IN lists. Built once, at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ARRAY, any_, bindparam, case, cast, func, or_, select, text, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from mcoflow.engine.schema import events, plans, steps
from mcoflow.engine.states import StepState

# On PostgreSQL one UPDATE … FROM unnest(arrays) replaces hundreds of single-row UPDATEs
# (an executemany): one statement, one plan, one round trip per batch.
PG_WRITE_OUTCOMES = text(
    """
    UPDATE steps AS s SET state = v.state, output = v.output, data = v.data, error = v.error,
        progress = v.progress, claimed_by = NULL, ended_at = v.ended,
        run_seconds = s.run_seconds + v.seconds
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_state AS varchar[]),
                CAST(:b_output AS text[]), CAST(:b_data AS text[]), CAST(:b_error AS text[]),
                CAST(:b_progress AS float8[]), CAST(:b_ended AS float8[]),
                CAST(:b_seconds AS float8[]))
        AS v(plan_id, idx, state, output, data, error, progress, ended, seconds)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)


PG_RELEASE = text(
    """
    UPDATE steps AS s SET pending_deps = s.pending_deps - v.n,
        ready_at = CASE WHEN s.pending_deps - v.n <= 0 AND s.state = 'pending'
                        THEN CAST(:now AS float8) ELSE s.ready_at END
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_n AS int[]))
        AS v(plan_id, idx, n)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)


PG_WAKE = text(
    """
    UPDATE steps AS s SET ready_at = CASE
            WHEN s.ready_at IS NULL OR s.ready_at > v.due THEN v.due ELSE s.ready_at END
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[]), CAST(:b_due AS float8[]))
        AS v(plan_id, idx, due)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx AND s.state = 'suspended'
    """
)


PG_SUSPEND = text(
    """
    UPDATE steps AS s SET ready_at = (
            SELECT min(e.due_at) FROM events AS e
            WHERE e.plan_id = v.plan_id AND e.step_idx = v.idx AND e.consumed_at IS NULL)
    FROM unnest(CAST(:b_plan AS varchar[]), CAST(:b_idx AS int[])) AS v(plan_id, idx)
    WHERE s.plan_id = v.plan_id AND s.idx = v.idx
    """
)


PG_PLAN_STATES = text(
    """
    UPDATE plans AS p SET state = v.state, result = v.result, ended_at = v.ended,
        progress = v.progress
    FROM unnest(CAST(:b_id AS varchar[]), CAST(:b_state AS varchar[]),
                CAST(:b_result AS varchar[]), CAST(:b_ended AS float8[]),
                CAST(:b_progress AS float8[]))
        AS v(id, state, result, ended, progress)
    WHERE p.id = v.id
    """
)


# The same updates elsewhere (SQLite), one row per execution of an executemany.
WRITE_OUTCOMES = (
    update(steps)
    .where(steps.c.plan_id == bindparam("b_plan"), steps.c.idx == bindparam("b_idx"))
    .values(
        state=bindparam("b_state"),
        output=bindparam("b_output"),
        data=bindparam("b_data"),
        error=bindparam("b_error"),
        progress=bindparam("b_progress"),
        claimed_by=None,
        ended_at=bindparam("b_ended"),
        run_seconds=steps.c.run_seconds + bindparam("b_seconds"),
    )
)


WAKE = (
    update(steps)
    .where(
        steps.c.plan_id == bindparam("b_plan"),
        steps.c.idx == bindparam("b_idx"),
        steps.c.state == StepState.SUSPENDED.value,
    )
    .values(
        ready_at=case(
            (
                or_(steps.c.ready_at.is_(None), steps.c.ready_at > bindparam("b_due")),
                bindparam("b_due"),
            ),
            else_=steps.c.ready_at,
        )
    )
)


SUSPEND = (
    update(steps)
    .where(steps.c.plan_id == bindparam("b_plan"), steps.c.idx == bindparam("b_idx"))
    .values(
        ready_at=select(func.min(events.c.due_at))
        .where(
            events.c.plan_id == bindparam("b_plan"),
            events.c.step_idx == bindparam("b_idx"),
            events.c.consumed_at.is_(None),
        )
        .scalar_subquery()
    )
)


PLAN_STATES = (
    update(plans)
    .where(plans.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        result=bindparam("b_result"),
        ended_at=bindparam("b_ended"),
        progress=bindparam("b_progress"),
    )
)


def among(column: ColumnElement[Any], values: Iterable[Any], postgresql: bool) -> Any:
    """``column IN values``. On PostgreSQL one array parameter (``= ANY(…)``) instead of
    a placeholder per value: the statement's text is then the same whatever the batch
    size, so it is compiled and parsed once, not once per size."""
    values = list(values)
    if postgresql:
        array = ARRAY(column.type)
        return column == any_(cast(bindparam(None, values, type_=array), array))
    return column.in_(values)


def pairs_among(
    first: ColumnElement[Any],
    second: ColumnElement[Any],
    pairs: Iterable[tuple[Any, Any]],
    postgresql: bool,
) -> Any:
    """``(first, second) IN pairs``; on PostgreSQL two array parameters, unnested."""
    pairs = list(pairs)
    if postgresql:
        arrays = [ARRAY(first.type), ARRAY(second.type)]
        columns = [
            func.unnest(cast(bindparam(None, [pair[n] for pair in pairs], type_=a), a))
            for n, a in enumerate(arrays)
        ]
        return tuple_(first, second).in_(select(*columns))
    return tuple_(first, second).in_(pairs)


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows to one list per column, for the unnest() statements."""
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


def dialect_insert(postgresql: bool) -> Any:
    """INSERT with the dialect's ON CONFLICT DO NOTHING (both dialects spell it alike)."""
    if postgresql:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]

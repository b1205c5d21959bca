"""When a delayed job starts: the operator's TIME words, and the checks of a start window.

TIME is either relative to now, ``+30s``, ``+10m``, ``+2h``, ``+1d`` or combined like
``+1h30m``, or an ISO 8601 date and time, ``2030-06-01T14:30`` (also with a space for
the ``T``), in this machine's local time unless it carries an offset (``…+02:00``,
``…Z``). A start time up to PAST_GRACE seconds ago is taken as "now": a form filled in
during the current minute must not be refused for being a few seconds late.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from mcoflow.actions.parameters import JobInputError

PAST_GRACE = 60.0
TIME_HELP = (
    "TIME: +30s, +10m, +2h, +1d, +1h30m from now, or ISO 8601 like 2030-06-01T14:30 "
    "(local time unless it ends in an offset such as +02:00 or Z)"
)
_RELATIVE = re.compile(r"^\+\s*((?:\d+(?:\.\d+)?\s*[smhd]\s*)+)$", re.IGNORECASE)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, field: str, now: float | None = None) -> float:
    """Epoch seconds for the operator's TIME (see the module's docstring)."""
    words = text.strip()
    if not words:
        raise JobInputError(field, "empty time; " + TIME_HELP)
    relative = _RELATIVE.match(words)
    if relative:
        seconds = sum(
            float(n) * _UNIT[unit.lower()] for n, unit in _PART.findall(relative.group(1))
        )
        return (time.time() if now is None else now) + seconds
    try:
        moment = datetime.fromisoformat(words)
    except ValueError:
        raise JobInputError(field, f"cannot read {words!r} as a time; {TIME_HELP}") from None
    return to_epoch(moment)


def to_epoch(value: float | datetime) -> float:
    """A naive datetime is this machine's local time (as ``datetime.timestamp`` reads it)."""
    return value.timestamp() if isinstance(value, datetime) else float(value)


def show_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(sep=" ", timespec="seconds")


def start_window(
    start_at: float | datetime | None,
    start_before: float | datetime | None,
    *,
    now: float | None = None,
) -> tuple[float, float | None] | None:
    """(start_at, start_before) as epoch seconds, or None to start now. A time in the
    past, or a start_before not after start_at, is a JobInputError naming its field."""
    if start_at is None and start_before is None:
        return None
    current = time.time() if now is None else now
    at = current if start_at is None else to_epoch(start_at)
    if at < current - PAST_GRACE:
        raise JobInputError(
            "start_at", f"{show_time(at)} is in the past (it is {show_time(current)} now)"
        )
    if start_before is None:
        return at, None
    before = to_epoch(start_before)
    if before <= current:
        raise JobInputError(
            "start_before", f"{show_time(before)} is in the past (it is {show_time(current)} now)"
        )
    if before <= at:
        raise JobInputError(
            "start_before", f"{show_time(before)} is not after start_at {show_time(at)}"
        )
    return at, before

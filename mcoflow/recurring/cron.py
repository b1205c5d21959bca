"""When a schedule's occurrences fall: a cron expression read by croniter, in a time zone.

Five fields (minute hour day-of-month month day-of-week) or an alias (``@hourly``,
``@daily``, ``@weekly``, ``@monthly``, ``@yearly``), evaluated in the wall-clock time of
an IANA time zone. Across daylight-saving changes it behaves as Vixie cron does:

- a wall-clock time the clock skips (02:30 when 02:00 jumps to 03:00) runs at the jump;
- a wall-clock time that happens twice (when 03:00 falls back to 02:00) runs once, at
  its first instance, unless the minute or the hour field starts with ``*``: such an
  expression runs by the clock's real minutes, in both passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from mcoflow.job_request import JobInputError

ALIASES = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)
# occurrences counted one by one when a catch-up collapses missed ones; more (a schedule
# every minute while no executor ran for months) are recorded as this many
MAX_COUNTED = 100_000


@dataclass(frozen=True)
class CatchUp:
    """The occurrence to run now, and how many earlier ones were missed."""

    occurrence: float
    skipped: int


class Cron:
    """A checked cron expression in a time zone; times are epoch seconds."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = check_expression(expression)
        self.timezone = timezone
        self.zone = check_timezone(timezone)
        fields = self.expression.split()
        # Vixie cron's rule for the hour the clock repeats (see the module's docstring)
        self._repeats = len(fields) == 5 and (fields[0][0] == "*" or fields[1][0] == "*")

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {self.timezone!r})"

    def occurrences(self, after: float) -> Iterator[float]:
        """The occurrences strictly after ``after``, in order."""
        start = datetime.fromtimestamp(after, self.zone)
        it = croniter(self.expression, start)
        last = after
        while True:
            moment: datetime = it.get_next(datetime)
            at = moment.timestamp()
            if at <= last or self._second_pass(at):
                continue
            last = at
            yield at

    def next_after(self, after: float) -> float:
        return next(self.occurrences(after))

    def catch_up(self, due: float, now: float, max_counted: int = MAX_COUNTED) -> CatchUp:
        """``due`` (an occurrence, not after ``now``) and the ones after it up to ``now``
        collapse into one: the latest of them runs, the others count as skipped (at most
        ``max_counted`` of them are counted)."""
        latest, skipped = due, 0
        for at in self.occurrences(due):
            if at > now:
                break
            latest = at
            skipped += 1
            if skipped >= max_counted:
                latest = self._latest_before(now, latest)
                break
        return CatchUp(latest, skipped)

    def _latest_before(self, now: float, floor: float) -> float:
        it = croniter(self.expression, datetime.fromtimestamp(now + 1e-3, self.zone))
        while True:
            at = float(it.get_prev(datetime).timestamp())
            if at <= floor:
                return floor
            if at <= now and not self._second_pass(at):
                return at

    def _second_pass(self, at: float) -> bool:
        """True for the second instance of a repeated wall-clock time, when this
        expression runs once in it."""
        if self._repeats:
            return False
        local = datetime.fromtimestamp(at, self.zone)
        if not local.fold:
            return False
        first = local.replace(fold=0)
        return first.utcoffset() != local.utcoffset()


def check_expression(expression: str, field: str = "cron") -> str:
    """The expression with blanks collapsed; a JobInputError naming ``field`` if croniter
    cannot read it or it is not five fields (or an alias)."""
    words = " ".join(str(expression).split())
    if not words:
        raise JobInputError(field, "empty; give five fields, e.g. '*/5 * * * *', or @daily")
    if words.startswith("@"):
        if words.lower() not in ALIASES:
            raise JobInputError(
                field, f"unknown alias {words!r}; one of " + ", ".join(sorted(ALIASES))
            )
        return words.lower()
    if len(words.split()) != 5:
        raise JobInputError(
            field,
            f"{words!r} has {len(words.split())} fields; give five: minute hour "
            "day-of-month month day-of-week, e.g. '*/5 * * * *'",
        )
    try:
        croniter(words, datetime(2000, 1, 1, tzinfo=UTC)).get_next(float)
    except (CroniterError, ValueError, KeyError) as exc:
        raise JobInputError(field, f"{words!r} is not a cron expression: {exc}") from None
    return words


def check_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA time zone ``name`` (Europe/Paris, UTC, …); a JobInputError naming
    ``field`` when there is none of that name."""
    text = str(name).strip()
    if not text:
        raise JobInputError(field, "empty; give an IANA time zone such as UTC or Europe/Paris")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise JobInputError(
            field, f"unknown time zone {text!r}; give an IANA name such as UTC or Europe/Paris"
        ) from None

"""A schedule's occurrences: cron expressions in time zones, across daylight-saving
changes, the catch-up after missed occurrences, and the checks of what operators type."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from mcoflow.job_request import JobInputError
from mcoflow.recurring.cron import Cron, check_expression, check_timezone

PARIS = ZoneInfo("Europe/Paris")


def at(*fields: int, zone: ZoneInfo = PARIS, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PARIS).isoformat()


def upcoming(cron: Cron, after: float, n: int) -> list[str]:
    return [local(t) for t in islice(cron.occurrences(after), n)]


def test_next_occurrence_is_in_the_schedules_time_zone() -> None:
    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC).timestamp()
    assert Cron("0 9 * * *", "Europe/Paris").next_after(start) == at(2030, 6, 2, 9, 0)
    assert Cron("0 9 * * *", "UTC").next_after(start) == at(2030, 6, 2, 9, 0, zone=ZoneInfo("UTC"))
    # 12:00 UTC is 08:00 in New York: its 09:00 is still to come that day
    new_york = ZoneInfo("America/New_York")
    assert Cron("0 9 * * *", "America/New_York").next_after(start) == at(
        2030, 6, 1, 9, 0, zone=new_york
    )


def test_an_occurrence_is_strictly_after_the_time_given() -> None:
    cron = Cron("*/5 * * * *", "UTC")
    assert cron.next_after(600.0) == 900.0
    assert cron.next_after(599.0) == 600.0


def test_a_skipped_wall_clock_time_runs_at_the_jump() -> None:
    # 2026-03-29 in Paris: 02:00 jumps to 03:00, 02:30 never happens
    daily = Cron("30 2 * * *", "Europe/Paris")
    assert upcoming(daily, at(2026, 3, 28, 12, 0), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    half_hourly = Cron("*/30 * * * *", "Europe/Paris")
    assert upcoming(half_hourly, at(2026, 3, 29, 1, 0), 3) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_a_repeated_wall_clock_time_runs_once_unless_the_expression_is_by_the_clock() -> None:
    # 2026-10-25 in Paris: 03:00 falls back to 02:00, 02:00-02:59 happens twice
    daily = Cron("30 2 * * *", "Europe/Paris")
    assert upcoming(daily, at(2026, 10, 24, 12, 0), 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    # minute or hour starting with '*': by the real clock, in both passes
    half_hourly = Cron("*/30 * * * *", "Europe/Paris")
    assert upcoming(half_hourly, at(2026, 10, 25, 1, 45), 5) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    hourly = Cron("15 * * * *", "Europe/Paris")
    assert upcoming(hourly, at(2026, 10, 25, 1, 45), 3) == [
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:15:00+01:00",
        "2026-10-25T03:15:00+01:00",
    ]


def test_occurrences_always_advance() -> None:
    for expression in ("30 2 * * *", "*/30 * * * *", "0,30 1-3 * * *", "@hourly"):
        cron = Cron(expression, "Europe/Paris")
        times = list(islice(cron.occurrences(at(2026, 3, 28, 0, 0)), 100))
        assert times == sorted(set(times)), expression
        times = list(islice(cron.occurrences(at(2026, 10, 24, 0, 0)), 100))
        assert times == sorted(set(times)), expression


def test_catch_up_runs_the_latest_and_counts_the_others() -> None:
    cron = Cron("* * * * *", "UTC")
    caught = cron.catch_up(600.0, 600.0 + 5 * 60 + 30)
    assert (caught.occurrence, caught.skipped) == (900.0, 5)
    on_time = cron.catch_up(600.0, 601.0)
    assert (on_time.occurrence, on_time.skipped) == (600.0, 0)


def test_a_very_long_catch_up_counts_up_to_a_limit_and_still_runs_the_latest() -> None:
    cron = Cron("* * * * *", "UTC")
    now = 60.0 * 100_000 + 7
    caught = cron.catch_up(60.0, now, max_counted=50)
    assert caught.skipped == 50
    assert caught.occurrence == 60.0 * 100_000


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("", "empty"),
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("61 * * * *", "not a cron expression"),
        ("* * 32 * *", "not a cron expression"),
        ("@fortnightly", "unknown alias"),
        ("H * * * *", "not a cron expression"),
    ],
)
def test_bad_expressions_say_why(expression: str, words: str) -> None:
    with pytest.raises(JobInputError) as caught:
        check_expression(expression)
    assert caught.value.field == "cron" and words in caught.value.message


def test_expressions_are_kept_tidy() -> None:
    assert check_expression("  */5   *  * * 1-5 ") == "*/5 * * * 1-5"
    assert check_expression("@Daily") == "@daily"


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", "Europe/"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(JobInputError) as caught:
        check_timezone(name)
    assert caught.value.field == "timezone"

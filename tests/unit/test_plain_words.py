"""Issue 16, plain words: filters back in the operator's grammar, filter errors that
name the pattern, references in words, and the TIME of delayed jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcoflow.actions import FleetJob, JobInputError, parse_filter
from mcoflow.actions.fleet import Discover, filter_label
from mcoflow.actions.schedule import PAST_GRACE, parse_time, start_window
from mcoflow.engine import InputError
from mcoflow.engine.display import input_text, reference_text, summary_text
from mcoflow.rpc.filters import Filter, FilterError
from mcoflow.rpc.messages import StatusCode, is_policy_denial, policy_denied_message

NOW = 1_900_000_000.0


@pytest.mark.parametrize(
    "text",
    [
        "identity:/^sim-/ os_family=debian",
        "identity:web-01 identity:web-02 cpus>=4 class:web agent:package",
        "hostname=~^web a===b c!=d",
    ],
)
def test_a_filter_renders_back_to_words_that_parse_to_it(text: str) -> None:
    parsed = Filter.parse_cli(text.split())
    assert Filter.parse_cli(parsed.to_cli().split()) == parsed
    assert "{" not in parsed.to_cli()


def test_labels_use_the_operators_text_or_the_rendered_filter() -> None:
    written = FleetJob.validate_input(
        {"kind": "install", "filter_text": "os_family=debian  identity:/^sim-/", "packages": ["a"]}
    )
    assert written["filter"]["identity"] == ["/^sim-/"]  # the text alone gives the filter
    assert (
        FleetJob.describe(written)
        == "install a on hosts matching os_family=debian identity:/^sim-/"
    )
    given = {"identity": ["/^db/"], "facts": [{"fact": "cpus", "operator": ">=", "value": "4"}]}
    assert filter_label(given) == "identity:/^db/ cpus>=4"
    found = Discover.validate_input({"filter": {"classes": ["web"]}})
    assert Discover.describe(found) == "Discover hosts matching class:web"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("identity:/^(sim/", "'identity:/^(sim/': invalid regular expression '^(sim': missing ),"),
        ("os=~/[a-/", "fact filter 'os=~/[a-/': invalid regular expression '[a-': unterminated"),
        ("class:", "'class:': give a name or /regex/ after 'class:'"),
        ("os_family", "invalid fact filter 'os_family': expected FACT OPERATOR VALUE"),
    ],
)
def test_a_bad_filter_says_which_entry_and_why(text: str, words: str) -> None:
    with pytest.raises(JobInputError) as caught:
        parse_filter(text)
    assert caught.value.field == "filter"
    assert caught.value.message.startswith(words)
    assert "validation error" not in caught.value.message


def test_a_bad_filter_given_as_json_reads_plainly() -> None:
    with pytest.raises(FilterError, match=r"invalid regular expression '\(': missing \)"):
        Filter.from_json({"identity": ["/(/"]})
    with pytest.raises(InputError) as caught:
        FleetJob.validate_input(
            {"kind": "install", "filter": {"idenity": ["x"]}, "packages": ["a"]}
        )
    assert caught.value.problems == [("filter", "idenity: Extra inputs are not permitted")]


def test_references_read_as_the_output_of_a_named_step() -> None:
    titles = {2: "Install curl on web-01"}
    assert reference_text({"$ref": [2]}, titles) == "output of step 2 (Install curl on web-01)"
    assert reference_text({"$ref": [2, "changed"]}, titles) == (
        'output["changed"] of step 2 (Install curl on web-01)'
    )
    assert reference_text({"$ref": [7, "hosts", 0]}, {}) == 'output["hosts"][0] of step 7'
    value = {"hostname": "web-01", "after": [{"$ref": [2, "changed"]}]}
    assert summary_text(value, titles) == (
        'hostname=web-01 after=[output["changed"] of step 2 (Install curl on web-01)]'
    )
    shown = input_text(value, titles)
    assert '    output["changed"] of step 2 (Install curl on web-01)\n' in shown
    assert "$ref" not in shown


def test_relative_and_iso_times() -> None:
    assert parse_time("+10m", field="--at", now=NOW) == NOW + 600
    assert parse_time("+1h30m", field="--at", now=NOW) == NOW + 5400
    assert parse_time("+2d", field="--at", now=NOW) == NOW + 2 * 86400
    utc = datetime(2030, 6, 1, 12, 30, tzinfo=UTC)
    assert parse_time("2030-06-01T14:30+02:00", field="--at") == utc.timestamp()
    assert parse_time("2030-06-01T12:30Z", field="--at") == utc.timestamp()
    local = datetime(2030, 6, 1, 14, 30)
    assert parse_time("2030-06-01 14:30", field="--at") == local.timestamp()


@pytest.mark.parametrize("text", ["tomorrow", "+10", "10m", "2030-13-01T10:00", ""])
def test_an_unreadable_time_names_its_field(text: str) -> None:
    with pytest.raises(JobInputError) as caught:
        parse_time(text, field="--before", now=NOW)
    assert caught.value.field == "--before"
    assert "+10m" in caught.value.message  # says what it takes


def test_start_windows() -> None:
    assert start_window(None, None, now=NOW) is None
    assert start_window(NOW + 60, None, now=NOW) == (NOW + 60, None)
    assert start_window(None, NOW + 60, now=NOW) == (NOW, NOW + 60)
    assert start_window(NOW - PAST_GRACE / 2, None, now=NOW) == (NOW - PAST_GRACE / 2, None)
    aware = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=1)
    assert start_window(aware, None, now=NOW) == (NOW + 3600, None)
    with pytest.raises(JobInputError) as past:
        start_window(NOW - 3600, None, now=NOW)
    assert (past.value.field, "is in the past" in past.value.message) == ("start_at", True)
    with pytest.raises(JobInputError) as order:
        start_window(NOW + 600, NOW + 60, now=NOW)
    assert (order.value.field, "is not after start_at" in order.value.message) == (
        "start_before",
        True,
    )
    with pytest.raises(JobInputError) as gone:
        start_window(None, NOW - 1, now=NOW)
    assert gone.value.field == "start_before"


def test_a_policy_refusal_is_recognisable_in_its_reply() -> None:
    message = policy_denied_message("ops", "package", "install")
    assert message == "denied by policy: ops is not authorized to call package.install"
    assert is_policy_denial(StatusCode.ABORTED, message)
    assert not is_policy_denial(StatusCode.ABORTED, "E: Unable to locate package x")
    assert not is_policy_denial(StatusCode.OK, message)

"""One JobRequest for the command line, the web form and the REST API: its words and
the errors it gives, each naming the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcoflow.job_request import JobInputError, JobKind, JobRequest, host_count, parse_hosts


def test_a_request_of_the_operators_words() -> None:
    request = JobRequest.parse(
        kind="install-and-restart",
        hosts=["web-01, web-02", "web-01 db-01"],
        parameter="nginx;nginx",
        batch_size="50%",
        start_at=1_900_000_000.5,
    )
    assert request.kind is JobKind.INSTALL_AND_RESTART
    assert request.hosts == ["web-01", "web-02", "db-01"]
    assert request.start_at == datetime.fromtimestamp(1_900_000_000.5, UTC)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"kind": "reboot"}, "kind", "unknown job 'reboot'; one of install, uninstall"),
        ({"parameter": ""}, "parameter", "at least 1 character"),
        ({"batch_size": "0"}, "batch_size", "expected a whole number ≥ 1 or a percentage"),
        ({"max_failures": "ten"}, "max_failures", "got 'ten'"),
        ({"max_failures": "101%"}, "max_failures", "got '101%'"),
        ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
        ({"hosts": ["web-01", ""]}, "hosts", "1: String should have at least 1 character"),
        ({"timeout": 3}, "timeout", "Extra inputs are not permitted"),
    ],
)
def test_bad_input_names_its_field(fields: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(JobInputError) as caught:
        JobRequest.parse(**({"kind": "install", "parameter": "vim"} | fields))
    assert caught.value.field == field
    assert words in caught.value.message


def test_the_api_and_the_model_refuse_a_count_alike() -> None:
    # the API validates the model itself: pydantic's words there, the same field
    with pytest.raises(ValueError, match="String should match pattern"):
        JobRequest.model_validate({"kind": "install", "parameter": "x", "batch_size": "1/2"})


def test_host_count() -> None:
    assert host_count(None, 10) is None
    assert host_count("3", 10) == 3
    assert host_count("25%", 10) == 3  # rounded up, at least one
    assert host_count("1%", 10) == 1
    with pytest.raises(JobInputError, match="batch_size: expected a whole number"):
        host_count("0%", 10, "batch_size")


def test_parse_hosts_keeps_the_first_of_each() -> None:
    assert parse_hosts("b,a  b,,c") == ["b", "a", "c"]
    assert parse_hosts(["a b", "a"]) == ["a", "b"]

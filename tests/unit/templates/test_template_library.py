"""The library (shipped templates plus a folder's), template inputs as the CLI, the form
and the API give them, and their JSON Schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcoflow.job_request import JobInputError
from mcoflow.templates import (
    TemplateLoadError,
    TemplateNotFound,
    load_library,
    reset_template_library,
    template_library,
    use_templates_dir,
)

MINE = """\
name: NAME
description: mine
inputs:
  hosts_down: {type: integer, default: 0}
steps:
  - {agent: rpcutil, action: ping}
"""


def test_the_shipped_templates_are_the_seed_four_and_the_rolling_update() -> None:
    names = [t.name for t in load_library().all()]
    assert names == [
        "install",
        "install-and-restart",
        "restart",
        "rolling-package-update",
        "uninstall",
    ]
    assert all(t.source == f"mcoflow:{t.name}.yaml" for t in load_library().all())


def test_a_folder_adds_its_templates_and_refuses_the_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(MINE.replace("NAME", "mine"))
    (tmp_path / "shadow.yaml").write_text(MINE.replace("NAME", "install"))
    (tmp_path / "twice.yml").write_text(MINE.replace("NAME", "mine"))
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (tmp_path / "notes.txt").write_text("not a template")
    library = load_library(tmp_path)
    assert "mine" in library and library.get("install").source == "mcoflow:install.yaml"
    refused = {Path(e.file).name: e for e in library.errors}
    assert sorted(refused) == ["latin1.yaml", "shadow.yaml", "twice.yml"]
    shadow = refused["shadow.yaml"]
    assert (shadow.line, shadow.field) == (1, "name")
    assert "a template mcoflow ships (mcoflow:install.yaml)" in shadow.problem
    assert "another file" in refused["twice.yml"].problem
    assert refused["latin1.yaml"].problem == "is not UTF-8 text"
    with pytest.raises(TemplateLoadError):
        load_library(tmp_path, strict=True)


def test_an_unknown_name_is_answered_with_the_close_ones() -> None:
    with pytest.raises(TemplateNotFound) as caught:
        load_library().get("instal")
    assert "did you mean install" in str(caught.value)
    assert "known: install, install-and-restart" in str(caught.value)


def test_the_process_library_follows_the_folder_it_is_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "mine.yaml").write_text(MINE.replace("NAME", "mine"))
    (tmp_path / "bad.yaml").write_text("name: bad\n")
    try:
        use_templates_dir(tmp_path)
        assert template_library() is template_library()  # read once
        assert "mine" in template_library()
        assert [r.getMessage() for r in caplog.records] == [
            f"template refused: {tmp_path / 'bad.yaml'}:1: description: missing "
            "(a template has name, description, steps)"
        ]
        use_templates_dir(None)
        assert "mine" not in template_library()
    finally:
        reset_template_library()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"packages": "nginx, curl"}, {"packages": ["nginx", "curl"], "services": []}),
        (
            {"packages": ["nginx"], "services": "cron"},
            {"packages": ["nginx"], "services": ["cron"]},
        ),
    ],
)
def test_list_inputs_come_as_lists_or_comma_separated_text(
    raw: dict[str, object], expected: dict[str, object]
) -> None:
    assert load_library().get("install-and-restart").parse_inputs(raw) == expected


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({}, "inputs.packages", "is required"),
        ({"packages": ""}, "inputs.packages", "is required"),
        ({"packages": "nginx", "colour": "red"}, "inputs.colour", "not an input of template"),
        ({"packages": "bad name"}, "inputs.packages", "does not match"),
        ({"packages": [1]}, "inputs.packages", "item 1 must be a string"),
        ({"packages": {"a": 1}}, "inputs.packages", "must be a list"),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(
    raw: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(JobInputError) as caught:
        load_library().get("install-and-restart").parse_inputs(raw)
    assert caught.value.field == field
    assert words in caught.value.message


def test_integers_and_booleans_come_as_values_or_text(tmp_path: Path) -> None:
    (tmp_path / "typed.yaml").write_text(
        "name: typed\ndescription: d\ninputs:\n"
        "  n: {type: integer, default: 2}\n  b: {type: boolean}\n"
        "steps:\n  - {agent: rpcutil, action: ping}\n"
    )
    typed = load_library(tmp_path, strict=True).get("typed")
    assert typed.parse_inputs({"n": "12", "b": "true"}) == {"n": 12, "b": True}
    assert typed.parse_inputs({"b": False}) == {"n": 2, "b": False}
    assert typed.parse_inputs({}) == {"n": 2, "b": None}
    for raw, words in (({"n": "1.5"}, "whole number"), ({"b": "maybe"}, "true or false")):
        with pytest.raises(JobInputError) as caught:
            typed.parse_inputs(raw)
        assert words in caught.value.message


def test_the_inputs_json_schema_says_types_patterns_defaults_and_what_is_required() -> None:
    schema = load_library().get("rolling-package-update").input_schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["package", "service"]
    package = schema["properties"]["package"]
    assert package["type"] == "string"
    assert package["pattern"].startswith("^(?:[A-Za-z0-9]")
    assert package["description"] == "the package to update"
    services = load_library().get("install-and-restart").input_schema()["properties"]
    assert services["services"]["type"] == "array"
    assert services["services"]["items"]["type"] == "string"
    assert services["packages"]["minItems"] == 1


def test_a_template_outlines_its_steps_for_the_operator() -> None:
    assert load_library().get("rolling-package-update").outline() == [
        "update: package.update(package=${inputs.package})",
        "restart: service.restart(service=${inputs.service}); only if any of update changed "
        "the host",
        "health: service.status(service=${inputs.service}); only if any of update changed the "
        "host; until status equals 'running' (every 1 s, at most 30 s)",
    ]

"""Whatever a template file holds, the loader never crashes: it returns a template or
raises TemplateLoadError naming the file, a line of it and a field."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcoflow.job_request import JobInputError
from mcoflow.templates import Template, TemplateLoadError, parse_template, template_library

SOURCE = "/srv/templates/fuzz.yaml"
SHIPPED = [
    entry.read_text("utf-8")
    for entry in (resources.files("mcoflow.templates") / "shipped").iterdir()
    if entry.name.endswith(".yaml")
]

WORDS = [
    "name", "description", "inputs", "fleet", "steps", "type", "required", "default",
    "pattern", "agent", "action", "for_each", "when", "rescue", "timeout", "until",
    "output", "equals", "not_equals", "interval", "max_wait", "changed", "step", "input",
    "sequence", "concurrence", "concurrency", "batch_size", "max_failures", "package",
    "service", "install", "status", "restart", "update", "rpcutil", "get_fact", "fact",
    "string", "list", "integer", "boolean", "skip", "fail", "pause", "running", "1s",
    "${inputs.package}", "${item}", "${steps.install.changed}", "${steps.a.b}", "${",
    "a", "x", "10%", "0",
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(WORDS),
    st.integers(-5, 100),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(WORDS), inner, max_size=5),
    ),
    max_leaves=40,
)


def check(text: str) -> Template | None:
    try:
        return parse_template(text, SOURCE)
    except TemplateLoadError as refused:
        error = refused
    assert error.file == SOURCE
    assert 1 <= error.line <= text.count("\n") + 2, (error.line, text)
    assert error.field and error.problem
    assert str(error).startswith(f"{SOURCE}:{error.line}: {error.field}: ")
    return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_loaded_or_refused_with_its_place(text: str) -> None:
    check(text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(WORDS), trees, max_size=6))
def test_any_yaml_structure_is_loaded_or_refused_with_its_place(tree: dict[str, Any]) -> None:
    check(yaml.safe_dump(tree, sort_keys=False))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(SHIPPED), st.integers(0, 60), st.text(max_size=40), st.booleans())
def test_a_shipped_template_with_a_line_changed_is_loaded_or_refused(
    text: str, at: int, replacement: str, keep_indent: bool
) -> None:
    lines = text.splitlines()
    index = at % len(lines)
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = (indent if keep_indent else "") + replacement
    check("\n".join(lines) + "\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from([t.name for t in template_library().all()]),
    st.dictionaries(st.sampled_from(["packages", "services", "package", "service", "x"]), trees),
)
def test_any_inputs_are_parsed_or_refused_naming_the_input(name: str, raw: dict[str, Any]) -> None:
    template = template_library().get(name)
    try:
        parsed = template.parse_inputs(raw)
    except JobInputError as refused:
        error = refused
    else:
        assert set(parsed) == {i.name for i in template.inputs}
        return
    assert error.field.startswith("inputs.") and error.message

"""How TemplateJob plans a template on one host (the engine's planner, no database):
the flow, each step's input, references to earlier outputs, plan-time conditions,
time limits and the rescue strategy's action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcoflow.engine.planner import NewPlan, Planner
from mcoflow.templates import TemplateJob, reset_template_library, use_templates_dir

PLANNED = """\
name: planned
description: every planning feature once
inputs:
  packages: {type: list, required: true}
  service: {type: string, default: web}
  restart: {type: boolean, default: false}
steps:
  - name: install
    agent: package
    action: install
    for_each: ${inputs.packages}
    inputs: {package: "${item}"}
  - name: probe
    agent: package
    action: status
    inputs: {package: "${inputs.service}"}
  - concurrence:
      - name: status
        agent: package
        action: status
        inputs: {package: "${steps.probe.version}"}
        rescue: skip
        timeout: 5s
      - name: restart
        agent: service
        action: restart
        inputs: {service: "${inputs.service}-${inputs.restart}"}
        when: {input: restart}
  - name: check
    agent: service
    action: status
    inputs: {service: "${inputs.service}"}
    when: {step: status, output: ensure, not_equals: absent}
    rescue: fail
"""


@pytest.fixture(autouse=True)
def library(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "planned.yaml").write_text(PLANNED)
    use_templates_dir(tmp_path)
    yield
    reset_template_library()


def plan(**inputs: Any) -> NewPlan:
    return Planner().plan(
        TemplateJob,
        {"hostname": "web-1", "template": "planned", "inputs": inputs, "timeout": 30},
    )


def test_a_template_plans_its_steps_in_its_sequences_and_concurrences() -> None:
    planned = plan(packages=["a", "b"])
    assert planned.error is None
    actions = {s.idx: (s.action, s.input.get("step")) for s in planned.steps if s.has_run}
    assert actions == {
        2: ("mcoflow.template_step", "install"),
        3: ("mcoflow.template_step", "install"),
        4: ("mcoflow.template_step", "probe"),
        5: ("mcoflow.template_step_skip", "status"),
        6: ("mcoflow.template_step_fail", "check"),
    }
    # the restart's condition is an input, false: it is not planned at all
    assert planned.flow == ["S", ["C", 2, 3], 4, 5, 6]
    install_a, install_b, status, check = (planned.steps[i - 1].input for i in (2, 3, 5, 6))
    assert install_a["data"] == {"package": "a"} and install_b["data"] == {"package": "b"}
    assert install_a["timeout"] == 30.0  # the job's, for a step without its own
    assert status["timeout"] == 5.0
    assert status["data"] == {"package": {"$ref": [4, "version"]}}
    assert check["when"] == {
        "value": {"$ref": [5, "ensure"]},
        "not_equals": "absent",
        "text": "status.ensure is not 'absent'",
    }


def test_an_input_condition_plans_the_step_when_it_holds() -> None:
    planned = plan(packages=["a"], restart="true")
    restart = next(s for s in planned.steps if s.input.get("step") == "restart")
    assert restart.input["data"] == {"service": "web-true"}
    assert planned.flow == ["S", 2, 3, ["C", 4, 5], 6]


def test_inputs_are_checked_again_when_a_host_is_planned() -> None:
    planned = plan(packages="a", colour="red")
    assert planned.error is not None
    assert "inputs.colour: not an input of template planned" in planned.error

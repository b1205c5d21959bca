"""The template loader refuses every kind of mistake with an error naming the file, the
line and the field; and what it accepts is the model the planner uses."""

# ruff: noqa: E501  (CASES is a table: one mistake a line reads better than wrapped)

from __future__ import annotations

import textwrap

import pytest

from mcoflow.engine import RescueStrategy
from mcoflow.templates import TemplateLoadError, parse_template
from mcoflow.templates.model import Block, ConditionKind, Interpolation, Ref, RefKind, Step

HEAD = """\
name: t
description: a test
inputs:
  package: {type: string, required: true, pattern: "[a-z]+"}
  packages: {type: list, default: [a, b]}
  count: {type: integer, default: 3}
steps:
"""


def refused(text: str) -> TemplateLoadError:
    with pytest.raises(TemplateLoadError) as caught:
        parse_template(textwrap.dedent(text), "/etc/mcoflow/templates/t.yaml")
    error = caught.value
    assert str(error).startswith(f"/etc/mcoflow/templates/t.yaml:{error.line}: {error.field}: ")
    return error


def steps(body: str) -> str:
    """HEAD plus ``body`` (the steps' lines, indented as under ``steps:``); the body's
    first line is line 8 of the file."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "  ")


def test_a_valid_template_is_read_into_the_model() -> None:
    template = parse_template(
        steps(
            """\
            - name: install
              agent: package
              action: install
              for_each: ${inputs.packages}
              inputs: {package: "${item}", version: "1.${inputs.count}"}
              rescue: skip
              timeout: 2m
            - concurrence:
                - name: restart
                  agent: service
                  action: restart
                  inputs: {service: "${inputs.package}"}
                  when: {changed: install}
                - name: health
                  agent: service
                  action: status
                  inputs: {service: x}
                  until: {output: status, equals: running, interval: 500ms, max_wait: 1m}
            """
        ),
        "mcoflow:t.yaml",
    )
    assert (template.name, template.source, len(template.digest)) == ("t", "mcoflow:t.yaml", 16)
    assert [i.name for i in template.inputs] == ["package", "packages", "count"]
    install, block = template.steps
    assert isinstance(install, Step) and isinstance(block, Block)
    assert install.line == 8 and install.rescue is RescueStrategy.SKIP
    assert install.timeout == 120.0
    assert install.for_each == Ref(RefKind.INPUT, "packages")
    assert install.inputs["package"] == Ref(RefKind.ITEM)
    assert install.inputs["version"] == Interpolation(("1.", Ref(RefKind.INPUT, "count")))
    restart, health = block.children
    assert isinstance(restart, Step) and isinstance(health, Step)
    assert block.kind == "C"
    assert restart.when is not None and restart.when.kind is ConditionKind.CHANGED
    assert health.until is not None
    assert (health.until.interval, health.until.max_wait) == (0.5, 60.0)
    assert not health.dynamic and restart.dynamic


STEP = """\
- name: install
  agent: package
  action: install
  inputs: {package: "${inputs.package}"}
"""

CASES = [
    # (text, line, field, words in the message)
    ("name: [unclosed\n", 2, "(yaml)", "not valid YAML"),
    ("", 1, "(file)", "is empty"),
    ("- a\n- b\n", 1, "", "expected a mapping, got a list"),
    ("name: t\ndescription: d\nsteps: []\ncolour: red\n", 4, "colour", "unknown field"),
    ("name: t\ndescription: d\n", 1, "steps", "missing"),
    ("description: d\nsteps: []\n", 1, "name", "missing"),
    ("name: T!\ndescription: d\nsteps: []\n", 1, "name", "use a-z"),
    ("name: t\ndescription: d\nsteps: []\n", 3, "steps", "at least one step"),
    ("name: t\nname: u\n", 2, "name", "given twice"),
    ("name: t\ndescription: d\ninputs: &i {x: {}}\nfleet: *i\nsteps: []\n", 4, "(yaml)", "aliases"),
    ("name: !!binary aGk=\ndescription: d\nsteps: []\n", 1, "name", "not allowed"),
    ("name: t\ndescription: d\ninputs: {x: {type: float}}\nsteps: []\n", 3, "inputs.x.type", "one of"),
    ("name: t\ndescription: d\ninputs: {x: {kind: list}}\nsteps: []\n", 3, "inputs.x.kind", "unknown field"),
    ("name: t\ndescription: d\ninputs: {x: {pattern: '('}}\nsteps: []\n", 3, "inputs.x.pattern", "not a valid regex"),
    ("name: t\ndescription: d\ninputs: {x: {type: integer, pattern: a}}\nsteps: []\n", 3, "inputs.x.pattern", "takes no pattern"),
    ("name: t\ndescription: d\ninputs: {x: {type: integer, default: many}}\nsteps: []\n", 3, "inputs.x.default", "whole number"),
    ("name: t\ndescription: d\ninputs: {x: {pattern: '[a-z]+', default: A1}}\nsteps: []\n", 3, "inputs.x.default", "does not match"),
    ("name: t\ndescription: d\ninputs: {x: {required: true, default: a}}\nsteps: []\n", 3, "inputs.x.default", "required input has no default"),
    ("name: t\ndescription: d\ninputs: {x: {required: maybe}}\nsteps: []\n", 3, "inputs.x.required", "true or false"),
    ("name: t\ndescription: d\nfleet: {concurrency: 0}\nsteps: []\n", 3, "fleet.concurrency", "from 1"),
    ("name: t\ndescription: d\nfleet: {max_failures: 200%}\nsteps: []\n", 3, "fleet.max_failures", "percentage"),
    ("name: t\ndescription: d\nfleet: {batch: 2}\nsteps: []\n", 3, "fleet.batch", "unknown field"),
    (steps("- {agent: package, action: install, inputs: {package: a}, colour: red}\n"), 8, "steps[0].colour", "unknown field"),
    (steps("- {action: install}\n"), 8, "steps[0].agent", "missing"),
    (steps("- {agent: packages, action: install}\n"), 8, "steps[0].agent", "unknown agent 'packages'"),
    (steps("- {agent: package, action: upgrade}\n"), 8, "steps[0].action", "package has no action 'upgrade'"),
    (steps("- {agent: package, action: install, inputs: {package: a, pkg: b}}\n"), 8, "steps[0].inputs.pkg", "takes no input 'pkg'"),
    (steps("- agent: package\n  action: install\n  inputs: {version: '1'}\n"), 10, "steps[0].inputs.package", "action requires it"),
    (steps("- {agent: package, action: install}\n"), 8, "steps[0].inputs.package", "action requires it"),
    (steps("- {agent: package, action: install, inputs: {package: 'no spaces'}}\n"), 8, "steps[0].inputs.package", "does not match"),
    (steps(STEP + STEP), 12, "steps[1].name", "another step is named 'install'"),
    (steps("- {name: 'a b', agent: package, action: status, inputs: {package: a}}\n"), 8, "steps[0].name", "letters, digits"),
    (steps("- {agent: package, action: install, inputs: {package: '${inputs.pkg}'}}\n"), 8, "steps[0].inputs.package", "no input 'pkg'"),
    (steps("- {agent: package, action: install, inputs: {package: '${item}'}}\n"), 8, "steps[0].inputs.package", "only known in a step with for_each"),
    (steps("- {agent: package, action: install, inputs: {package: '${inputs.packages}'}}\n"), 8, "steps[0].inputs.package", "is a list; this input takes a string"),
    (steps("- {agent: package, action: install, inputs: {package: '${inputs.package'}}\n"), 8, "steps[0].inputs.package", "without its '}'"),
    (steps("- {agent: package, action: install, inputs: {package: '${package}'}}\n"), 8, "steps[0].inputs.package", "a reference reads"),
    (steps("- {agent: package, action: install, inputs: {package: '${steps.nope.version}'}}\n"), 8, "steps[0].inputs.package", "no step named 'nope'"),
    (steps("- {name: a, agent: package, action: install, inputs: {package: '${steps.b.version}'}}\n- {name: b, agent: package, action: status, inputs: {package: x}}\n"), 8, "steps[0].inputs.package", "step 'b' comes later"),
    (steps("- {name: a, agent: package, action: install, inputs: {package: '${steps.a.version}'}}\n"), 8, "steps[0].inputs.package", "refers to its own output (a cycle)"),
    (steps(STEP + "- {agent: package, action: status, inputs: {package: '${steps.install.colour}'}}\n"), 12, "steps[1].inputs.package", "has no output 'colour'"),
    (steps(STEP + "- {agent: package, action: status, inputs: {package: 'x${steps.install.version}'}}\n"), 12, "steps[1].inputs.package", "only be a whole value"),
    (steps(STEP + "- {agent: package, action: status, inputs: {package: '${steps.install.changed}'}}\n"), 12, "steps[1].inputs.package", "is a boolean; this input takes a string"),
    (steps("- {agent: package, action: install, for_each: '${inputs.package}', inputs: {package: a}}\n"), 8, "steps[0].for_each", "is a string, not a list"),
    (steps("- {agent: package, action: install, for_each: [a, b], inputs: {package: a}}\n"), 8, "steps[0].for_each", "expected a single value"),
    (steps("- {agent: package, action: install, for_each: '${steps.x.y}', inputs: {package: a}}\n"), 8, "steps[0].for_each", "takes a list input"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {changed: [later]}}\n- {name: later, agent: service, action: status, inputs: {service: a}}\n"), 12, "steps[1].when.changed", "'later' comes later"),
    (steps("- {name: f, agent: rpcutil, action: get_fact, inputs: {fact: a}}\n- {agent: service, action: restart, inputs: {service: a}, when: {changed: f}}\n"), 9, "steps[1].when.changed", "has no output 'changed'"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {changed: [install], input: package}}\n"), 12, "steps[1].when", "give one of"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {step: install, output: ensure}}\n"), 12, "steps[1].when.equals", "compare the output"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {step: install, output: ensured, equals: x}}\n"), 12, "steps[1].when.output", "has no output 'ensured'"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {input: pkg}}\n"), 12, "steps[1].when.input", "no input 'pkg'"),
    (steps(STEP + "- {agent: service, action: restart, inputs: {service: a}, when: {if: x}}\n"), 12, "steps[1].when.if", "unknown field"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: status, equals: running, interval: 1s}}\n"), 8, "steps[0].until.max_wait", "missing"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: state, equals: running, interval: 1s, max_wait: 5s}}\n"), 8, "steps[0].until.output", "has no output 'state'"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: status, interval: 1s, max_wait: 5s}}\n"), 8, "steps[0].until.equals", "give equals or not_equals"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: status, equals: running, interval: soon, max_wait: 5s}}\n"), 8, "steps[0].until.interval", "a duration"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: status, equals: running, interval: 10s, max_wait: 5s}}\n"), 8, "steps[0].until.max_wait", "shorter than the interval"),
    (steps("- {agent: service, action: status, inputs: {service: a}, until: {output: status, equals: '${inputs.package}', interval: 1s, max_wait: 5s}}\n"), 8, "steps[0].until.equals", "references are not allowed here"),
    (steps("- {agent: service, action: status, inputs: {service: a}, rescue: retry}\n"), 8, "steps[0].rescue", "one of pause"),
    (steps("- {agent: service, action: status, inputs: {service: a}, timeout: 0}\n"), 8, "steps[0].timeout", "from 50ms"),
    (steps("- {agent: service, action: status, inputs: {service: a}, timeout: 2d}\n"), 8, "steps[0].timeout", "a duration"),
    (steps("- {sequence: [], concurrence: []}\n"), 8, "steps[0]", "either a sequence or a concurrence"),
    (steps("- concurrence: {a: 1}\n"), 8, "steps[0].concurrence", "expected a list"),
    (steps("- just text\n"), 8, "steps[0]", "expected a mapping, got text"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "field", "words"), CASES)
def test_each_mistake_is_refused_naming_the_line_and_the_field(
    text: str, line: int, field: str, words: str
) -> None:
    error = refused(text)
    assert (error.line, error.field) == (line, field or "(file)"), str(error)
    assert words in error.problem, str(error)

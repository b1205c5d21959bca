"""Job templates (DESIGN §8): YAML files naming typed inputs and steps, each step an
agent action on the host, in sequence or concurrence, with conditions, rescue, time
limits and ``until`` health gates, planned by the same engine as the Python actions.

What the CLI, the web and the API use: ``template_library()`` (the process's templates:
shipped + ``settings.templates_dir``), ``Template.input_schema()`` and
``Template.parse_inputs()``, and ``run_template()``, which starts a template on hosts
(a fleet job on several). ``TemplateJob`` is the registered action ("mcoflow.template")
that runs one template on one host."""

from __future__ import annotations

from mcoflow.templates.job import TemplateChanged, TemplateJob, check_step_inputs, run_template
from mcoflow.templates.library import (
    TemplateLibrary,
    load_library,
    read_template_file,
    reset_template_library,
    template_library,
    use_templates_dir,
)
from mcoflow.templates.loader import parse_template
from mcoflow.templates.model import FleetDefaults, Template, TemplateInput, TemplateNotFound
from mcoflow.templates.nodes import TemplateLoadError
from mcoflow.templates.steps import TemplateStep, TemplateStepFail, TemplateStepSkip

__all__ = [
    # the templates and their library
    "Template",
    "TemplateInput",
    "FleetDefaults",
    "TemplateLibrary",
    "TemplateLoadError",
    "TemplateNotFound",
    "TemplateChanged",
    "load_library",
    "template_library",
    "use_templates_dir",
    "reset_template_library",
    "read_template_file",
    "parse_template",
    # running them
    "run_template",
    "check_step_inputs",
    "TemplateJob",
    "TemplateStep",
    "TemplateStepSkip",
    "TemplateStepFail",
]

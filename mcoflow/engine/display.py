"""Step inputs in words: a reference to another step's output reads as
``output of step 2 (Install curl on web-01)``, never as its stored ``{"$ref": [2]}``.

The console, the CLI and the API's ``input_text`` all show inputs through here; the
stored JSON stays as it is (the API returns it too).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from mcoflow.engine.action import ActionNotRegistered, registered_action
from mcoflow.engine.flow import REF_KEY, contains_reference
from mcoflow.engine.records import Step

TITLE_MAX = 80


def step_title(step: Step) -> str:
    """What a step does, in the words of its action's label (its short name if the
    action is not importable here or cannot describe an input that holds references)."""
    short = step.action.rsplit(".", 1)[-1]
    if any(contains_reference(v) for v in step.input.values()):
        return short
    try:
        text = registered_action(step.action).describe(step.input)
    except (ActionNotRegistered, LookupError, TypeError, ValueError):
        return short
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"


def step_titles(steps: Iterable[Step]) -> dict[int, str]:
    return {step.idx: step_title(step) for step in steps}


def reference_text(ref: Any, titles: Mapping[int, str]) -> str:
    """``output of step 2 (…)``, or ``output["changed"] of step 2 (…)`` for a part of it."""
    step, *path = ref[REF_KEY]
    keys = "".join(f"[{json.dumps(key)}]" for key in path)
    title = titles.get(int(step))
    return f"output{keys} of step {step}" + (f" ({title})" if title else "")


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def in_words(value: Any, titles: Mapping[int, str]) -> Any:
    """``value`` with each reference replaced by its text (a plain string)."""
    if _is_ref(value):
        return reference_text(value, titles)
    if isinstance(value, dict):
        return {k: in_words(v, titles) for k, v in value.items()}
    if isinstance(value, list):
        return [in_words(v, titles) for v in value]
    return value


def input_text(value: Any, titles: Mapping[int, str]) -> str:
    """Indented JSON of a step input whose references read as words, unquoted, so
    that they cannot be taken for string values."""
    marker = uuid.uuid4().hex
    texts: list[str] = []

    def mark(item: Any) -> Any:
        if _is_ref(item):
            texts.append(reference_text(item, titles))
            return f"{marker}{len(texts) - 1}"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    shown = json.dumps(mark(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    # the highest numbers first, so that marker 1 never replaces the start of marker 12
    for index in range(len(texts) - 1, -1, -1):
        shown = shown.replace(f'"{marker}{index}"', texts[index])
    return shown


def summary_text(value: Mapping[str, Any], titles: Mapping[int, str]) -> str:
    """``hostname=web-01 after=[output["changed"] of step 2 (…)]``: one line per input."""
    parts = []
    for key, item in value.items():
        if item in ([], {}, None, ""):
            continue
        words = in_words(item, titles)
        if isinstance(words, str):
            parts.append(f"{key}={words}")
        elif isinstance(words, list) and all(isinstance(w, str) for w in words):
            parts.append(f"{key}=[{', '.join(words)}]")
        else:
            parts.append(f"{key}={json.dumps(words, ensure_ascii=False, default=str)}")
    return " ".join(parts)

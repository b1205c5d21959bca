"""An MCollective node's reply data as JSON: Ruby's is a Hash with Symbol keys whose
values may be binary Strings. (What the package agent's answers mean for a job — it has
no "changed" output — is read by the Install step: ``mcoflow.actions.operations``.)"""

from __future__ import annotations

import math
from typing import Any

from mcoflow.rpc.mcollective.marshal import RubyValue

__all__ = ["plain"]


def plain(value: RubyValue, depth: int = 0) -> Any:
    """``value`` as JSON data: Symbol keys and values become text, binary Strings are read
    as UTF-8 (what else could not be shown), non-finite floats become text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_key(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, str):
        return str(value)  # a Symbol is a str subclass; JSON wants the plain one
    return value


def _key(key: RubyValue) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    if key is None:
        return ""
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)

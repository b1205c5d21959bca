"""What an MCollective node's reply means in mcoflow's terms.

Ruby's reply data is a Hash with Symbol keys whose values may be binary Strings; mcoflow
stores JSON. And the widely used package agent (mcollective-package-agent) has no "changed"
output: it *fails* an install of a package already there ("Package is already installed")
and an uninstall, update or purge of one that is not ("Package is not present on the
system"). mcoflow reads those two answers as success that changed nothing, and every other
success of those actions as a change — which is what "restart only if an install changed
something" needs.
"""

from __future__ import annotations

import math
from typing import Any

from mcoflow.rpc.mcollective.marshal import RubyValue

__all__ = ["NOTHING_TO_DO", "adapt_package_reply", "plain"]

PACKAGE_CHANGES = frozenset({"install", "uninstall", "update", "purge"})
# the package agent's exact messages for "nothing to do" (util/package/*package.rb)
NOTHING_TO_DO = frozenset({"Package is already installed", "Package is not present on the system"})
# the agent raises them as plain errors: status 5 on MCollective 2.x, 1 where wrapped
_FAILED = frozenset({1, 5})


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


def adapt_package_reply(
    action: str, statuscode: int, statusmsg: str, data: dict[str, Any]
) -> tuple[int, str, dict[str, Any]]:
    """The package agent's answer to ``action`` with ``changed`` added; "nothing to do"
    becomes a success (``unchanged`` keeps the agent's words)."""
    if action not in PACKAGE_CHANGES:
        return statuscode, statusmsg, data
    # the agent's DDL gives every output a nil default: nil is "not set" (a refused
    # install has no command output), and mcoflow's Install output wants text or nothing
    data = {key: value for key, value in data.items() if value is not None}
    if statuscode in _FAILED and statusmsg.strip() in NOTHING_TO_DO:
        return 0, "OK", {**data, "changed": False, "unchanged": statusmsg.strip()}
    if statuscode == 0:
        return statuscode, statusmsg, {"changed": True, **data}
    return statuscode, statusmsg, data

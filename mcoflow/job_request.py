"""What an operator asks for when starting a job, whichever way it comes: one
``JobRequest`` for the command line, the web form and the REST API, and the words it is
made of (``JobKind``, ``HostName``, ``HostCount``).

Neutral ground: the web's port and the actions both import this module, and it imports
neither of them, nor the engine or the RPC layer.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# hosts one job request may name; more: one request per part, or a filter
MAX_HOSTS_PER_REQUEST = 100_000
HOST_NAME_MAX = 255
# Debian and RPM package names and systemd/SysV unit names all fit in this.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._@:-]{0,254}$")
# "n" or "n%" as a request spells it; host_count reads it
HOST_COUNT = r"^[0-9]{1,9}%?$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NAME.pattern)]
HostName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=HOST_NAME_MAX, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]*$"
    ),
]


class JobInputError(ValueError):
    """Bad operator input; ``field`` names the form field, JSON key or argument
    (``kind``, ``hosts``, ``filter``, ``parameter``, ``concurrency``, ``batch_size``,
    ``max_failures``), where the web console shows ``message``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobKind(enum.StrEnum):
    INSTALL = "install"
    UNINSTALL = "uninstall"
    RESTART = "restart"
    INSTALL_AND_RESTART = "install-and-restart"


def host_count(value: str | None, total: int, field: str = "value") -> int | None:
    """``n`` or ``n%`` of ``total`` (at least 1); None when not given."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(total * pct / 100))
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise JobInputError(
            field, f"expected a whole number ≥ 1 or a percentage, got {value!r}"
        ) from None


def _counts_hosts(value: str) -> str:
    try:
        host_count(value, 100)
    except JobInputError as exc:
        raise PydanticCustomError("host_count", "{message}", {"message": exc.message}) from None
    return value


def parse_hosts(hosts: Sequence[str] | str) -> list[str]:
    """Host names separated by commas or blanks, each once, in the order first given."""
    words = (
        hosts.replace(",", " ").split()
        if isinstance(hosts, str)
        else [w for h in hosts for w in h.replace(",", " ").split()]
    )
    return list(dict.fromkeys(words))


# a count of hosts as a request gives it: the API's schema shows the pattern
HostCount = Annotated[str, StringConstraints(pattern=HOST_COUNT), AfterValidator(_counts_hosts)]
# a host as the request names it; checked as a HostName, and against the inventory, when
# the job is planned, so that every way of asking gets the same words about it
RequestedHost = Annotated[str, Field(min_length=1, max_length=HOST_NAME_MAX)]


def _job_kind(value: Any) -> JobKind:
    if isinstance(value, str) and value in _KINDS:
        return JobKind(value)
    raise PydanticCustomError(
        "literal_error", "Input should be {expected}", {"expected": _EXPECTED}
    )


_KIND_VALUES = [k.value for k in JobKind]
_KINDS = frozenset(_KIND_VALUES)
# pydantic's words for a Literal: 'a', 'b' or 'c'
_EXPECTED = " or ".join(", ".join(map(repr, _KIND_VALUES)).rsplit(", ", 1))
# a JobKind, shown in the API's schema as the inline enum of its values (typed as the
# text it is: an Enum here would add a schema of its own to the API's)
RequestedKind = Annotated[
    str,
    PlainValidator(_job_kind),
    WithJsonSchema({"enum": _KIND_VALUES, "title": "Kind", "type": "string"}),
]


_COUNTS = frozenset({"batch_size", "max_failures"})


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled limit must not be ignored

    kind: RequestedKind
    hosts: Annotated[list[RequestedHost], AfterValidator(parse_hosts)] = Field(
        default_factory=list,
        max_length=MAX_HOSTS_PER_REQUEST,
        description=f"host identities, at most {MAX_HOSTS_PER_REQUEST} (more: several jobs, "
        "or a filter); empty if `filter` is given",
    )
    filter: str | None = Field(
        default=None,
        max_length=1000,
        description="select hosts by discovery instead: words ANDed, combined with and, "
        "or, not, parentheses, saved groups as @name ('class:web and (cpus>=4 or @big)')",
    )
    parameter: str = Field(
        min_length=1,
        max_length=10_000,
        description="packages or services, comma separated; install-and-restart: "
        "'pkg1,pkg2;svc1,svc2' (services optional)",
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="hosts at once (fleet)"
    )
    batch_size: HostCount | None = Field(default=None, description="hosts per batch: N or N%")
    max_failures: HostCount | None = Field(
        default=None,
        description="failed hosts (N or N%) at which the rollout stops and pauses; the "
        "rest is held, and Resume goes on with it",
    )
    start_at: datetime | None = Field(
        default=None,
        description="start the job later, at this ISO 8601 time (the server's local time "
        "unless it carries an offset); not in the past",
    )
    start_before: datetime | None = Field(
        default=None,
        description="give the job up (result error) if it has not started by then; after start_at",
    )

    @classmethod
    def parse(cls, **fields: Any) -> JobRequest:
        """The request of the command line's or the form's words (epoch seconds for the
        times); its first problem as a JobInputError naming the field."""
        kind = fields.get("kind")
        if kind not in _KINDS:
            raise JobInputError(
                "kind", f"unknown job {kind!r}; one of " + ", ".join(k.value for k in JobKind)
            )
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field, *inner = [str(p) for p in problem["loc"]] or ["kind"]
            if field in _COUNTS and problem["type"] == "string_pattern_mismatch":
                host_count(fields[field], 100, field)  # the operator's words, if it says no
            where = f"{'.'.join(inner)}: " if inner else ""
            raise JobInputError(field, where + problem["msg"]) from None

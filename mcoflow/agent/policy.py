"""Authorization policy: allow or deny by caller, agent and action; first match wins.

File format (YAML)::

    default: deny            # optional; "deny" is the default once a file is given
    rules:
      - allow:
          caller: "ops-*"    # a name or list of names; "*" matches any run of characters
          agent: package
          action: [install, status]
      - deny: {caller: "*", agent: service, action: restart}

Without a policy file every authenticated caller is allowed (``Policy.allow_all()``).
A refused request is answered with statuscode 1 (aborted, as MCollective answers an
authorization failure) and a statusmsg starting ``denied by policy:``
(``mcoflow.rpc.messages.POLICY_DENIED``); the orchestrator shows the step's error as
"denied by policy on HOST: …" rather than as a failed action.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class PolicyError(ValueError):
    """The policy file is malformed."""


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", glob))
    )


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    effect: Effect
    caller: tuple[str, ...] = ("*",)
    agent: tuple[str, ...] = ("*",)
    action: tuple[str, ...] = ("*",)

    @field_validator("caller", "agent", "action", mode="before")
    @classmethod
    def _as_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("caller", "agent", "action")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not item for item in value):
            raise ValueError("needs at least one non-empty name or '*'")
        return value

    def matches(self, caller: str, agent: str, action: str) -> bool:
        return (
            _any_match(self.caller, caller)
            and _any_match(self.agent, agent)
            and _any_match(self.action, action)
        )


def _any_match(globs: tuple[str, ...], value: str) -> bool:
    return any(_pattern(glob).fullmatch(value) is not None for glob in globs)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: str


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Effect = Effect.DENY
    rules: tuple[Rule, ...] = Field(default_factory=tuple)

    @model_validator(mode="before")
    @classmethod
    def _shorthand_rules(cls, value: Any) -> Any:
        # Accept `- allow: {...}` / `- deny: {...}` as well as `- effect: allow, ...`.
        if not isinstance(value, dict) or not isinstance(value.get("rules"), list):
            return value
        rules = []
        for rule in value["rules"]:
            if isinstance(rule, dict) and len(rule) == 1:
                ((key, body),) = rule.items()
                if key in ("allow", "deny"):
                    rule = {"effect": key, **(body or {})}
            rules.append(rule)
        return {**value, "rules": rules}

    @classmethod
    def allow_all(cls) -> Policy:
        return cls(default=Effect.ALLOW)

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from exc
        try:
            return cls.model_validate(raw if raw is not None else {})
        except ValueError as exc:
            raise PolicyError(f"invalid policy {path}: {exc}") from exc

    def check(self, *, caller: str, agent: str, action: str) -> Decision:
        for index, rule in enumerate(self.rules, start=1):
            if rule.matches(caller, agent, action):
                allowed = rule.effect is Effect.ALLOW
                verb = "allowed" if allowed else "denied"
                return Decision(allowed=allowed, reason=f"{verb} by policy rule {index}")
        allowed = self.default is Effect.ALLOW
        return Decision(allowed=allowed, reason=f"{self.default.value} by default policy")

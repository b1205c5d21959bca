"""The seed's parameter syntax: ``pkg1,pkg2;svc1,svc2`` (services optional)."""

from __future__ import annotations

from dataclasses import dataclass

from mcoflow.job_request import NAME, JobInputError

__all__ = ["NAME", "JobInputError", "Parameter", "parse_names", "parse_parameter"]


@dataclass(frozen=True)
class Parameter:
    packages: tuple[str, ...]
    services: tuple[str, ...]


def _names(text: str, what: str, field: str) -> tuple[str, ...]:
    parts = [p.strip() for p in text.split(",")]
    if any(p == "" for p in parts):
        raise JobInputError(field, f"empty {what} name in {text.strip()!r}")
    for part in parts:
        if not NAME.match(part):
            raise JobInputError(field, f"{part!r} is not a valid {what} name")
    if len(set(parts)) != len(parts):
        raise JobInputError(field, f"a {what} is named twice in {text.strip()!r}")
    return tuple(parts)


def parse_parameter(text: str, *, field: str = "parameter") -> Parameter:
    """``pkgs;svcs`` -> Parameter. At least one package; services may be omitted."""
    if text.count(";") > 1:
        raise JobInputError(field, "use at most one ';' (packages;services)")
    packages_text, _, services_text = text.partition(";")
    if not packages_text.strip():
        raise JobInputError(field, "name at least one package before the ';'")
    packages = _names(packages_text, "package", field)
    services = _names(services_text, "service", field) if services_text.strip() else ()
    if ";" in text and not services:
        raise JobInputError(field, "nothing after ';': name services or drop the ';'")
    return Parameter(packages, services)


def parse_names(text: str, what: str, *, field: str = "parameter") -> tuple[str, ...]:
    """A plain comma-separated list of package or service names."""
    if not text.strip():
        raise JobInputError(field, f"name at least one {what}")
    if ";" in text:
        raise JobInputError(field, f"a {what} list takes no ';'")
    return _names(text, what, field)

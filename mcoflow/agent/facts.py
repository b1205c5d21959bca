"""Facts and classes of a host: built-in OS facts, a YAML facts file, a classes file."""

from __future__ import annotations

import platform
import socket
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path

import yaml

FactValue = str | int | float | bool
Facts = dict[str, FactValue]

# ID / ID_LIKE words that name an OS family, most specific first.
_FAMILIES = ("debian", "rhel", "fedora", "suse", "arch", "alpine", "gentoo")
_FAMILY_ALIASES = {"ubuntu": "debian", "centos": "rhel", "rocky": "rhel", "almalinux": "rhel"}


class FactsError(ValueError):
    """A facts or classes file is malformed."""


@cache
def mcoflow_version() -> str:
    try:
        return metadata.version("mcoflow")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+source"


def parse_os_release(text: str) -> dict[str, str]:
    """Read os-release(5) KEY=value lines; quoting as in the spec, no shell expansion."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        result[key.strip()] = value
    return result


def os_family(release: Mapping[str, str]) -> str:
    words = [release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()]
    for word in words:
        word = _FAMILY_ALIASES.get(word, word)
        if word in _FAMILIES:
            # Fedora stands alone; RHEL-likes name "fedora" in ID_LIKE too, "rhel" first.
            return "redhat" if word in ("rhel", "fedora") else word
    return words[0] or platform.system().lower()


def builtin_facts(
    os_release: Path = Path("/etc/os-release"), *, hostname: str | None = None
) -> Facts:
    try:
        release = parse_os_release(os_release.read_text(encoding="utf-8"))
    except OSError:
        release = {}
    return {
        "hostname": hostname or socket.gethostname(),
        "os_family": os_family(release),
        "os_name": release.get("ID", platform.system().lower()),
        "os_release": release.get("VERSION_ID", platform.release()),
        "os_codename": release.get("VERSION_CODENAME", ""),
        "architecture": platform.machine(),
        "kernel": platform.system(),
        "mcoflow_version": mcoflow_version(),
    }


def load_facts_file(path: Path) -> Facts:
    """A YAML mapping of facts; nested mappings flatten to dotted names."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FactsError(f"cannot read facts {path}: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FactsError(f"facts {path}: a mapping of fact names to values is expected")
    facts: Facts = {}
    _flatten(raw, "", facts, path)
    return facts


def _flatten(raw: Mapping[object, object], prefix: str, out: Facts, path: Path) -> None:
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{name}.", out, path)
        elif isinstance(value, str | int | float | bool):
            out[name] = value
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            out[name] = ",".join(str(v) for v in value)
        elif value is None:
            out[name] = ""
        else:
            raise FactsError(
                f"facts {path}: {name} has an unsupported value {type(value).__name__}"
            )


def load_classes_file(path: Path) -> tuple[str, ...]:
    """One class per line (as MCollective's classes.txt); blank lines and # comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FactsError(f"cannot read classes {path}: {exc}") from exc
    names = (line.strip() for line in text.splitlines())
    return tuple(dict.fromkeys(n for n in names if n and not n.startswith("#")))

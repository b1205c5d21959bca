"""The templates a process knows: those mcoflow ships plus a configured folder's, read
and checked once per process (a job's hosts plan from the same parsed templates)."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from mcoflow.templates.loader import parse_template
from mcoflow.templates.model import Template, TemplateNotFound
from mcoflow.templates.nodes import TemplateLoadError

SHIPPED_PREFIX = "mcoflow:"
log = logging.getLogger("mcoflow.templates")


class TemplateLibrary:
    """Templates by name. ``errors``: the folder's files that were refused (each
    refused file is left out; the others load), so a console can show why."""

    def __init__(
        self, templates: Iterable[Template], errors: Iterable[TemplateLoadError] = ()
    ) -> None:
        self._by_name = {t.name: t for t in templates}
        self.errors: tuple[TemplateLoadError, ...] = tuple(errors)

    def get(self, name: str) -> Template:
        found = self._by_name.get(name)
        if found is not None:
            return found
        close = difflib.get_close_matches(str(name), list(self._by_name), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        known = ", ".join(sorted(self._by_name)) or "none"
        refused = f" ({len(self.errors)} template file(s) refused)" if self.errors else ""
        raise TemplateNotFound(
            f"no template named {str(name)[:64]!r}{hint} (known: {known}){refused}"
        )

    def all(self) -> list[Template]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


def shipped_templates() -> list[Template]:
    """The templates in the package (mcoflow/templates/shipped/*.yaml)."""
    folder = resources.files("mcoflow.templates") / "shipped"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found.append(parse_template(entry.read_text("utf-8"), SHIPPED_PREFIX + entry.name))
    return found


def read_template_file(path: Path) -> Template:
    """One template file, checked; TemplateLoadError names what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TemplateLoadError(str(path), 1, "(file)", f"cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TemplateLoadError(str(path), line, "(file)", "is not UTF-8 text") from None
    return parse_template(text, str(path))


def load_library(folder: Path | None = None, *, strict: bool = False) -> TemplateLibrary:
    """The shipped templates plus ``folder``'s ``*.yaml`` / ``*.yml``. A folder template
    may not take a shipped template's name, nor another file's: such a file is
    refused, as is one that does not load. ``strict``: raise the first refusal."""
    shipped = shipped_templates()
    templates = {t.name: t for t in shipped}
    errors: list[TemplateLoadError] = []
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            errors.append(TemplateLoadError(str(folder), 1, "templates_dir", "is not a folder"))
            files: list[Path] = []
        else:
            files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
        for path in files:
            try:
                template = read_template_file(path)
                taken = templates.get(template.name)
                if taken is not None:
                    raise _name_taken(template, taken)
                templates[template.name] = template
            except TemplateLoadError as exc:
                errors.append(exc)
    if strict and errors:
        raise errors[0]
    return TemplateLibrary(templates.values(), errors)


def _name_taken(template: Template, taken: Template) -> TemplateLoadError:
    line = _name_line(template)
    whose = (
        "a template mcoflow ships" if taken.source.startswith(SHIPPED_PREFIX) else "another file"
    )
    return TemplateLoadError(
        template.source,
        line,
        "name",
        f"{template.name!r} is the name of {whose} ({taken.source}); choose another name",
    )


def _name_line(template: Template) -> int:
    try:
        lines = Path(template.source).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    return next((n for n, text in enumerate(lines, 1) if text.startswith("name:")), 1)


_lock = threading.Lock()
_library: TemplateLibrary | None = None
_folder: Path | None = None
_folder_set = False


def use_templates_dir(folder: Path | None) -> None:
    """Make the process's library the shipped templates plus ``folder`` (the
    orchestrator calls it with its settings' templates_dir); read on first use."""
    global _library, _folder, _folder_set
    with _lock:
        _folder, _folder_set, _library = folder, True, None


def reset_template_library() -> None:
    """Forget the process's library and its folder (tests): the next use reads the
    settings again."""
    global _library, _folder, _folder_set
    with _lock:
        _library, _folder, _folder_set = None, None, False


def template_library() -> TemplateLibrary:
    """The process's library, read once: shipped + settings.templates_dir (or the folder
    given to ``use_templates_dir``)."""
    global _library
    library = _library
    if library is not None:
        return library
    with _lock:
        if _library is None:
            folder = _folder
            if not _folder_set:
                from mcoflow.settings import load_settings

                folder = load_settings().templates_dir
            _library = load_library(folder)
            for error in _library.errors:
                log.warning("template refused: %s", error)
        return _library

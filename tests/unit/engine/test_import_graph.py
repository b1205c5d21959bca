"""Every module of mcoflow imports, and no two modules import each other, directly or
around a circle: the import graph, read from the source with ``ast``, has no cycle.

An edge is an import run when the module loads: top-level imports, not those inside a
function (a deliberate late import) or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mcoflow

ROOT = Path(mcoflow.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            todo.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            todo.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                todo.extend(handler.body)
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The mcoflow modules ``name`` imports when it loads."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        # ``from package import module`` loads the module; the package's own code only
        # matters when a name comes from it (a package is loaded before its modules)
        submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
        targets.update(submodules)
        if len(submodules) < len(node.names):
            targets.add(base)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One cycle of GRAPH, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_source() -> None:
    assert "mcoflow.engine.store.core" in MODULES
    assert "mcoflow.engine.store.writes" in GRAPH["mcoflow.engine.store.steps"] or any(
        "mcoflow.engine.store.writes" in GRAPH[m] for m in GRAPH["mcoflow.engine.store.steps"]
    )


def test_no_import_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# Alembic's environment runs only inside Alembic (it reads Alembic's context)
@pytest.mark.parametrize("name", sorted(set(MODULES) - {"mcoflow.engine.migrations.env"}))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)

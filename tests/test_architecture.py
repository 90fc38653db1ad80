"""The layering the README's Architecture section promises, checked on the source (no import needed).

* ``compactlm/`` is a plain library: it never imports Prefect, ``tasks/`` or ``flows/``, and only its
  top layer (``compactlm.cli``) runs flows; nothing below the CLI imports the CLI.
* No import cycle among first-party modules, counting imports inside functions too.
* No module under ``compactlm/`` is longer than 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compactlm", "tasks", "flows")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (anywhere in the file), resolved to the longest known module name."""
    targets: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES and candidate.split(".")[0] in PACKAGES:
                candidate = candidate.rpartition(".")[0]
            if candidate.split(".")[0] in PACKAGES or candidate.split(".")[0] == "prefect":
                targets.add(candidate)
    targets.discard(name)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_among_first_party_modules():
    assert _cycles() == []


@pytest.mark.parametrize("layer", ["prefect", "tasks", "flows"])
def test_the_library_below_the_cli_never_imports_the_orchestration(layer):
    offenders = {name: sorted(t for t in targets if t.split(".")[0] == layer)
                 for name, targets in GRAPH.items()
                 if name.startswith("compactlm") and not name.startswith("compactlm.cli")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_below_the_cli_imports_the_cli():
    offenders = {name: sorted(t for t in targets if t.startswith("compactlm.cli"))
                 for name, targets in GRAPH.items() if not name.startswith("compactlm.cli")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tasks_never_import_flows():
    offenders = {name: sorted(t for t in targets if t.startswith("flows"))
                 for name, targets in GRAPH.items() if name.startswith("tasks")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_library_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for name, path in MODULES.items() if name.startswith("compactlm")
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_test_module_basenames_are_unique():
    """pytest's default (rootdir) import mode imports test files by basename: two ``test_x.py`` in
    different folders break collection on a clean clone ("import file mismatch")."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name in ("__init__.py", "conftest.py"):
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test modules share a basename: " + "; ".join(clashes)

"""No import cycles among the project's modules, so each module can be loaded, read and tested on its own.

The graph is built from the source with ``ast``, over the eight packages of DESIGN.md's layout table.
Module-level imports count, including those inside module-level ``if``/``try``/``with`` blocks and
those under ``if TYPE_CHECKING:``: a type-only import never runs, but a cycle through one still means
neither module can be read or type-checked without the other. Imports inside functions and classes
run later and are not edges. ``import a.b`` is an edge to
``a.b``; ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``. The implicit
loading of parent packages that ``import a.b`` also does is not an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vitals", "device_drivers", "gateway", "ingest", "storage", "alerts", "api", "vitalgate")


def find_modules(root: Path, packages: Sequence[str]) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package) for every module under ``packages``."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path, is_package)
    return modules


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def import_graph(root: Path, packages: Sequence[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level."""
    modules = find_modules(root, packages)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _module_level_imports(tree.body):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    edges.add(f"{target}.{alias.name}")
                elif target in modules:
                    edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (first module repeated at the end) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(start: str) -> None:
        # Tarjan's algorithm, iterative so that long import chains cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_cycle_through(min(group), group, graph) for group in groups]


def _cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for successor in sorted(graph[node] & group):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected group but on no cycle")


def test_project_modules_import_each_other_without_a_cycle() -> None:
    """Every project module loads without first needing a module that needs it."""
    cycles = find_cycles(import_graph(REPO, PACKAGES))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.fixture
def tangled(tmp_path: Path) -> Path:
    files = {
        "pkg/__init__.py": "from pkg.a import A\n",
        "pkg/a.py": "from . import b\nA = 1\n",
        "pkg/b.py": "try:\n    from .sub import c\nexcept ImportError:\n    pass\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import A\n",
        "pkg/d.py": "import pkg.a\n\ndef later():\n    from pkg import b\n",
        "pkg/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.f import F\nE = 1\n",
        "pkg/f.py": "from pkg.e import E\nF = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_a_cycle_through_relative_and_guarded_imports_is_named(tangled: Path) -> None:
    """The check names cycles made of relative, ``try``-guarded and type-only imports, and ignores in-function imports."""
    graph = import_graph(tangled, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.d"] == {"pkg.a"}
    assert graph["pkg.e"] == {"pkg.f"}
    assert sorted(find_cycles(graph)) == [
        ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"],
        ["pkg.e", "pkg.f", "pkg.e"],
    ]

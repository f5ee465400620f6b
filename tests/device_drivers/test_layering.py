"""The edge stays lean: codecs are pure; drivers import only stdlib, vitals and bleak (DESIGN.md, Layout)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "device_drivers"
OWN = [
    *sorted((ROOT / "profiles").glob("*.py")),
    *sorted((ROOT / "procedures").glob("*.py")),
    ROOT / "quirks.py",
    ROOT / "readings.py",
]


def imported_top_level(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", OWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_driver_imports_only_stdlib_vitals_and_bleak(path: Path) -> None:
    """No numpy, no server packages on the gateway."""
    allowed = set(sys.stdlib_module_names) | {"vitals", "bleak", "device_drivers", "__future__"}
    assert imported_top_level(path) <= allowed


@pytest.mark.parametrize("path", sorted((ROOT / "profiles").glob("*.py")), ids=lambda p: p.name)
def test_codecs_do_no_io(path: Path) -> None:
    """Codecs are pure: no bleak, asyncio, sockets, files or logging I/O."""
    assert not imported_top_level(path) & {"bleak", "asyncio", "socket", "logging", "os", "io", "vitals"}

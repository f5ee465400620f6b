"""Packages stay in their lane (DESIGN.md, Layout): arrows only point down the layout table, and the
edge (device_drivers, gateway) never imports server code, so a gateway install needs no FastAPI,
SQLAlchemy or numpy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"vitals", "device_drivers", "gateway", "ingest", "storage", "alerts", "api", "vitalgate"}
# DESIGN.md, Layout: "may import".
ALLOWED = {
    "vitals": {"vitals"},
    "device_drivers": {"vitals", "device_drivers"},
    "gateway": {"vitals", "device_drivers", "gateway"},
    "ingest": {"vitals", "storage", "ingest"},
    "storage": {"vitals", "storage"},
    "alerts": {"vitals", "storage", "alerts"},
    "api": {"vitals", "storage", "alerts", "api"},
    "vitalgate": OURS,
}
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "numpy",
    "influxdb_client",
    "psycopg",
    "jwt",
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(OURS))
def test_imports_point_down_the_layout_table(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = (imported_top_levels(path) & OURS) - ALLOWED[package]
        if wrong:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(wrong)}")
    assert not offenders, "\n".join(offenders)


def python_sources(folder: Path) -> list[Path]:
    """The Python files under ``folder``, including scripts without a suffix (bench/run)."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and (
            path.suffix == ".py"
            or (not path.suffix and path.read_bytes().startswith(b"#!/usr/bin/env python"))
        )
    ]


def modules_named_in_strings(path: Path) -> set[str]:
    """Top-level packages of the dotted module names in string constants (``python -m tests.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.value.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", node.value)
    }


@pytest.mark.parametrize("folder", [*sorted(OURS), "testbed", "bench"])
def test_test_code_is_imported_only_by_tests(folder: str) -> None:
    """Product packages import neither tests/ nor testbed/, and benchmarks and testbed/ import nothing from tests/."""
    forbidden = {"tests"} if folder in {"testbed", "bench"} else {"tests", "testbed"}
    offenders = []
    for path in python_sources(REPO / folder):
        wrong = (imported_top_levels(path) | modules_named_in_strings(path)) & forbidden
        if wrong:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(wrong)}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", ["vitals", "device_drivers", "gateway"])
def test_edge_packages_import_no_server_library(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = imported_top_levels(path) & SERVER_ONLY
        if wrong:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(wrong)}")
    assert not offenders, "\n".join(offenders)


def test_running_the_gateway_command_loads_no_server_library() -> None:
    # What actually gets imported, transitively, when the edge CLI starts.
    probe = (
        "import sys, vitalgate.cli as c; c.build_parser(); import gateway.app, device_drivers.profiles; "
        f"print(sorted(m for m in {sorted(SERVER_ONLY)!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    # build_parser imports every command module; those must import server code lazily.
    assert out.stdout.strip() == "[]"

"""The workspace latency bench still runs end to end, small (`--quick`), on both backends: it seeds a
clinic, warms the summaries, serves the API and prints a figure for every case beside its target. No
speed is asserted here: the figures are the bench's output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.influxdb import influxd_available
from testbed.postgres import postgres_absent_reason

ROOT = Path(__file__).resolve().parents[2]
CASES = (
    "panel, urgency order, first 100",
    "panel, by 7-day mean, 500 a page",
    "panel, name filter",
    "one-year chart: summary?days=365",
    "one-year chart: daily blood_pressure",
    "one-year chart: daily glucose",
    "patient page: 14-day summary",
)


def _run(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workspace_latency.py"), "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _figures(section: str) -> dict[str, tuple[float, float]]:
    rows = re.findall(r"^  (.+?)\s{2,}([\d.]+)\s+([\d.]+)(?:\s+[\d.]+){4}\s+p99 < \d+ ms", section, re.M)
    return {name: (float(p50), float(p99)) for name, p50, p99 in rows}


def test_the_bench_measures_every_case_on_sqlite() -> None:
    """Every panel and chart case gets server-time percentiles beside its target, and the warm-up line."""
    out = _run("--backends", "sqlite")
    assert "SQLite:" in out and re.search(r"summary updater warm-up: 31 patients", out)
    figures = _figures(out)
    assert set(CASES) <= figures.keys()
    assert all(p99 >= p50 > 0 for p50, p99 in figures.values())
    assert re.search(r"load average after the requests: [\d.]+, [\d.]+, [\d.]+", out)
    assert re.search(r"one-year chart with its summaries, worst p99 of its requests: [\d.]+ ms", out)


@pytest.mark.postgres
@pytest.mark.influxdb
def test_the_bench_measures_every_case_on_postgresql_and_influxdb() -> None:
    """The production pair: PostgreSQL for the clinic database, InfluxDB for readings."""
    if not influxd_available():
        pytest.skip("influxd not installed")
    reason = postgres_absent_reason()
    if reason is not None:
        pytest.skip(reason)
    out = _run("--backends", "postgres+influxdb")
    assert "PostgreSQL + InfluxDB:" in out and "skipped" not in out
    assert set(CASES) <= _figures(out).keys()

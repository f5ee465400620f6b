"""bench/run, the one entry point of the benchmarks: it runs the benches, prints one table of their
figures beside their targets, and writes the report with the machine and the date. Small inputs
(`--quick`) and the cheap benches plus the meter-to-alert one; no speed is asserted here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.mosquitto
@pytest.mark.slow
def test_bench_run_prints_one_table_and_writes_the_report_with_the_machine(tmp_path: Path) -> None:
    """The table has a figure-and-target line of every bench run, and the report names the machine."""
    if not (ROOT / "api" / "webapp" / "dist" / "index.html").exists():
        pytest.skip("the web app is not built (./dev test builds it): web_bundle has nothing to read")
    report = tmp_path / "benchmarks.md"
    run = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick", "--only", "meter_to_alert,alert_burden,web_bundle",
         "--output", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = run.stdout.split("figure beside its target")[1]
    assert re.search(
        r"^meter_to_alert\s+meter-to-alert latency: p50 \d+ ms, p99 \d+ ms.*target p99 < 300 ms", table, re.M
    )
    assert re.search(r"^alert_burden\s+ALL\s", table, re.M)
    assert re.search(r"^web_bundle\s+initial JS\+CSS: .* target < 400 KB gzipped", table, re.M)
    text = report.read_text()
    for fact in ("- CPU: ", "- cores: ", "- memory: ", "- OS: "):
        assert fact in text
    assert re.search(r"Written by `bench/run --quick` on \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "## meter_to_alert" in text and "without an alert event: 0" in text

"""The meter-to-alert bench through two replicas (two `vitalgate ingest` on a shared subscription, two
`vitalgate api --no-ingest`, PostgreSQL and InfluxDB) still runs from bench/run and prints its figure
beside the target. No speed is asserted: figures live in docs/benchmarks.md (bench/run)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.mosquitto
@pytest.mark.influxdb
@pytest.mark.postgres
@pytest.mark.slow
def test_bench_run_shows_the_two_replica_figure_and_every_stream_carries_every_alert(tmp_path: Path) -> None:
    """bench/run --only meter_to_alert_replicas prints the 2-replica figure; no alert missing on any stream."""
    report = tmp_path / "benchmarks.md"
    run = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick", "--only", "meter_to_alert_replicas", "--output", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = run.stdout.split("figure beside its target")[1]
    skipped = re.search(r"InfluxDB\): skipped, (.*) \(target", table)
    if skipped:
        pytest.skip(skipped.group(1))
    assert re.search(
        r"^meter_to_alert_replicas\s+meter-to-alert latency \(2 replicas, PostgreSQL, InfluxDB\): "
        r"p50 \d+ ms, p99 \d+ ms, max \d+ ms \(target p99 < 300 ms: (met|MISSED)\)",
        table,
        re.M,
    ), run.stdout
    text = report.read_text()
    assert "## meter_to_alert_replicas" in text
    assert "`.venv/bin/python bench/meter_to_alert.py --replicas 2 --quick`" in text
    assert "without an alert event on every stream: 0" in text
    assert text.count("alerts missing on it: 0") == 2

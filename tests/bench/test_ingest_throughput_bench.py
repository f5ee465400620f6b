"""The ingest throughput bench still runs end to end (it is how ingest's throughput targets are measured).

Small input, every consumer kind: the bench itself checks that each consumer settles every message
(and that ingest stores every reading) and raises otherwise, so a clean exit with every table row
printed means the measurement path works. No speed is asserted here: figures live in docs/benchmarks.md (bench/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.config import IngestConfig
from testbed.influxdb import influxd_available

ROOT = Path(__file__).resolve().parents[2]


def _run_bench(*args: str) -> str:
    """Run bench/ingest_throughput.py with `args`; its output, once it has exited cleanly."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest_throughput.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.mosquitto
@pytest.mark.influxdb
@pytest.mark.slow
def test_bench_measures_bare_and_ingest_in_both_modes_and_with_replicas() -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed")
    if not influxd_available():
        pytest.skip("influxd not installed")
    stdout = _run_bench("--readings", "600", "--batch", "1,3", "--replicas", "2")
    rows = re.findall(
        r"^  (bare paho subscriber|ingest -> \w+)( x2)?\s+[\d.]+\s+(\d+)\s+([\d.]+)$", stdout, re.M
    )
    consumers = {(name + suffix) for name, suffix, _rate, _ratio in rows}
    assert consumers == {
        "bare paho subscriber",
        "ingest -> SQLite",
        "ingest -> InfluxDB",
        "bare paho subscriber x2",
        "ingest -> SQLite x2",
        "ingest -> InfluxDB x2",
    }
    assert len(rows) == 24  # six consumers, drain and live, two message sizes
    assert all(int(rate) > 0 for _name, _suffix, rate, _ratio in rows)
    # Each single-process ingest drain says where its CPU went: two stores, two message sizes; into
    # InfluxDB also influxd's and the test shim's, which share the cores.
    cpu_lines = re.findall(
        r"^ +ingest -> (\w+) +[\d.]+ +\d+ +[\d.]+\n +CPU µs/reading: MQTT process ([\d.]+), "
        r"pipeline process ([\d.]+), broker ([\d.]+)(?:, influxd ([\d.]+), test shim ([\d.]+))?$",
        stdout,
        re.M,
    )
    assert [line[0] for line in cpu_lines] == ["SQLite", "InfluxDB"] * 2
    assert all(float(figure) > 0 for line in cpu_lines for figure in line[1:3])
    assert all(line[4] != "" for line in cpu_lines if line[0] == "InfluxDB")  # ticks: may read 0.0
    assert all(line[4] == "" for line in cpu_lines if line[0] == "SQLite")
    # Each single-process ingest run, drain and live, says how many messages it held unacked.
    held = re.findall(r"^    held unacked: at most (\d+) messages \(Receive Maximum (\d+)\)$", stdout, re.M)
    assert len(held) == 8  # two stores, two modes, two message sizes
    assert all(int(peak) >= 1 and int(maximum) == IngestConfig().receive_maximum for peak, maximum in held)
    # Each size's CPU budget: the transport, each step of ingest's own work, and a ceiling per store.
    for batch in (1, 3):
        budget = stdout.split(f"CPU budget, {batch} readings/message:")[1].split("\n\n")[0]
        steps = dict(re.findall(r"^  (\S.*?)\s+([\d.]+) µs/reading$", budget, re.M))
        assert set(steps) == {
            "transport: broker + paho receiving (bare drain)",
            "parse and validate (parse_message)",
            "SQLite write (rows, probe, INSERT, COMMIT)",
            "InfluxDB write (client side)",
            "influxd storing it (server side, same cores)",
        }
        # influxd's share is read from /proc in clock ticks (10 ms): 600 readings may take less.
        server_side = "influxd storing it (server side, same cores)"
        assert all(float(micros) > 0 for step, micros in steps.items() if step != server_side)
        ceilings = re.findall(
            r"^  (SQLite|InfluxDB): at least [\d.]+ µs/reading -> ratio ceiling ([\d.]+)", budget, re.M
        )
        assert [store for store, _ in ceilings] == ["SQLite", "InfluxDB"]
    # The summary: one line per size and mode, SQLite and InfluxDB figures, the ceiling on drain lines.
    summary = stdout.split("\nsummary:")[1]
    lines = re.findall(
        r"^\s+(\d+) (drain|live)\s+[\d,]+\s+[\d,]+ \([\d.]+\)\S*\s+[\d,]+ \([\d.]+\)\S*(.*)$", summary, re.M
    )
    assert [(batch, mode) for batch, mode, _ in lines] == [
        ("1", "drain"),
        ("1", "live"),
        ("3", "drain"),
        ("3", "live"),
    ]
    assert all(re.fullmatch(r"\s+[\d.]+ / [\d.]+", rest) for _b, mode, rest in lines if mode == "drain")
    # The naive consumer beside them, in each mode and size, and its ratio line each time.
    naive = re.findall(r"^  naive paho -> SQLite\s+[\d.]+\s+(\d+)\s+[\d.]+$", stdout, re.M)
    assert len(naive) == 4 and all(int(rate) > 0 for rate in naive)
    ratios = re.findall(
        r"^  ingest/naive at (\d+) readings/msg, (drain|live): .* = ([\d.]+) \(target", stdout, re.M
    )
    assert [(batch, mode) for batch, mode, _ in ratios] == [
        ("1", "drain"),
        ("1", "live"),
        ("3", "drain"),
        ("3", "live"),
    ]


@pytest.mark.mosquitto
@pytest.mark.slow
def test_bench_measures_the_one_process_layout_too() -> None:
    """`--in-process`: ingest's pipeline in the MQTT process (`ingest.pipeline_process` false), the
    layout the bench compares the pipeline process against."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed")
    stdout = _run_bench("--readings", "300", "--batch", "3", "--in-process", "--no-influx")
    rows = re.findall(r"^  (bare paho subscriber|ingest -> SQLite)\s+[\d.]+\s+(\d+)\s+[\d.]+$", stdout, re.M)
    assert sorted(name for name, _rate in rows) == ["bare paho subscriber"] * 2 + ["ingest -> SQLite"] * 2
    assert all(int(rate) > 0 for _name, rate in rows)

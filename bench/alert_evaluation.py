"""Alert evaluation of a committed batch: what each new reading costs the engine.

Every committed batch goes to the alert engine (DESIGN.md, Data flow); for each patient in it the
engine reads the patient's recent history from the reading store, evaluates every rule and applies
the outcomes to the alert lifecycle. This bench times that, per patient, on a real reading store:

Data: PATIENTS patients with DAYS days of home readings (2 blood pressures and 2 glucoses a day,
bench/workspace_latency.py's generator), written straight into the store. Then, one patient at a
time, one new blood pressure is written and handed to `AlertEngine.on_readings_committed` as ingest
hands a batch. Printed: the time per evaluation (p50, p99), and how much of it went to reading the
store (every call to the store, timed by a wrapper). Alerts live in memory and no channel is wired,
so the figures are the engine's own.

Backends: SQLite (a temporary file), and a private influxd (testbed/influxdb.py) when installed.

Usage: .venv/bin/python bench/alert_evaluation.py [--patients 200] [--days 90] [--backends sqlite,influxdb]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workspace_latency import readings_of

from alerts.directory import PatientContext, StaticDirectory
from alerts.engine import AlertEngine
from alerts.memory_repository import InMemoryAlertRepository
from alerts.profiles import PatientTargets, profile
from alerts.routing import Router
from storage.readings.protocol import AnyReading, ReadingStore
from storage.readings.sqlite import SqliteReadingStore
from vitals.readings import BloodPressureReading, DeviceIdentity

TARGET_P99_MS = 100.0  # a third of the 300 ms meter-to-alert budget (p99) for the evaluation
WRITE_CHUNK = 5_000


class TimedStore:
    """A reading store whose every call is timed (the engine's reads)."""

    def __init__(self, store: ReadingStore) -> None:
        self.store = store
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.store, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def new_reading(patient_id: str, index: int, at: datetime) -> AnyReading:
    cuff = DeviceIdentity(manufacturer="Acme", model="BP-7", serial_number=f"N{index:05d}")
    return BloodPressureReading(
        reading_id=f"{index:08x}" + "e" * 24,
        device=cuff,
        patient_id=patient_id,
        measured_at=at,
        received_at=at,
        systolic=150.0,
        diastolic=95.0,
        pulse_bpm=72.0,
        user_id=1,
    )


def seed(store: ReadingStore, patients: int, days: int, now: datetime) -> int:
    batch: list[AnyReading] = []
    written = 0
    for i in range(patients):
        for reading in readings_of(f"p-{i:05d}", i, days, 2, now):
            batch.append(reading)
            if len(batch) >= WRITE_CHUNK:
                written += len(store.write_batch(batch).all_ids)
                batch = []
    if batch:
        written += len(store.write_batch(batch).all_ids)
    return written


async def evaluate_each(store: ReadingStore, patients: int, now: datetime) -> tuple[list[float], TimedStore]:
    timed = TimedStore(store)
    cn = profile("cn")
    directory = StaticDirectory(
        {
            f"p-{i:05d}": PatientContext(
                f"p-{i:05d}", "c-bench", cn, PatientTargets(timezone="Asia/Shanghai"), ()
            )
            for i in range(patients)
        }
    )
    engine = AlertEngine(timed, InMemoryAlertRepository(), directory, Router(), clock=lambda: now)
    times: list[float] = []
    for i in range(patients):
        reading = new_reading(f"p-{i:05d}", i, now - timedelta(seconds=5))
        store.write_batch([reading])
        started = time.perf_counter()
        await engine.on_readings_committed([reading])
        times.append(time.perf_counter() - started)
    return times, timed


@contextmanager
def sqlite_store(root: Path) -> Iterator[ReadingStore]:
    store = SqliteReadingStore(root / "readings.sqlite3", synchronous="NORMAL")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def influx_store(root: Path) -> Iterator[ReadingStore]:
    from storage.readings.influxdb.connection import InfluxConfig
    from storage.readings.influxdb.store import InfluxReadingStore
    from testbed.influxdb import InfluxServer

    server = InfluxServer(root / "influxd")
    server.start()
    try:
        server.create_database("bench")
        store = InfluxReadingStore(
            InfluxConfig(url=server.url, query_url=server.influxd_url, database="bench", timeout_s=60.0)
        )
        try:
            yield store
        finally:
            store.close()
    finally:
        server.close()


def run(name: str, opened: Callable[[Path], Any], args: argparse.Namespace) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp, opened(Path(tmp)) as store:
        started = time.perf_counter()
        written = seed(store, args.patients, args.days, now)
        seeded_s = time.perf_counter() - started
        times, timed = asyncio.run(evaluate_each(store, args.patients, now))
    ms = [1000 * t for t in times]
    p99 = percentile(ms, 0.99)
    print(
        f"{name}: {args.patients} patients x {args.days} days, {written:,} readings "
        f"(written in {seeded_s:.1f} s, not counted)"
    )
    print(
        f"  evaluation per patient       p50 {percentile(ms, 0.5):7.1f} ms   p99 {p99:7.1f} ms   "
        f"mean {statistics.fmean(ms):7.1f} ms  (target p99 < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 < TARGET_P99_MS else 'MISSED'})"
    )
    print(
        f"  of which reading the store   mean {1000 * timed.seconds / len(times):7.1f} ms "
        f"in {timed.calls / len(times):.1f} calls per evaluation"
    )
    print(f"  evaluations per second, one core: {len(times) / sum(times):7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--backends", default="sqlite,influxdb")
    args = ap.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            run("SQLite", sqlite_store, args)
        elif backend == "influxdb":
            from testbed.influxdb import influxd_available

            if not influxd_available():
                print("InfluxDB: skipped, influxd not installed (Debian package influxdb)")
                continue
            run("InfluxDB", influx_store, args)
        else:
            raise SystemExit(f"unknown backend {backend!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

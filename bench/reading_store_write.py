"""Batch-write throughput of the reading stores: SQLite (WAL) and InfluxDB (real influxd).

    .venv/bin/python bench/reading_store_write.py [--readings 20000] [--batch 500]

Prints readings/s per store and mode, and the ratio to the target of 5,000 readings/s
(ingest's write rate). Batches default to 500, the largest MQTT readings batch (vitals.payload
MAX_READINGS_PER_BATCH), i.e. what ingest writes per message. Published anchors (reliability.md §7):
SQLite "will easily do 50,000 or more INSERT statements per second ... But it will only do a few
dozen transactions per second" (SQLite FAQ #19); InfluxDB recommends 5,000-10,000 points per request
(v1 API docs). On this 2-core box the influxd, the test-only /api/v2/write shim and this process
share the CPUs, so compare ratios between runs, not absolute numbers with other machines.
Takes well under 60 s with the defaults.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: testbed

from storage.readings import AnyReading, ReadingStore, SqliteReadingStore
from storage.readings.influxdb.connection import InfluxConfig
from storage.readings.influxdb.store import InfluxReadingStore
from testbed.influxdb import InfluxServer, influxd_available
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading

TARGET_READINGS_PER_S = 5_000
PATIENTS = 200
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_readings(count: int) -> list[AnyReading]:
    """Alternating cuff and glucose readings for PATIENTS patients, one minute apart per meter."""
    readings: list[AnyReading] = []
    for i in range(count):
        patient = f"p-{i % PATIENTS:04d}"
        at = T0 + timedelta(minutes=i // PATIENTS, seconds=i % 60)
        device_time = at.replace(tzinfo=None)
        if i % 2:
            cuff = DeviceIdentity(manufacturer="Bench", model="BP", serial_number=f"C{i % PATIENTS}")
            readings.append(
                BloodPressureReading(
                    reading_id=blood_pressure_reading_id(
                        cuff,
                        device_time,
                        1,
                        systolic=120.0,
                        diastolic=80.0,
                        mean_arterial=None,
                        pulse_bpm=70.0,
                    ),
                    device=cuff,
                    patient_id=patient,
                    measured_at=at,
                    device_time=device_time,
                    received_at=at + timedelta(seconds=30),
                    systolic=110.0 + i % 40,
                    diastolic=70.0 + i % 20,
                    pulse_bpm=60.0 + i % 30,
                    user_id=1,
                    raw_hex="1e7800500000e4070b1709000070" + "00",
                )
            )
        else:
            meter = DeviceIdentity(manufacturer="Bench", model="GL", serial_number=f"G{i % PATIENTS}")
            readings.append(
                GlucoseReading(
                    reading_id=glucose_reading_id(meter, i, device_time),
                    device=meter,
                    patient_id=patient,
                    measured_at=at,
                    device_time=device_time,
                    sequence_number=i % 65536,
                    glucose=80.0 + i % 120,
                    raw_hex="0b0100e4070b17090000",
                )
            )
    return readings


def timed_writes(store: ReadingStore, readings: Sequence[AnyReading], batch: int) -> tuple[float, int]:
    """Write in batches; return (readings/s, newly stored)."""
    stored = 0
    start = time.perf_counter()
    for i in range(0, len(readings), batch):
        stored += len(store.write_batch(readings[i : i + batch]).stored)
    return len(readings) / (time.perf_counter() - start), stored


def report(name: str, rate: float, stored: int, total: int) -> None:
    print(
        f"{name:<52} {rate:>10,.0f} readings/s   x{rate / TARGET_READINGS_PER_S:5.2f} of target"
        f"   new {stored}/{total}"
    )


def bench_sqlite(readings: Sequence[AnyReading], batch: int, directory: Path) -> None:
    for synchronous in ("FULL", "NORMAL"):
        store = SqliteReadingStore(directory / f"bench-{synchronous}.sqlite3", synchronous=synchronous)
        try:
            rate, stored = timed_writes(store, readings, batch)
            report(f"sqlite synchronous={synchronous} new", rate, stored, len(readings))
            rate, stored = timed_writes(store, readings, batch)
            report(f"sqlite synchronous={synchronous} all duplicates", rate, stored, len(readings))
        finally:
            store.close()


def bench_influxdb(readings: Sequence[AnyReading], batch: int, directory: Path) -> None:
    if not influxd_available():
        print("influxdb: skipped, /usr/bin/influxd missing (Debian package influxdb)")
        return
    # "interleaved": every batch spans all patients (worst case for the duplicate check: one
    # InfluxQL statement per patient and kind); "per gateway": batches hold a few patients' readings,
    # as an MQTT message from one home gateway does.
    per_gateway = sorted(readings, key=lambda r: (r.patient_id or "", r.measured_at))
    cases = [
        ("interleaved", True, readings),
        ("per gateway", True, per_gateway),
        ("interleaved", False, readings),
    ]
    with InfluxServer(directory / "influxd") as server:
        for number, (order, check, data) in enumerate(cases):
            database = f"bench_{number}"
            server.create_database(database)
            store = InfluxReadingStore(
                InfluxConfig(url=server.url, database=database, check_duplicates=check)
            )
            try:
                label = f"influxdb {order}, {'duplicate check' if check else 'no duplicate check'}"
                rate, stored = timed_writes(store, data, batch)
                report(f"{label}, new", rate, stored, len(data))
                rate, stored = timed_writes(store, data, batch)
                report(f"{label}, rewrite", rate, stored, len(data))
            finally:
                store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--skip-influxdb", action="store_true")
    args = parser.parse_args(argv)
    readings = make_readings(args.readings)
    print(f"{len(readings)} readings, {PATIENTS} patients, batches of {args.batch}")
    with tempfile.TemporaryDirectory(prefix="vitalgate-bench-") as tmp:
        bench_sqlite(readings, args.batch, Path(tmp))
        if not args.skip_influxdb:
            bench_influxdb(readings, args.batch, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

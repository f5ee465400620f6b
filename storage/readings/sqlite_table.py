"""The SQLite store's `readings` table (docs/storage-schema.md): its schema and version, a reading as
a row, the multi-row INSERT statements, and the SQL of the reads and of pruning."""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from storage.readings.protocol import AnyReading
from storage.readings.records import in_averages, json_list, reading_to_json, utc_text
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    SampleLocation,
    SampleType,
)

SCHEMA_VERSION: Final = 1


SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS readings (
    reading_id          TEXT NOT NULL UNIQUE,
    patient_id          TEXT,
    kind                TEXT NOT NULL,
    measured_at         TEXT NOT NULL,
    device_time         TEXT,
    clock_offset_s      REAL,
    received_at         TEXT,
    meter_key           TEXT NOT NULL,
    valid               INTEGER NOT NULL,
    in_averages         INTEGER NOT NULL,
    invalid_reasons     TEXT NOT NULL,
    unit                TEXT NOT NULL,
    systolic            REAL,
    diastolic           REAL,
    mean_arterial       REAL,
    systolic_mmhg       REAL,
    diastolic_mmhg      REAL,
    mean_arterial_mmhg  REAL,
    pulse_bpm           REAL,
    user_id             INTEGER,
    measurement_status  TEXT,
    sequence_number     INTEGER,
    glucose             REAL,
    glucose_mg_dl       REAL,
    sample_type         TEXT,
    sample_location     TEXT,
    sensor_status       TEXT,
    raw                 BLOB,
    reading_json        TEXT NOT NULL,
    stored_at           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_patient_kind_time ON readings (patient_id, kind, measured_at);
"""

COLUMNS: Final = (
    "reading_id",
    "patient_id",
    "kind",
    "measured_at",
    "device_time",
    "clock_offset_s",
    "received_at",
    "meter_key",
    "valid",
    "in_averages",
    "invalid_reasons",
    "unit",
    "systolic",
    "diastolic",
    "mean_arterial",
    "systolic_mmhg",
    "diastolic_mmhg",
    "mean_arterial_mmhg",
    "pulse_bpm",
    "user_id",
    "measurement_status",
    "sequence_number",
    "glucose",
    "glucose_mg_dl",
    "sample_type",
    "sample_location",
    "sensor_status",
    "raw",
    "reading_json",
    "stored_at",
)
# Rows per multi-row INSERT, largest first: any count is a sum of these, so at most nine distinct
# statements exist (each prepared once and kept in the connection's statement cache). 256 rows are
# 7,680 parameters, under SQLite's default bound of 32,766 since 3.32; a connection with a lower
# bound uses only the sizes that fit (SqliteReadingStore.__init__).
ROWS_PER_INSERT: Final = (256, 128, 64, 32, 16, 8, 4, 2, 1)


@functools.cache
def _insert_statement(rows: int) -> str:
    """INSERT of `rows` rows in one VALUES list; a reading_id already stored is skipped."""
    one_row = f"({', '.join('?' * len(COLUMNS))})"
    return (
        f"INSERT INTO readings ({', '.join(COLUMNS)}) VALUES {', '.join([one_row] * rows)} "  # noqa: S608
        "ON CONFLICT (reading_id) DO NOTHING"
    )


def insert_rows(
    conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], sizes: Sequence[int] = ROWS_PER_INSERT
) -> None:
    """Insert `rows` with a few multi-row INSERTs instead of `executemany`.

    The sqlite3 module releases the GIL around every `sqlite3_step`, and `executemany` steps once
    per row. In ingest, paho's network thread takes the GIL at each release and the worker waits to
    get it back, once per row. A multi-row INSERT is one step per statement, so the GIL changes hands
    a few times per batch; on its own it costs the same as executemany."""
    done = 0
    for size in sizes:
        while len(rows) - done >= size:
            conn.execute(
                _insert_statement(size), list(itertools.chain.from_iterable(rows[done : done + size]))
            )
            done += size


LATEST: Final = (
    "SELECT measured_at, reading_id, reading_json FROM readings WHERE patient_id = ? AND kind = ? "
    "ORDER BY measured_at DESC, reading_id DESC LIMIT 1"
)
LATEST_VALID: Final = LATEST.replace("AND kind = ?", "AND kind = ? AND valid = 1")
# `history_columns`: both kinds through the (patient_id, kind, measured_at) index. The time goes out as
# its fixed-width text without the "Z" and numpy turns the lot into epoch microseconds (SQLite's
# strftime cost about as much as the rest of the row, measured). The meal has no column: SQLite cuts
# the text from `"meal":"` on out of a glucose's stored JSON (one instr; `MEAL`'s pattern), and Python
# keeps what lies between the quotes, so no whole document crosses over.
_MEAL_KEY: Final = '"meal":"'
HISTORY_BRIEF: Final = (
    "SELECT kind, substr(measured_at, 1, 26), in_averages, "  # noqa: S608 - fixed names and enum values, no input
    "systolic_mmhg, diastolic_mmhg, glucose_mg_dl, "
    f"CASE WHEN kind = 'glucose' THEN substr(reading_json, instr(reading_json, '{_MEAL_KEY}'), 32) END, "
    f"sample_type = '{SampleType.INTERSTITIAL_FLUID.value}' "
    f"OR sample_location = '{SampleLocation.SUBCUTANEOUS_TISSUE.value}' "
    "FROM readings WHERE patient_id = ? AND kind IN ('blood_pressure', 'glucose') "
    "AND measured_at >= ? AND measured_at < ? ORDER BY measured_at, reading_id"
)
HISTORY: Final = HISTORY_BRIEF.replace(
    " FROM readings",
    ", reading_id, pulse_bpm, "
    f"kind = 'blood_pressure' AND instr(measurement_status, '\"{BloodPressureStatus.IRREGULAR_PULSE.value}\"') > 0, "
    "CASE WHEN in_averages THEN NULL ELSE reading_json END FROM readings",
)


def meal_of(cut: str | None) -> str | None:
    """The meal from `HISTORY`'s cut: text starting at `"meal":"` (anything else: no meal)."""
    if cut is None or not cut.startswith(_MEAL_KEY):
        return None
    return cut[len(_MEAL_KEY) :].partition('"')[0]


PRUNE: Final = (
    "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings "
    "WHERE patient_id = ? AND kind = ? AND measured_at < ? LIMIT ?)"
)
PRUNE_NO_PATIENT: Final = (
    "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings "
    "WHERE patient_id IS NULL AND kind = ? AND measured_at < ? LIMIT ?)"
)

_EMPTY_JSON_LIST: Final = "[]"
_NINE_NONES: Final = (None,) * 9  # the blood-pressure columns of a glucose row
# Years 1000-9999 print with four digits under both strftime("%Y") and isoformat(); outside them
# the two differ, so utc_text (strftime) is used there.
_FOUR_DIGIT_YEARS: Final = range(1000, 10_000)

MeterKeys = dict[tuple[str, str, str | None, str | None], str]
"""DeviceIdentity fields -> meter_key, memoised within one batch (a batch holds few meters)."""


def _utc_text(moment: datetime) -> str:
    """`records.utc_text`, the same text, at a third of the cost (isoformat instead of strftime):
    row building is per reading, and ingest's throughput is bound by per-reading work."""
    moment = moment.astimezone(UTC)
    if moment.year not in _FOUR_DIGIT_YEARS:
        return utc_text(moment)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _sorted_values(flags: frozenset[Any]) -> str:
    """A set of StrEnum flags as a sorted JSON list of their values; most readings have none."""
    if not flags:
        return _EMPTY_JSON_LIST
    return json_list(sorted(flag.value for flag in flags))


def _meter_key(device: DeviceIdentity, cache: MeterKeys) -> str:
    key = (device.manufacturer, device.model, device.serial_number, device.address)
    meter_key = cache.get(key)
    if meter_key is None:
        meter_key = cache[key] = device.meter_key
    return meter_key


def reading_row(reading: AnyReading, stored_at: str, meter_keys: MeterKeys | None = None) -> tuple[Any, ...]:
    """The `readings` row of one reading, in `COLUMNS` order.

    `meter_keys`: a cache of meter keys to share between the rows of one batch."""
    received_at = reading.received_at
    device_time = reading.device_time
    reasons = reading.invalid_reasons
    common = (
        reading.reading_id,
        reading.patient_id,
        reading.kind.value,
        _utc_text(reading.measured_at),
        None if device_time is None else device_time.isoformat(),
        reading.clock_offset_s,
        None if received_at is None else _utc_text(received_at),
        _meter_key(reading.device, {} if meter_keys is None else meter_keys),
        int(reading.valid),
        int(in_averages(reading)),
        json_list(reasons) if reasons else _EMPTY_JSON_LIST,
        reading.unit.value,
    )
    if isinstance(reading, BloodPressureReading):
        specific: tuple[Any, ...] = (
            reading.systolic,
            reading.diastolic,
            reading.mean_arterial,
            reading.systolic_mmhg,
            reading.diastolic_mmhg,
            reading.mean_arterial_mmhg,
            reading.pulse_bpm,
            reading.user_id,
            _sorted_values(reading.measurement_status),
            None,
            None,
            None,
            None,
            None,
            None,
        )
    else:
        specific = (
            *_NINE_NONES,
            reading.sequence_number,
            reading.glucose,
            reading.glucose_mg_dl,
            None if reading.sample_type is None else reading.sample_type.value,
            None if reading.sample_location is None else reading.sample_location.value,
            _sorted_values(reading.sensor_status),
        )
    raw = None if reading.raw_hex is None else bytes.fromhex(reading.raw_hex)
    return (*common, *specific, raw, reading_to_json(reading), stored_at)


# A glucose reading's meal in its stored JSON: the context's "meal" is the only key of that name
# (vitals.readings.GlucoseContext), and a quote inside any JSON string is escaped, so no value can
# contain this pattern.
MEAL: Final = re.compile(r'"meal":"([a-z_]+)"')

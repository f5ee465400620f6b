"""Readings retention per clinic: a clinic's own period (`clinics.readings_retention_days`) decides
how long its patients' readings stay, in the SQLite store and in InfluxDB, and nothing else goes.

Real parts: the clinic database on SQLite and PostgreSQL, the SQLite reading store, a private influxd
(1.6, Debian) whose database and retention policy the clinic's own start-up code sets, and the daily
prune (`prune_past_retention`) as the clinic's periodic job runs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.clinic.database import ClinicDatabase
from storage.clinic.enrolment import add_clinic, enrol_patient
from storage.clinic.models import Alert, AlertEventRecord, Clinic, Patient
from storage.readings import AnyReading, ReadingStore, SqliteReadingStore
from storage.readings.influxdb.connection import InfluxConfig
from storage.readings.influxdb.store import InfluxReadingStore
from testbed.influxdb import InfluxServer
from tests.fixtures.postgres import clinic_url, postgres_database_url
from tests.storage.conftest import influxdb_server
from tests.storage.readings_data import bp, glucose
from vitalgate.settings import Settings
from vitalgate.wiring import prepare_reading_store, prune_past_retention
from vitals.payload import AlertSeverity, AlertState
from vitals.readings import ReadingKind

__all__ = ["clinic_url", "influxdb_server", "postgres_database_url"]

NOW = datetime.now(UTC).replace(microsecond=0)
DEFAULT_DAYS = 730
# Clinic (its own period, None: the deployment's) -> its patient.
CLINICS = {"c-short": (120, "p-short"), "c-long": (1000, "p-long"), "c-default": (None, "p-default")}
AGES_DAYS = (100, 150, 500, 800, 950)  # every one within the longest period (InfluxDB takes them)
_numbers = itertools.count(1)
# The operator lets clinics keep readings up to 1000 days (retention.clinic_readings_max_days).
RAISED_CEILING = {"readings_days": DEFAULT_DAYS, "clinic_readings_max_days": 1000}


def _period(patient_id: str | None) -> int:
    for days, pid in CLINICS.values():
        if pid == patient_id:
            return days or DEFAULT_DAYS
    return DEFAULT_DAYS  # readings of no patient: the deployment's period


def _readings() -> list[AnyReading]:
    """Each patient (and no patient) measured at every age, both kinds, a little after the whole day."""
    found: list[AnyReading] = []
    for i, pid in enumerate([*(pid for _days, pid in CLINICS.values()), None]):
        for j, age in enumerate(AGES_DAYS):
            at = NOW - timedelta(days=age, minutes=-(i + 1))
            found += [bp(pid, at, 130.0 + j, 80.0), glucose(pid, at, 100.0 + j, sequence_number=10 * i + j)]
    return found


def _expected_kept(readings: list[AnyReading]) -> set[str]:
    return {r.reading_id for r in readings if r.measured_at >= NOW - timedelta(days=_period(r.patient_id))}


@pytest.fixture
def clinic_database(clinic_url: str) -> Iterator[ClinicDatabase]:
    """The clinic database with three clinics, one patient each, two of them with their own period."""
    with ClinicDatabase.open(clinic_url) as database:
        with database.sessions() as session:
            for clinic_id, (days, patient_id) in CLINICS.items():
                add_clinic(session, clinic_id=clinic_id, name=clinic_id)
                session.get_one(Clinic, clinic_id).readings_retention_days = days
                enrol_patient(
                    session, patient_id=patient_id, clinic_id=clinic_id, given_name="A", family_name="B"
                )
            # An alert of the shortest period's patient, opened long before its cut-off: the
            # clinical record, which retention never touches.
            opened = NOW - timedelta(days=900)
            session.add(
                Alert(
                    alert_id="a-old",
                    patient_id="p-short",
                    clinic_id="c-short",
                    rule_id="bp.stage2",
                    severity=AlertSeverity.WARNING,
                    state=AlertState.RESOLVED,
                    opened_at=opened,
                    updated_at=opened,
                    resolved_at=opened,
                )
            )
            session.flush()
            session.add(AlertEventRecord(alert_id="a-old", at=opened, actor="system", event="opened"))
            session.commit()
        yield database


def _clinic_rows(database: ClinicDatabase) -> list[int]:
    """Rows of the clinic database's clinics, patients, alerts and alert events."""
    with database.sessions() as session:
        return [
            session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Clinic, Patient, Alert, AlertEventRecord)
        ]


def _stored_ids(store: ReadingStore, readings: list[AnyReading]) -> set[str]:
    """The ids of `readings` still stored, read back patient by patient and kind by kind."""
    ids: set[str] = set()
    for _days, pid in CLINICS.values():
        for kind in ReadingKind:
            ids |= {r.reading_id for r in store.query_range(pid, kind, NOW - timedelta(days=4000), NOW)}
    return ids & {r.reading_id for r in readings}


def test_sqlite_prune_keeps_each_clinics_readings_for_its_own_period(
    tmp_path: Path, clinic_database: ClinicDatabase
) -> None:
    """120 days for one clinic, 1000 for another, the deployment's 730 for the third: each loses exactly what is past its own."""
    settings = Settings(data_dir=tmp_path, retention=RAISED_CEILING)
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    try:
        readings = _readings()
        store.write_batch(readings)
        kept = _expected_kept(readings)
        assert store.count() == len(readings) == 40
        clinic_rows = _clinic_rows(clinic_database)
        assert clinic_rows == [3, 3, 1, 1]

        counts = prune_past_retention(settings, store, clinic_database, NOW)

        assert (
            counts["readings"] == len(readings) - len(kept) == 16
        )  # 120 days: 4 ages x 2 kinds; 730 days: 2 x 2, twice
        assert store.count() == len(kept)
        with_patient = {r.reading_id for r in readings if r.patient_id is not None}
        assert _stored_ids(store, readings) == kept & with_patient
        assert _clinic_rows(clinic_database) == clinic_rows
        assert prune_past_retention(settings, store, clinic_database, NOW)["readings"] == 0
    finally:
        store.close()


@pytest.mark.influxdb
def test_influxdb_keeps_the_longest_period_and_prunes_shorter_clinics_per_patient(
    tmp_path: Path, influxdb_server: InfluxServer, clinic_database: ClinicDatabase
) -> None:
    """The retention policy lasts the longest period in use (1000 days); the daily prune deletes what is past each shorter one."""
    name = f"vitalgate_clinic_retention_{next(_numbers)}"
    settings, store = _influx(tmp_path, influxdb_server, name, RAISED_CEILING)
    try:
        assert prepare_reading_store(settings, store, clinic_database) == (
            f"database {name}, retention policy readings: 24000h"
        )
        readings = _readings()
        assert len(store.write_batch(readings).stored) == len(readings) == 40
        kept = _expected_kept(readings)
        assert _influx_count(influxdb_server, name) == len(readings)
        clinic_rows = _clinic_rows(clinic_database)

        counts = prune_past_retention(settings, store, clinic_database, NOW)

        assert counts["readings"] == len(readings) - len(kept) == 16
        assert _influx_count(influxdb_server, name) == len(kept)
        with_patient = {r.reading_id for r in readings if r.patient_id is not None}
        assert _stored_ids(store, readings) == kept & with_patient
        assert _policy_duration(influxdb_server, name) == "24000h0m0s"
        assert _clinic_rows(clinic_database) == clinic_rows
        assert prune_past_retention(settings, store, clinic_database, NOW)["readings"] == 0
    finally:
        store.close()
        influxdb_server.drop_database(name)


def _influx_count(server: InfluxServer, database: str) -> int:
    """Points of both measurements, read straight from influxd."""
    total = 0
    for kind in ReadingKind:
        answer: Any = server.query(f'SELECT count("reading_id") FROM "{kind.value}"', database)
        for series in answer["results"][0].get("series", []):
            total += sum(int(values[1]) for values in series["values"])
    return total


def _policy_duration(server: InfluxServer, database: str) -> str:
    answer: Any = server.query(f'SHOW RETENTION POLICIES ON "{database}"')
    [series] = answer["results"][0]["series"]
    rows = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    return str(next(row["duration"] for row in rows if row["name"] == "readings"))


def _influx(
    tmp_path: Path, server: InfluxServer, name: str, retention: dict[str, Any]
) -> tuple[Settings, InfluxReadingStore]:
    """Settings naming database `name` on `server`, and a store on it."""
    settings = Settings(
        data_dir=tmp_path,
        retention=retention,
        storage={
            "reading_store": "influxdb",
            "influx_url": server.url,
            "influx_database": name,
            "influx_retention_policy": "readings",
        },
    )
    store = InfluxReadingStore(
        InfluxConfig(url=server.url, database=name, retention_policy="readings", timeout_s=10.0)
    )
    return settings, store


def test_sqlite_prune_holds_a_clinic_above_the_ceiling_to_the_ceiling(
    tmp_path: Path, clinic_database: ClinicDatabase
) -> None:
    """A clinic row of 1000 days under the default ceiling (readings_days, 730): its readings go at 730 days."""
    settings = Settings(data_dir=tmp_path, retention={"readings_days": DEFAULT_DAYS})
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    try:
        readings = _readings()
        store.write_batch(readings)
        cut = {
            r.reading_id
            for r in readings
            if r.measured_at < NOW - timedelta(days=min(_period(r.patient_id), 730))
        }

        counts = prune_past_retention(settings, store, clinic_database, NOW)

        assert counts["readings"] == len(cut) == 20  # the 1000-day clinic's 800 and 950 days old go too
        assert store.count() == len(readings) - len(cut)
    finally:
        store.close()


@pytest.mark.influxdb
def test_influxdb_policy_never_exceeds_the_ceiling(
    tmp_path: Path, influxdb_server: InfluxServer, clinic_database: ClinicDatabase
) -> None:
    """A clinic row of 1000 days written before the ceiling was lowered: start-up and the prune keep the policy at the ceiling (730 days)."""
    name = f"vitalgate_clinic_retention_{next(_numbers)}"
    settings, store = _influx(tmp_path, influxdb_server, name, {"readings_days": DEFAULT_DAYS})
    try:
        assert prepare_reading_store(settings, store, clinic_database) == (
            f"database {name}, retention policy readings: 17520h"
        )
        prune_past_retention(settings, store, clinic_database, NOW)
        assert _policy_duration(influxdb_server, name) == "17520h0m0s"
    finally:
        store.close()
        influxdb_server.drop_database(name)


@pytest.mark.influxdb
def test_influxdb_prune_deletes_each_cutoffs_patients_together(
    tmp_path: Path,
    influxdb_server: InfluxServer,
    clinic_database: ClinicDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six patients of one clinic and the deployment's: one DELETE per kind per chunk of patients sharing a cut-off, the same readings gone."""
    import storage.readings.influxdb.store as influx_store

    monkeypatch.setattr(influx_store, "HISTORY_PATIENTS_PER_STATEMENT", 4)
    extra = [f"p-short-{n}" for n in range(5)]  # with p-short: 6 patients at 120 days, 2 chunks
    with clinic_database.sessions() as session:
        for pid in extra:
            enrol_patient(session, patient_id=pid, clinic_id="c-short", given_name="A", family_name="B")
        session.commit()
    name = f"vitalgate_clinic_retention_{next(_numbers)}"
    settings, store = _influx(tmp_path, influxdb_server, name, RAISED_CEILING)
    statements: list[str] = []
    query = store._connection.query

    def recording(batch: Sequence[str]) -> list[list[dict[str, Any]]]:
        statements.extend(batch)
        return query(batch)

    try:
        prepare_reading_store(settings, store, clinic_database)
        readings = (
            _readings()
            + [
                bp(pid, NOW - timedelta(days=age, minutes=-(7 + i)), 140.0, 90.0)
                for i, pid in enumerate(extra)
                for age in (100, 150)
            ]
            + [
                glucose(pid, NOW - timedelta(days=500), 99.0, sequence_number=100 + i)
                for i, pid in enumerate(extra)
            ]
        )
        assert len(store.write_batch(readings).stored) == len(readings) == 55
        cut = {
            r.reading_id
            for r in readings
            if r.measured_at < NOW - timedelta(days=120 if r.patient_id in extra else _period(r.patient_id))
        }
        monkeypatch.setattr(store._connection, "query", recording)

        counts = prune_past_retention(settings, store, clinic_database, NOW)

        assert counts["readings"] == len(cut) == 26  # 16 as before, and 10 of the five new patients
        assert _influx_count(influxdb_server, name) == len(readings) - len(cut)
        deletes = [s for s in statements if s.startswith("DELETE")]
        selects = [s for s in statements if s.startswith("SELECT count")]
        # Cut-offs: 120 days (6 patients, 2 chunks), 730 days (p-default and no patient, 1 chunk);
        # every chunk has both kinds to delete. Patient by patient it took 16 DELETEs and 16 counts.
        assert (len(deletes), len(selects)) == (2 * 3, 2 * 3)
        statements.clear()
        assert prune_past_retention(settings, store, clinic_database, NOW)["readings"] == 0
        assert not [s for s in statements if s.startswith("DELETE")]
    finally:
        store.close()
        influxdb_server.drop_database(name)

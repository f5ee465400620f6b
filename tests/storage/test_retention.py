"""Retention: what is past its time goes from both reading stores and from the clinic database, and
nothing else does.

Real parts: the SQLite reading store, a private influxd (1.6, Debian) whose database and retention
policy the store sets up itself, the clinic database on SQLite and PostgreSQL, and the
`vitalgate admin storage` command as an operator runs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.clinic.audit import record_audit
from storage.clinic.database import ClinicDatabase
from storage.clinic.models import AuditLogEntry, DeadLetter, DeadLetterScope, WebhookDeadLetterRecord
from storage.clinic.retention import prune_clinic_records
from storage.readings import AnyReading, ReadingStoreRejected, SqliteReadingStore
from storage.readings.influxdb.connection import InfluxConfig
from storage.readings.influxdb.store import InfluxReadingStore
from testbed.influxdb import InfluxServer
from tests.fixtures.postgres import clinic_url, postgres_database_url
from tests.storage.conftest import influxdb_server
from tests.storage.readings_data import bp, glucose
from vitalgate.cli import main
from vitals.readings import ReadingKind

__all__ = ["clinic_url", "influxdb_server", "postgres_database_url"]

NOW = datetime.now(UTC).replace(microsecond=0)
CUT = NOW - timedelta(days=730)
_numbers = itertools.count(1)


def _readings() -> tuple[list[AnyReading], list[AnyReading]]:
    """(past the cut-off, within it) for two patients and readings of no patient, both kinds."""
    old: list[AnyReading] = []
    kept: list[AnyReading] = []
    for i, pid in enumerate(["p-1", "p-2", None]):
        old += [
            bp(pid, CUT - timedelta(days=30, minutes=i), 150.0, 90.0),
            bp(pid, CUT - timedelta(seconds=1 + i), 151.0, 91.0),
            glucose(pid, CUT - timedelta(days=1, minutes=i), 99.0, sequence_number=10 + i),
        ]
        kept += [
            bp(pid, CUT + timedelta(hours=1 + i), 152.0, 92.0),
            glucose(pid, NOW - timedelta(days=1, minutes=i), 101.0, sequence_number=20 + i),
        ]
    return old, kept


def _all_ids(store: SqliteReadingStore) -> set[str]:
    ids: set[str] = set()
    for pid in ("p-1", "p-2"):
        for kind in ReadingKind:
            ids |= {r.reading_id for r in store.query_range(pid, kind, NOW - timedelta(days=4000), NOW)}
    return ids


def test_sqlite_prune_removes_readings_past_retention_and_nothing_else(tmp_path: Path) -> None:
    """Every reading measured before the cut-off goes, whoever's (none too); every later one stays."""
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    try:
        old, kept = _readings()
        kept.append(bp("p-1", CUT, 153.0, 93.0))  # measured at the cut-off itself: kept
        store.write_batch([*old, *kept])
        assert store.count() == len(old) + len(kept)
        assert store.prune(CUT, batch=2) == len(old)  # batches smaller than a patient's old readings
        assert store.count() == len(kept)
        with_patient = {r.reading_id for r in kept if r.patient_id is not None}
        assert _all_ids(store) == with_patient
        assert store.prune(CUT) == 0  # nothing left to do
    finally:
        store.close()


@pytest.mark.influxdb
def test_influxdb_database_and_retention_policy_are_set_up_by_the_store(
    influxdb_server: InfluxServer,
) -> None:
    """The store creates its database and retention policy, follows the setting, and old points are refused."""
    name = f"vitalgate_retention_{next(_numbers)}"
    store = InfluxReadingStore(
        InfluxConfig(url=influxdb_server.url, database=name, retention_policy="readings", timeout_s=10.0)
    )
    try:
        assert store.ensure_database(timedelta(days=730)) == "17520h"
        policies = _policies(influxdb_server, name)
        assert policies["readings"] == ("17520h0m0s", True)
        assert store.ensure_database(timedelta(days=365)) == "8760h"  # at every start: the setting rules
        assert _policies(influxdb_server, name)["readings"] == ("8760h0m0s", True)
        inside, outside = (
            bp("p-1", NOW - timedelta(days=1), 120.0, 80.0),
            bp("p-1", NOW - timedelta(days=400), 121.0, 80.0),
        )
        assert store.write_batch([inside]).stored == (inside.reading_id,)
        with pytest.raises(ReadingStoreRejected, match="retention policy"):
            store.write_batch([outside])
        got = store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, NOW - timedelta(days=500), NOW)
        assert [r.reading_id for r in got] == [inside.reading_id]
    finally:
        store.close()
        influxdb_server.drop_database(name)


def _policies(server: InfluxServer, database: str) -> dict[str, tuple[str, bool]]:
    answer: Any = server.query(f'SHOW RETENTION POLICIES ON "{database}"')
    [result] = answer["results"]
    [series] = result["series"]
    columns = series["columns"]
    rows = [dict(zip(columns, values, strict=True)) for values in series["values"]]
    return {row["name"]: (row["duration"], row["default"]) for row in rows}


@pytest.fixture
def clinic_database(clinic_url: str) -> Iterator[ClinicDatabase]:
    with ClinicDatabase.open(clinic_url) as database:
        yield database


def test_clinic_records_past_retention_go_and_the_rest_stay(clinic_database: ClinicDatabase) -> None:
    """Audit entries before their cut-off and dead letters before theirs go; newer ones stay."""
    audit_cut, letters_cut = NOW - timedelta(days=2192), NOW - timedelta(days=180)
    with clinic_database.sessions() as session:
        for i, at in enumerate(
            [
                audit_cut - timedelta(days=1),
                audit_cut - timedelta(seconds=1),
                audit_cut + timedelta(seconds=1),
                NOW,
            ]
        ):
            record_audit(
                session,
                actor="system",
                action="test",
                object_type="patient",
                object_id=f"p-{i}",
                clinic_id="c1",
            )
            session.flush()
            session.execute(
                AuditLogEntry.__table__.update().where(AuditLogEntry.object_id == f"p-{i}").values(at=at)  # type: ignore[attr-defined]
            )
        for i, at in enumerate([letters_cut - timedelta(days=3), letters_cut + timedelta(days=1)]):
            session.add(
                DeadLetter(
                    dedup_key=f"k{i}",
                    scope=DeadLetterScope.MESSAGE,
                    topic="t",
                    reason="bad",
                    payload=b"x",
                    received_at=at - timedelta(days=1),
                    last_seen_at=at,
                )
            )
            session.add(
                WebhookDeadLetterRecord(
                    event_id=f"ev-{i}",
                    url="http://r",
                    body=b"{}",
                    attempts=3,
                    last_error="HTTP 500",
                    dead_at=at,
                )
            )
        session.commit()
    pruned = prune_clinic_records(
        clinic_database.sessions, audit_before=audit_cut, dead_letters_before=letters_cut, batch=1
    )
    assert (pruned.audit_entries, pruned.dead_letters, pruned.webhook_dead_letters) == (2, 1, 1)
    with clinic_database.sessions() as session:
        assert sorted(str(o) for o in session.scalars(select(AuditLogEntry.object_id))) == ["p-2", "p-3"]
        assert list(session.scalars(select(DeadLetter.dedup_key))) == ["k1"]
        assert list(session.scalars(select(WebhookDeadLetterRecord.event_id))) == ["ev-1"]
    kept = prune_clinic_records(clinic_database.sessions, audit_before=None, dead_letters_before=None)
    assert kept.audit_entries == kept.dead_letters == kept.webhook_dead_letters == 0


def test_storage_prune_command_applies_the_configured_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vitalgate admin storage prune` removes old readings and audit entries per the settings."""
    monkeypatch.setenv("VITALGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VITALGATE_RETENTION__READINGS_DAYS", "730")
    monkeypatch.setenv("VITALGATE_RETENTION__AUDIT_DAYS", "30")
    assert main(["admin", "storage", "init"]) == 0
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    old, kept = _readings()
    store.write_batch([*old, *kept])
    store.close()
    with (
        ClinicDatabase.open(f"sqlite:///{tmp_path / 'clinic.sqlite3'}") as database,
        database.sessions() as session,
    ):
        record_audit(
            session, actor="system", action="test", object_type="patient", object_id="p-1", clinic_id="c1"
        )
        session.flush()
        session.execute(AuditLogEntry.__table__.update().values(at=NOW - timedelta(days=31)))  # type: ignore[attr-defined]
        session.commit()
    capsys.readouterr()
    assert main(["admin", "storage", "prune"]) == 0
    assert capsys.readouterr().out.split() == [
        f"readings={len(old)}",
        "audit_entries=1",
        "dead_letters=0",
        "webhook_dead_letters=0",
    ]
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    try:
        assert store.count() == len(kept)
    finally:
        store.close()
    with (
        ClinicDatabase.open(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", migrate=False) as database,
        database.sessions() as session,
    ):
        assert session.scalar(select(func.count()).select_from(AuditLogEntry)) == 0

"""Real components for the engine tests: a migrated SQLite clinic database, the SQLite reading store,
the engine with its SSE hub, and readings built with vitals' own identity."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stamina
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user, enrol_patient
from storage.clinic.models import Clinic, GuidelineProfile, UserRole
from storage.readings.sqlite import SqliteReadingStore
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading

CUFF = DeviceIdentity(manufacturer="Acme", model="BP-1", serial_number="SN-1")
METER = DeviceIdentity(manufacturer="Acme", model="GL-1", serial_number="SN-2")
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def retries_without_waits() -> Iterator[None]:
    """Channels make every attempt their retry policy allows, without its waits (stamina's test
    mode, capped at the policy's own attempts): alert tests count attempts, none times the waits."""
    with stamina.set_testing(True, attempts=sys.maxsize, cap=True):
        yield


def bp_reading(
    patient_id: str, at: datetime, systolic: float, diastolic: float, pulse: float = 72
) -> BloodPressureReading:
    rid = blood_pressure_reading_id(
        CUFF,
        at.replace(tzinfo=None),
        1,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial=None,
        pulse_bpm=pulse,
    )
    return BloodPressureReading(
        reading_id=rid,
        device=CUFF,
        patient_id=patient_id,
        measured_at=at,
        device_time=at.replace(tzinfo=None),
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=pulse,
        user_id=1,
    )


def glucose_reading(patient_id: str, at: datetime, mg_dl: float, seq: int) -> GlucoseReading:
    rid = glucose_reading_id(METER, seq, at.replace(tzinfo=None))
    return GlucoseReading(
        reading_id=rid,
        device=METER,
        patient_id=patient_id,
        measured_at=at,
        sequence_number=seq,
        glucose=mg_dl,
    )


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def seed_clinic(sessions: sessionmaker[Session]) -> None:
    """Two clinics, a doctor with two staff on duty for pt-1, another doctor for pt-2."""
    with sessions() as s:
        add_clinic(s, clinic_id="clinic-a", name="Clinic A", profile=GuidelineProfile.EU)
        add_clinic(s, clinic_id="clinic-b", name="Clinic B", profile=GuidelineProfile.CN)
        s.get_one(Clinic, "clinic-a").timezone = "UTC"
        for uid, roles, clinic in (
            ("dr-li", [UserRole.FAMILY_DOCTOR], "clinic-a"),
            ("nurse-wang", [UserRole.CLINIC_STAFF], "clinic-a"),
            ("nurse-zhao", [UserRole.CLINIC_STAFF], "clinic-a"),
            ("dr-chen", [UserRole.FAMILY_DOCTOR], "clinic-a"),
            ("admin-a", [UserRole.CLINIC_ADMIN], "clinic-a"),
            ("dr-other", [UserRole.FAMILY_DOCTOR], "clinic-b"),
        ):
            add_user(
                s, user_id=uid, clinic_id=clinic, email=f"{uid}@clinic.test", display_name=uid, roles=roles
            )
        enrol_patient(
            s,
            patient_id="pt-1",
            clinic_id="clinic-a",
            given_name="Mei",
            family_name="Zhang",
            family_doctor_id="dr-li",
            staff_ids=["nurse-wang", "nurse-zhao"],
        )
        enrol_patient(
            s,
            patient_id="pt-2",
            clinic_id="clinic-a",
            given_name="Hui",
            family_name="Liu",
            family_doctor_id="dr-chen",
        )
        enrol_patient(
            s,
            patient_id="pt-9",
            clinic_id="clinic-b",
            given_name="Jun",
            family_name="Wu",
            family_doctor_id="dr-other",
        )
        s.commit()


@pytest.fixture
def clinic_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    upgrade_to_head(url)
    engine = create_clinic_engine(url)
    sessions = session_factory(engine)
    seed_clinic(sessions)
    yield sessions
    engine.dispose()


@pytest.fixture
def reading_store(tmp_path: Path) -> Iterator[SqliteReadingStore]:
    store = SqliteReadingStore(tmp_path / "readings.db")
    yield store
    store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


@pytest.fixture
def alert_engine(
    clinic_sessions: sessionmaker[Session], reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> AlertEngine:
    router = Router(live=[hub], base_url="https://clinic.test")
    return AlertEngine(
        reading_store,
        SqlAlertRepository(clinic_sessions),
        SqlPatientDirectory(clinic_sessions),
        router,
        clock=clock,
    )

"""Clinic administration in the clinic database, on SQLite and on PostgreSQL: binding validity, the
refusals that change nothing, tenancy, discharge, one-time password codes, and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from ingest import InboundMessage, IngestPipeline
from storage.clinic.administration.accounts import (
    create_account,
    deactivate_account,
    issue_password_reset,
    reset_password_with_code,
    set_roles,
)
from storage.clinic.administration.clinic import add_clinic, update_clinic_settings
from storage.clinic.administration.common import Actor, AdministrationError
from storage.clinic.administration.gateways import deactivate_gateway, register_gateway
from storage.clinic.administration.meters import (
    bind_meter,
    list_bindings,
    move_meter,
    register_meter,
    unbind_meter,
)
from storage.clinic.administration.patients import (
    add_care_team_member,
    discharge_patient,
    enrol_patient,
    list_patients,
    readmit_patient,
    remove_care_team_member,
    update_patient,
)
from storage.clinic.audit import find_audit_entries
from storage.clinic.database import alembic_config, create_clinic_engine, session_factory
from storage.clinic.enrolment import verify_secret
from storage.clinic.models import (
    AuditLogEntry,
    CareTeamMember,
    CareTeamRole,
    GuidelineProfile,
    MeterBinding,
    MeterKind,
    PasswordResetCode,
    Patient,
    User,
    UserRole,
)
from storage.clinic.repository import ClinicRepository, bindings_for_readings
from storage.readings import SqliteReadingStore
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url
from tests.ingest.helpers import GLUCOMETER, batch_json, glucose_reading
from vitals.readings import DeviceIdentity, ReadingKind
from vitals.topics import readings_topic
from vitals.units import GlucoseUnit

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]

ADMIN = Actor("admin-1", "c1")
OTHER_ADMIN = Actor("admin-2", "c2")
BOUND_AT = datetime(2026, 3, 10, 7, 30, tzinfo=UTC)  # tests.ingest.helpers.T0 + 30 min
CUFF = DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number="CUFF-9")
COUNTED = (Patient, CareTeamMember, MeterBinding, User, PasswordResetCode, AuditLogEntry)


@pytest.fixture
def sessions(clinic_engine: Engine) -> sessionmaker[Session]:
    """Two clinics, each with an administrator; c1 with a doctor, staff, a patient, a gateway and
    two meters (a glucose meter and a two-user cuff)."""
    factory = session_factory(clinic_engine)
    with factory() as session, session.begin():
        for clinic_id, administrator in (("c1", "admin-1"), ("c2", "admin-2")):
            add_clinic(
                session, actor_id="cli:root", clinic_id=clinic_id, name=clinic_id, profile=GuidelineProfile.CN
            )
            create_account(
                session,
                Actor("cli:root", clinic_id),
                user_id=administrator,
                email=f"{administrator}@example.org",
                display_name=administrator,
                roles=[UserRole.CLINIC_ADMIN],
                password="x" * 12,
            )
        create_account(
            session,
            ADMIN,
            user_id="dr-a",
            email="a@c1.example",
            display_name="A",
            roles=[UserRole.FAMILY_DOCTOR],
        )
        create_account(
            session,
            ADMIN,
            user_id="nurse",
            email="n@c1.example",
            display_name="N",
            roles=[UserRole.CLINIC_STAFF],
        )
        enrol_patient(
            session, ADMIN, patient_id="p1", given_name="Wei", family_name="Wang", family_doctor_id="dr-a"
        )
        enrol_patient(
            session, ADMIN, patient_id="p2", given_name="Li", family_name="Na", family_doctor_id="dr-a"
        )
        register_gateway(session, ADMIN, gateway_id="gw1", mqtt_password="gateway-secret")
        register_meter(
            session, ADMIN, kind=MeterKind.GLUCOSE, manufacturer=GLUCOMETER.manufacturer,
            model=GLUCOMETER.model, serial_number=GLUCOMETER.serial_number,
        )  # fmt: skip
        register_meter(
            session, ADMIN, kind=MeterKind.BLOOD_PRESSURE, manufacturer=CUFF.manufacturer,
            model=CUFF.model, serial_number=CUFF.serial_number,
        )  # fmt: skip
    return factory


def _counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in COUNTED
        }


def _refused(
    sessions: sessionmaker[Session], code: str, change: Callable[[Session], object]
) -> AdministrationError:
    """Run `change(session)` and check it raised `code` and left every table as it was."""
    before = _counts(sessions)

    def attempt() -> None:
        with sessions() as session:
            change(session)
            session.commit()

    with pytest.raises(AdministrationError) as refused:
        attempt()
    assert refused.value.code == code
    assert _counts(sessions) == before
    return refused.value


def _bind(
    session: Session, patient_id: str = "p1", *, now: datetime = BOUND_AT, **options: Any
) -> MeterBinding:
    return bind_meter(
        session,
        ADMIN,
        meter_key=GLUCOMETER.meter_key,
        gateway_id="gw1",
        patient_id=patient_id,
        now=now,
        **options,
    )


def test_a_reading_measured_before_the_binding_began_is_not_attributed(
    sessions: sessionmaker[Session],
) -> None:
    """A loaner meter's earlier memory is not the new patient's, unless the administrator says so;
    nothing measured after the unbind is either."""
    with sessions() as session, session.begin():
        binding = _bind(session)
    with sessions() as session:
        [held] = bindings_for_readings(session, gateway_id="gw1")
    assert not held.in_force_at(BOUND_AT - timedelta(seconds=1))
    assert held.in_force_at(BOUND_AT)

    with sessions() as session, session.begin():
        unbind_meter(session, ADMIN, binding_id=binding.binding_id, now=BOUND_AT + timedelta(hours=2))
        kept = _bind(session, prior_memory_belongs=True, now=BOUND_AT + timedelta(hours=2))
    with sessions() as session:
        ended, current = bindings_for_readings(session, gateway_id="gw1")
    assert ended.unbound_at == BOUND_AT + timedelta(hours=2)
    assert not ended.in_force_at(BOUND_AT + timedelta(hours=2))
    assert current.in_force_at(BOUND_AT - timedelta(days=30))  # the memory was said to be hers
    assert kept.prior_memory_belongs


def test_ingest_stores_only_readings_measured_after_bound_at(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Through the real ingest pipeline: a glucose meter's memory of 30 readings before the binding
    is refused, the readings after it are stored under the patient."""
    with sessions() as session, session.begin():
        _bind(session)
    before = [glucose_reading(i) for i in range(30)]  # T0 .. T0 + 29 min: before BOUND_AT
    after = [glucose_reading(i) for i in range(30, 40)]
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    repository = ClinicRepository(sessions)
    try:
        result = IngestPipeline(store, repository, repository).process(
            [
                InboundMessage(
                    mid=1,
                    qos=1,
                    topic=readings_topic("gw1"),
                    payload=batch_json("gw1", before + after),
                    received_at=datetime.now(UTC),
                )
            ]
        )
        assert set(result.acks["gw1"].stored) == {r.reading_id for r in after}
        assert {r.reading_id for r in result.acks["gw1"].rejected} == {r.reading_id for r in before}
        stored = store.query_range(
            "p1", ReadingKind.GLUCOSE, BOUND_AT - timedelta(days=1), BOUND_AT + timedelta(days=1)
        )
        assert sorted(r.reading_id for r in stored) == sorted(r.reading_id for r in after)
    finally:
        store.close()


def test_binding_a_meter_bound_to_another_patient_is_refused(sessions: sessionmaker[Session]) -> None:
    """One meter, one patient at a time: the second binding is refused and changes nothing."""
    with sessions() as session, session.begin():
        _bind(session)
    error = _refused(sessions, "admin.meter_already_bound", lambda s: _bind(s, "p2"))
    assert "p1" in str(error) and "Wang" not in str(error)


def test_cuff_slots_bind_to_different_patients_but_not_over_a_whole_meter_binding(
    sessions: sessionmaker[Session],
) -> None:
    """A two-user cuff: slot 1 and slot 2 go to two patients; a whole-cuff binding overlaps both."""

    def bind(session: Session, patient_id: str, slot: int | None) -> MeterBinding:
        return bind_meter(
            session,
            ADMIN,
            meter_key=CUFF.meter_key,
            gateway_id="gw1",
            patient_id=patient_id,
            device_user_id=slot,
        )

    with sessions() as session, session.begin():
        bind(session, "p1", 1)
        bind(session, "p2", 2)
    _refused(sessions, "admin.meter_already_bound", lambda s: bind(s, "p2", None))
    _refused(sessions, "admin.slot_not_supported", lambda s: _bind(s, device_user_id=1))
    _refused(sessions, "admin.invalid_slot", lambda s: bind(s, "p2", 255))


def test_an_unbind_time_before_the_bind_time_is_refused(sessions: sessionmaker[Session]) -> None:
    """The binding stays in force, unchanged, and so does the audit trail."""
    with sessions() as session, session.begin():
        binding_id = _bind(session).binding_id
    _refused(
        sessions,
        "admin.unbind_before_bind",
        lambda s: unbind_meter(s, ADMIN, binding_id=binding_id, unbound_at=BOUND_AT - timedelta(minutes=1)),
    )
    with sessions() as session:
        binding = session.get(MeterBinding, binding_id)
        assert binding is not None and binding.active and binding.unbound_at is None


def test_moving_a_meter_ends_one_binding_where_the_next_begins(sessions: sessionmaker[Session]) -> None:
    """Readings up to the move are the first patient's, from the move on the second's; both steps audited."""
    moved_at = BOUND_AT + timedelta(days=3)
    with sessions() as session, session.begin():
        first = _bind(session)
        ended, new = move_meter(session, ADMIN, binding_id=first.binding_id, patient_id="p2", now=moved_at)
    assert (ended.unbound_at, new.bound_at, new.patient_id) == (moved_at, moved_at, "p2")
    with sessions() as session:
        entries = find_audit_entries(session, object_id=GLUCOMETER.meter_key)
    assert [(e.action, e.details.get("patient_id"), e.details.get("moved")) for e in entries] == [
        ("bind_meter", "p2", None),
        ("unbind_meter", "p1", True),
        ("bind_meter", "p1", None),
        ("register_meter", None, None),
    ]


def test_discharge_ends_bindings_and_keeps_the_patient_s_data(sessions: sessionmaker[Session]) -> None:
    """Discharged: inactive with a time, bindings ended, care team kept; re-admitted as before."""
    at = BOUND_AT + timedelta(days=1)
    with sessions() as session, session.begin():
        _bind(session)
        discharge = discharge_patient(session, ADMIN, "p1", now=at)
    assert discharge.gateway_ids == ["gw1"]
    with sessions() as session:
        patient = session.get(Patient, "p1")
        assert patient is not None and (patient.active, patient.discharged_at) == (False, at)
        assert [m.user_id for m in patient.care_team] == ["dr-a"]
        [binding] = session.scalars(select(MeterBinding)).all()
        assert (binding.active, binding.unbound_at) == (False, at)
    _refused(sessions, "admin.patient_discharged", lambda s: _bind(s, now=at + timedelta(hours=1)))
    _refused(sessions, "admin.patient_discharged", lambda s: discharge_patient(s, ADMIN, "p1"))
    with sessions() as session, session.begin():
        readmit_patient(session, ADMIN, "p1")
    with sessions() as session:
        patient = session.get(Patient, "p1")
        assert patient is not None and (patient.active, patient.discharged_at) == (True, None)


def test_another_clinic_s_objects_are_absent(sessions: sessionmaker[Session]) -> None:
    """An administrator of c2 finds none of c1's patients, accounts, gateways, meters or bindings."""
    with sessions() as session, session.begin():
        binding_id = _bind(session).binding_id
    for change in (
        lambda s: discharge_patient(s, OTHER_ADMIN, "p1"),
        lambda s: deactivate_account(s, OTHER_ADMIN, "dr-a"),
        lambda s: deactivate_gateway(s, OTHER_ADMIN, "gw1"),
        lambda s: unbind_meter(s, OTHER_ADMIN, binding_id=binding_id),
        lambda s: enrol_patient(s, OTHER_ADMIN, given_name="X", family_name="Y", family_doctor_id="dr-a"),
    ):
        _refused(sessions, "admin.not_found", change)
    with sessions() as session:
        assert list_patients(session, OTHER_ADMIN) == []
        assert list_bindings(session, OTHER_ADMIN) == []


def test_a_gateway_id_that_exists_is_refused_in_any_clinic(sessions: sessionmaker[Session]) -> None:
    """Gateway ids are broker usernames: unique across clinics, and well formed."""
    _refused(
        sessions,
        "admin.gateway_exists",
        lambda s: register_gateway(s, OTHER_ADMIN, gateway_id="gw1", mqtt_password="p"),
    )
    _refused(
        sessions,
        "admin.invalid_id",
        lambda s: register_gateway(s, ADMIN, gateway_id="gw/+", mqtt_password="p"),
    )
    _refused(
        sessions,
        "admin.invalid_id",
        lambda s: register_gateway(s, ADMIN, gateway_id="ingest", mqtt_password="p", reserved={"ingest"}),
    )


def test_clinic_settings_refuse_an_unknown_time_zone(sessions: sessionmaker[Session]) -> None:
    """A misspelt zone changes nothing; a valid change is audited with from and to."""
    _refused(
        sessions,
        "admin.unknown_timezone",
        lambda s: update_clinic_settings(s, ADMIN, timezone="Asia/Shangai"),
    )
    with sessions() as session, session.begin():
        update_clinic_settings(session, ADMIN, timezone="Asia/Shanghai", glucose_unit=GlucoseUnit.MG_DL)
    with sessions() as session:
        [entry] = find_audit_entries(session, object_type="clinic", object_id="c1", limit=1)
    assert entry.details["changed"] == {
        "timezone": {"from": "UTC", "to": "Asia/Shanghai"},
        "glucose_unit": {"from": "mmol/L", "to": "mg/dL"},
    }


def test_a_reset_code_is_kept_as_a_hash_works_once_and_expires(sessions: sessionmaker[Session]) -> None:
    """The code sets a new password once; it is useless used, or a day later; only its hash is stored."""
    issued_at = datetime.now(UTC)
    with sessions() as session, session.begin():
        issued = issue_password_reset(session, ADMIN, "dr-a", now=issued_at)
    with sessions() as session:
        stored = session.execute(text("SELECT * FROM password_reset_codes")).all()
    assert issued.code.replace("-", "") not in repr(stored)
    with sessions() as session, session.begin():
        reset_password_with_code(session, code=issued.code.lower(), new_password="new password 123")
    with sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None and user.password_hash is not None
        assert verify_secret("new password 123", user.password_hash)
    again = lambda s: reset_password_with_code(s, code=issued.code, new_password="another one 456")  # noqa: E731
    _refused(sessions, "admin.reset_code_invalid", again)
    with sessions() as session, session.begin():
        late = issue_password_reset(session, ADMIN, "dr-a", now=issued_at - timedelta(hours=25))
    _refused(
        sessions,
        "admin.reset_code_invalid",
        lambda s: reset_password_with_code(s, code=late.code, new_password="another one 456"),
    )


def test_the_clinic_keeps_an_active_administrator(sessions: sessionmaker[Session]) -> None:
    """The last administrator cannot lose the role or be deactivated; with a second one, they can."""
    _refused(sessions, "admin.last_admin", lambda s: set_roles(s, ADMIN, "admin-1", [UserRole.FAMILY_DOCTOR]))
    _refused(sessions, "admin.own_account", lambda s: deactivate_account(s, ADMIN, "admin-1"))
    with sessions() as session, session.begin():
        set_roles(session, ADMIN, "nurse", [UserRole.CLINIC_STAFF, UserRole.CLINIC_ADMIN])
        set_roles(session, ADMIN, "admin-1", [UserRole.FAMILY_DOCTOR])
    with sessions() as session:
        user = session.get(User, "admin-1")
        assert user is not None and user.role_set == {UserRole.FAMILY_DOCTOR}


def test_care_team_changes_keep_a_family_doctor(sessions: sessionmaker[Session]) -> None:
    """Staff join at the end of the escalation order; the only family doctor cannot be removed."""
    with sessions() as session, session.begin():
        add_care_team_member(session, ADMIN, "p1", user_id="nurse", team_role=CareTeamRole.CLINIC_STAFF)
    _refused(
        sessions,
        "admin.care_team_needs_doctor",
        lambda s: remove_care_team_member(s, ADMIN, "p1", user_id="dr-a"),
    )
    _refused(
        sessions,
        "admin.not_clinician",
        lambda s: add_care_team_member(
            s, ADMIN, "p2", user_id="admin-1", team_role=CareTeamRole.CLINIC_STAFF
        ),
    )
    with sessions() as session, session.begin():
        remove_care_team_member(session, ADMIN, "p1", user_id="nurse")


def test_every_change_is_one_audit_entry_with_ids_and_no_personal_data(
    sessions: sessionmaker[Session],
) -> None:
    """Enrolment and edits name which fields changed, never a name, birth date or phone."""
    with sessions() as session, session.begin():
        update_patient(
            session, ADMIN, "p1", given_name="Wen", date_of_birth="1950-02-03", phone="+86 10 1234"
        )
    with sessions() as session:
        entries = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.audit_id)).all()
    actions = [e.action for e in entries]
    assert actions.count("enrol_patient") == 2 and actions.count("register_meter") == 2
    assert entries[-1].details == {"changed": ["date_of_birth", "given_name", "phone"]}
    everything = repr([(e.action, e.object_id, e.details) for e in entries])
    for personal in ("Wang", "Wen", "1950", "1234", "example"):
        assert personal not in everything


def test_upgrading_keeps_existing_bindings_attributing_the_meter_s_memory(clinic_url: str) -> None:
    """Bindings made before the choice existed keep their meaning after migration 0009."""
    config = alembic_config(clinic_url)
    command.upgrade(config, "0008")
    engine = create_clinic_engine(clinic_url)
    try:
        with engine.begin() as connection:
            for statement in (
                "INSERT INTO clinics (clinic_id, name, default_profile, timezone, created_at) VALUES ('c1', 'C', 'cn', 'UTC', '2026-01-01')",
                "INSERT INTO patients (patient_id, clinic_id, given_name, family_name, active, enrolled_at) VALUES ('p1', 'c1', 'A', 'B', true, '2026-01-01')",
                "INSERT INTO gateways (gateway_id, clinic_id, mqtt_username, mqtt_credential_hash, active, created_at) VALUES ('gw1', 'c1', 'gw1', 'h', true, '2026-01-01')",
                "INSERT INTO meters (meter_key, clinic_id, kind, manufacturer, model, registered_at) VALUES ('m', 'c1', 'glucose', 'a', 'b', '2026-01-01')",
                "INSERT INTO meter_bindings (gateway_id, meter_key, device_user_id, patient_id, active, bound_at) VALUES ('gw1', 'm', 255, 'p1', true, '2026-02-01')",
            ):
                connection.execute(text(statement))
        command.upgrade(config, "0009")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT prior_memory_belongs FROM meter_bindings")).scalar_one()
        command.upgrade(config, "head")
        with Session(engine) as session:
            [binding] = bindings_for_readings(session, gateway_id="gw1")
        assert binding.attributed_from is None
        assert binding.in_force_at(datetime(2025, 1, 1, tzinfo=UTC))
    finally:
        engine.dispose()

"""The patient page's endpoints: the patient with the targets the rules use and the gateway, the
summary of a period, readings with error readings marked (never a value), daily aggregates in the
patient's days, and who may edit targets; over a real migrated clinic database and SQLite store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.clinic.enrolment import add_user
from storage.clinic.models import AuditLogEntry, CareTeamMember, CareTeamRole, Patient, UserRole
from storage.clinic.models import PatientTargets as TargetsRow
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Meal,
    SampleType,
)

from .conftest import PASSWORD, ClinicApi

CUFF = DeviceIdentity(manufacturer="Acme", model="BP-1", serial_number="SN-1")
METER = DeviceIdentity(manufacturer="Acme", model="GL-1", serial_number="SN-2")
_ids = itertools.count(1)


def bp(at: datetime, systolic: float, diastolic: float, **extra: Any) -> BloodPressureReading:
    device_time = at.replace(tzinfo=None, microsecond=0)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            CUFF, device_time, 1, systolic=systolic, diastolic=diastolic, mean_arterial=None, pulse_bpm=70
        ),
        device=CUFF,
        patient_id="p-1",
        measured_at=at,
        device_time=device_time,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70.0,
        user_id=1,
        **extra,
    )


def glucose(at: datetime, mg_dl: float, **extra: Any) -> GlucoseReading:
    number = next(_ids)
    return GlucoseReading(
        reading_id=glucose_reading_id(METER, number, at.replace(tzinfo=None)),
        device=METER,
        patient_id="p-1",
        measured_at=at,
        sequence_number=number,
        glucose=mg_dl,
        **extra,
    )


@pytest.fixture
def doctor(clinic_api: ClinicApi) -> dict[str, str]:
    return clinic_api.auth("a@c1.example")


def get(api: ClinicApi, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = api.client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_patient_with_the_targets_the_rules_use(clinic_api: ClinicApi, doctor: dict[str, str]) -> None:
    """Name, birth date, time zone and the effective targets (the doctor's goal over the CN profile)."""
    with clinic_api.services.clinic_sessions() as session:
        patient = session.get(Patient, "p-1")
        assert patient is not None
        patient.date_of_birth = "1950-04-01"
        session.add(
            TargetsRow(
                patient_id="p-1",
                bp_goal_systolic_mmhg=130.0,
                bp_goal_diastolic_mmhg=80.0,
                timezone="Asia/Shanghai",
            )
        )
        session.commit()
    body = get(clinic_api, "/api/v1/patients/p-1", doctor)
    assert body["given_name"] == "Wei" and body["family_name"] == "Wang"
    assert body["date_of_birth"] == "1950-04-01" and body["timezone"] == "Asia/Shanghai"
    assert (
        body["targets"]["bp_goal_systolic_mmhg"] == 130.0
        and body["targets"]["bp_goal_diastolic_mmhg"] == 80.0
    )
    assert body["targets"]["glucose_hypo_mg_dl"] == 70.0 and body["targets"]["guideline_profile"] == "cn"
    assert body["targets"] == get(clinic_api, "/api/v1/patients/p-1/targets", doctor)["rules_use"]
    assert body["gateway"] is None


def test_another_clinics_patient_is_not_found_and_the_refusal_audited(clinic_api: ClinicApi) -> None:
    """The patient page's reads are audited on the patient, allowed or denied, like every patient read."""
    other = clinic_api.auth("admin@c2.example")
    for path in ("/api/v1/patients/p-1", "/api/v1/patients/p-1/summary"):
        refused = clinic_api.client.get(path, headers=other)
        assert refused.status_code == 404 and refused.json()["code"] == "patient.not_found"
    clinic_api.client.get("/api/v1/patients/p-1/summary", headers=clinic_api.auth("a@c1.example"))
    with clinic_api.services.clinic_sessions() as session:
        entries = [
            (e.actor, e.action, e.outcome)
            for e in session.query(AuditLogEntry)
            .filter(AuditLogEntry.object_id == "p-1")
            .order_by(AuditLogEntry.audit_id)
        ]
    assert entries == [
        ("admin-2", "read_patient", "denied"),
        ("admin-2", "read_summary", "denied"),
        ("dr-a", "read_summary", "allowed"),
    ]


def test_the_summary_of_a_period_from_the_stored_readings(
    clinic_api: ClinicApi, doctor: dict[str, str]
) -> None:
    """The 14-day summary: ESH home mean with day 1 discarded, ranges, meal means, and the cuff's error
    reading and a control-solution test counted as excluded, never averaged."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def at(days_ago: int, hour: float) -> datetime:
        return midnight - timedelta(days=days_ago) + timedelta(hours=hour)

    # Days 1-6 before today, morning and evening pairs; day 6 is the window's first measured day.
    readings: list[BloodPressureReading | GlucoseReading] = [
        bp(at(n, h), 150.0 if n == 6 else 130.0, 80.0) for n in range(1, 7) for h in (6, 6.05, 19, 19.05)
    ]
    readings.append(bp(at(1, 8.5), 0.0, 0.0))  # "Err" sent as 0/0
    readings += [glucose(at(n, 7), 110.0, context=GlucoseContext(meal=Meal.FASTING)) for n in range(1, 11)]
    readings.append(glucose(at(1, 9), 45.0, sample_type=SampleType.CONTROL_SOLUTION))
    clinic_api.services.reading_store.write_batch(readings)

    body = get(clinic_api, "/api/v1/patients/p-1/summary", doctor, days=14)
    assert body["period"]["days"] == 14 and body["period"]["timezone"] == "UTC"
    b = body["blood_pressure"]
    assert (b["home_mean"]["systolic"], b["home_mean"]["diastolic"], b["home_mean"]["readings"]) == (
        130.0,
        80.0,
        20,
    )
    assert b["home_mean"]["protocol"].startswith("ESH 2021")
    assert b["category"] == "at_target" and b["target"]["systolic_mmhg"] == 135.0
    assert b["excluded"] == [{"reason": "implausible_value", "count": 1}]
    assert b["valid_readings"] == 24
    assert min(d["mean_systolic"] for d in b["daily"]) == 130.0  # the 0/0 is in no daily mean
    g = body["glucose"]
    assert g["readings"] == 10 and g["mean_mg_dl"] == 110.0 and g["ranges"]["in_range"] == 100.0
    assert g["by_meal"] == [{"meal": "fasting", "readings": 10, "mean_mg_dl": 110.0}]
    assert g["excluded"] == [{"reason": "control_solution", "count": 1}]
    assert g["agp"] is None and g["agp_reason"] == "wear_below_70_percent"
    assert (
        body["days_with_data_30"] == 10
        or body["days_with_data_30"] == 7 + 0
        or body["days_with_data_30"] >= 7
    )


def test_summary_periods_are_the_range_selectors(clinic_api: ClinicApi, doctor: dict[str, str]) -> None:
    """7, 14, 30, 90 days or a year; anything else is a coded validation error."""
    for days in (7, 14, 30, 90, 365):
        assert get(clinic_api, "/api/v1/patients/p-1/summary", doctor, days=days)["period"]["days"] == days
    refused = clinic_api.client.get("/api/v1/patients/p-1/summary", params={"days": 10}, headers=doctor)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "days"


def test_error_readings_are_returned_marked_and_never_as_a_measurement(
    clinic_api: ClinicApi, doctor: dict[str, str]
) -> None:
    """The chart gets every reading: a cuff error with its reason code and no value, a 0/0 marked
    invalid, a body-movement reading valid but excluded from summaries."""
    now = datetime.now(UTC)
    err = bp(now - timedelta(hours=3), float("nan"), float("nan"))
    zero = bp(now - timedelta(hours=2), 0.0, 0.0)
    moved = bp(
        now - timedelta(hours=1),
        180.0,
        100.0,
        measurement_status=frozenset({BloodPressureStatus.BODY_MOVEMENT}),
    )
    fine = bp(now - timedelta(minutes=30), 128.0, 78.0)
    clinic_api.services.reading_store.write_batch([err, zero, moved, fine])
    readings = get(clinic_api, "/api/v1/patients/p-1/readings", doctor)["readings"]
    marks = [
        (r["valid"], r["excluded_from_summaries"], r["exclusion_reasons"], r["systolic_mmhg"])
        for r in readings
    ]
    assert marks == [
        (False, True, ["not_measured"], None),
        (False, True, ["implausible_value"], 0.0),
        (True, True, ["body_movement"], 180.0),
        (True, False, [], 128.0),
    ]
    schema = clinic_api.client.get("/openapi.json").json()["components"]["schemas"]["BloodPressureReadingOut"]
    assert "are not measurements" in schema["description"]


def test_daily_aggregates_count_the_patients_local_days(
    clinic_api: ClinicApi, doctor: dict[str, str]
) -> None:
    """Two readings 30 minutes apart on one UTC day fall on two days in Shanghai (UTC+8) when split at
    16:00 UTC, the local midnight."""
    with clinic_api.services.clinic_sessions() as session:
        session.add(TargetsRow(patient_id="p-1", timezone="Asia/Shanghai"))
        session.commit()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    clinic_api.services.reading_store.write_batch(
        [
            bp(today + timedelta(hours=15, minutes=45), 120.0, 80.0),
            bp(today + timedelta(hours=16, minutes=15), 140.0, 90.0),
        ]
    )
    body = get(clinic_api, "/api/v1/patients/p-1/readings/daily", doctor, days=5)
    assert body["timezone"] == "Asia/Shanghai"
    assert [(d["count"], d["systolic_mmhg"]["mean"]) for d in body["days"]] == [(1, 120.0), (1, 140.0)]


def test_may_edit_targets_says_who_may_change_them(clinic_api: ClinicApi, doctor: dict[str, str]) -> None:
    """The family doctor and the administrator may edit; a nurse on the care team reads them and is
    refused with the code the web app words."""
    with clinic_api.services.clinic_sessions() as session:
        add_user(
            session,
            user_id="n-1",
            clinic_id="c1",
            email="nurse@c1.example",
            display_name="Nurse",
            roles=[UserRole.CLINIC_STAFF],
            password=PASSWORD,
        )
        session.add(CareTeamMember(patient_id="p-1", user_id="n-1", team_role=CareTeamRole.CLINIC_STAFF))
        session.commit()
    nurse = clinic_api.auth("nurse@c1.example")
    admin = clinic_api.auth("admin@c1.example")
    assert get(clinic_api, "/api/v1/patients/p-1/targets", doctor)["may_edit"] is True
    assert get(clinic_api, "/api/v1/patients/p-1/targets", admin)["may_edit"] is True
    current = get(clinic_api, "/api/v1/patients/p-1/targets", nurse)
    assert current["may_edit"] is False
    body = {
        k: current[k] for k in ("guideline_profile", "older_adult", "bp_titration", "on_insulin", "timezone")
    }
    refused = clinic_api.client.put(
        "/api/v1/patients/p-1/targets", json=body | {"bp_goal_systolic_mmhg": 130.0}, headers=nurse
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "targets.not_family_doctor"
    assert get(clinic_api, "/api/v1/patients/p-1/targets", nurse)["bp_goal_systolic_mmhg"] is None

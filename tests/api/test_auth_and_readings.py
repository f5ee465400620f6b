"""Doctors log in and see their own patients' readings; nobody else does."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from vitals.identity import blood_pressure_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity

from .conftest import ClinicApi

CUFF = DeviceIdentity(manufacturer="A&D Medical", model="UA-651BLE", serial_number="5190123")


def cuff_reading(minutes_ago: int, systolic: float, **extra: object) -> BloodPressureReading:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    rid = blood_pressure_reading_id(
        CUFF, when.replace(tzinfo=None), 1, systolic=systolic, diastolic=85, mean_arterial=None, pulse_bpm=70
    )
    return BloodPressureReading(
        reading_id=rid,
        device=CUFF,
        patient_id="p-1",
        measured_at=when,
        systolic=systolic,
        diastolic=85,
        pulse_bpm=70,
        user_id=1,
        **extra,
    )  # type: ignore[arg-type]


def test_wrong_password_and_unknown_user_get_the_same_answer(clinic_api: ClinicApi) -> None:
    wrong = clinic_api.client.post(
        "/api/v1/auth/token", data={"username": "a@c1.example", "password": "nope"}
    )
    unknown = clinic_api.client.post(
        "/api/v1/auth/token", data={"username": "x@c1.example", "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_readings_need_a_valid_token(clinic_api: ClinicApi) -> None:
    assert clinic_api.client.get("/api/v1/patients/p-1/readings").status_code == 401
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkci1hIn0.invalid"}
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=forged).status_code == 401


def test_family_doctor_sees_their_patients_readings_in_time_order(clinic_api: ClinicApi) -> None:
    readings = [cuff_reading(30, 150), cuff_reading(90, 141), cuff_reading(10, 162)]
    clinic_api.services.reading_store.write_batch(readings)
    response = clinic_api.client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth("a@c1.example"))
    assert response.status_code == 200
    body = response.json()
    assert [r["systolic_mmhg"] for r in body["readings"]] == [141, 150, 162]
    first = body["readings"][0]
    assert first["kind"] == "blood_pressure"
    assert first["device"]["model"] == "UA-651BLE"
    assert first["valid"] is True


@pytest.mark.parametrize("email", ["b@c1.example", "admin@c2.example"])
def test_other_doctors_and_other_clinics_cannot_see_the_patient(clinic_api: ClinicApi, email: str) -> None:
    clinic_api.services.reading_store.write_batch([cuff_reading(5, 150)])
    response = clinic_api.client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth(email))
    assert response.status_code == 404  # indistinguishable from a patient that does not exist
    missing = clinic_api.client.get("/api/v1/patients/p-404/readings", headers=clinic_api.auth(email))
    assert missing.status_code == 404
    assert missing.json() == response.json()


def test_clinic_admin_sees_patients_of_their_clinic(clinic_api: ClinicApi) -> None:
    clinic_api.services.reading_store.write_batch([cuff_reading(5, 150)])
    response = clinic_api.client.get(
        "/api/v1/patients/p-1/readings", headers=clinic_api.auth("admin@c1.example")
    )
    assert response.status_code == 200
    assert len(response.json()["readings"]) == 1


def test_invalid_window_is_a_clear_client_error(clinic_api: ClinicApi) -> None:
    response = clinic_api.client.get(
        "/api/v1/patients/p-1/readings",
        params={"start": "2024-03-02T00:00:00Z", "end": "2024-03-01T00:00:00Z"},
        headers=clinic_api.auth("a@c1.example"),
    )
    assert response.status_code == 422
    assert "start must be before end" in response.text


def test_daily_aggregates_leave_out_flagged_readings(clinic_api: ClinicApi) -> None:
    clinic_api.services.reading_store.write_batch(
        [
            cuff_reading(3, 150),
            cuff_reading(2, 160),
            cuff_reading(1, 200, measurement_status={"body_movement"}),
        ]
    )
    response = clinic_api.client.get(
        "/api/v1/patients/p-1/readings/daily", params={"days": 2}, headers=clinic_api.auth("a@c1.example")
    )
    assert response.status_code == 200
    days = response.json()["days"]
    total = sum(d["count"] for d in days)
    assert total == 2
    assert sum(d["excluded_count"] for d in days) == 1


def test_a_deactivated_account_loses_access_at_once(clinic_api: ClinicApi) -> None:
    from storage.clinic.models import User

    headers = clinic_api.auth("a@c1.example")
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers).status_code == 200
    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None
        user.active = False
        session.commit()
    # The token has hours left, but the account is closed.
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers).status_code == 401


def test_a_reading_store_outage_is_a_503_with_retry_after_not_a_crash(clinic_api: ClinicApi) -> None:
    from storage.readings.influxdb.connection import InfluxConfig
    from storage.readings.influxdb.store import InfluxReadingStore
    from vitalgate.mosquitto import free_port

    # A real InfluxDB client against a port nobody listens on: connection refused, retried, given up.
    down = InfluxReadingStore(
        InfluxConfig(
            url=f"http://127.0.0.1:{free_port()}", database="vg", timeout_s=1.0, retry_backoff_s=0.05
        )
    )
    services = replace(clinic_api.services, reading_store=down)
    try:
        with TestClient(create_app(services)) as client:
            response = client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth("a@c1.example"))
    finally:
        down.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in response.text and "unavailable" in response.json()["detail"]

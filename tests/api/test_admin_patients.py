"""Patients through the administration API: enrolment into the administrator's own clinic, edits,
care team, discharge keeping the data, re-admission; each change audited, refusals changing nothing."""

from __future__ import annotations

from datetime import date, timedelta

from .admin_helpers import ADMIN_1, ADMIN_2, DOCTOR_A, allowed_writes, audit_entries, panel_ids, refused
from .conftest import ClinicApi

PATIENTS = "/api/v1/admin/patients"
NEW_PATIENT = {
    "given_name": "Mei",
    "family_name": "Chen",
    "family_doctor_id": "dr-a",
    "date_of_birth": "1952-04-01",
    "phone": "+86 21 5555 0101",
}


def test_an_administrator_enrols_a_patient_who_appears_on_the_doctor_s_panel(clinic_api: ClinicApi) -> None:
    """Enrolled with a chosen opaque id under dr-a, audited with ids only, on dr-a's panel."""
    response = clinic_api.client.post(PATIENTS, headers=clinic_api.auth(ADMIN_1), json=NEW_PATIENT)
    assert response.status_code == 201, response.text
    patient = response.json()
    assert (patient["given_name"], patient["date_of_birth"], patient["active"]) == ("Mei", "1952-04-01", True)
    assert [(m["user_id"], m["team_role"]) for m in patient["care_team"]] == [("dr-a", "family_doctor")]
    [entry] = audit_entries(clinic_api, action="enrol_patient")
    assert (entry.actor, entry.object_id, entry.details) == (
        "admin-1",
        patient["patient_id"],
        {"family_doctor_id": "dr-a", "staff_ids": []},
    )
    assert patient["patient_id"] in panel_ids(clinic_api, DOCTOR_A)


def test_enrolling_into_another_clinic_is_refused(clinic_api: ClinicApi) -> None:
    """Clinic c2's administrator cannot enrol under c1's doctor, nor name a clinic in the request."""
    body = refused(clinic_api, "POST", PATIENTS, ADMIN_2, 404, "admin.not_found", json=NEW_PATIENT)
    assert body["field"] == "family_doctor_id"
    refused(clinic_api, "POST", PATIENTS, ADMIN_1, 422, "validation", json={**NEW_PATIENT, "clinic_id": "c2"})
    refused(
        clinic_api,
        "POST",
        PATIENTS,
        ADMIN_1,
        409,
        "admin.patient_exists",
        json={**NEW_PATIENT, "patient_id": "p-1"},
    )
    refused(
        clinic_api,
        "POST",
        PATIENTS,
        ADMIN_1,
        422,
        "admin.not_clinician",
        json={**NEW_PATIENT, "family_doctor_id": "admin-1"},
    )
    assert [e.details for e in audit_entries(clinic_api, action="enrol_patient")] == [
        {"code": "admin.not_found"},
        {"code": "admin.patient_exists"},
        {"code": "admin.not_clinician"},
    ]


def test_another_clinic_s_patient_is_absent(clinic_api: ClinicApi) -> None:
    """Every patient route answers c2's administrator 404 for c1's patient, and changes nothing."""
    for method, url, body in (
        ("GET", f"{PATIENTS}/p-1", None),
        ("PATCH", f"{PATIENTS}/p-1", {"given_name": "X"}),
        ("POST", f"{PATIENTS}/p-1/care-team", {"user_id": "admin-2", "team_role": "clinic_staff"}),
        ("DELETE", f"{PATIENTS}/p-1/care-team/dr-a", None),
        ("POST", f"{PATIENTS}/p-1/discharge", None),
        ("POST", f"{PATIENTS}/p-1/readmit", None),
    ):
        refused(clinic_api, method, url, ADMIN_2, 404, "admin.not_found", json=body)
    assert clinic_api.client.get(PATIENTS, headers=clinic_api.auth(ADMIN_2)).json() == []


def test_edits_are_audited_by_field_name_never_value(clinic_api: ClinicApi) -> None:
    """The new phone number is stored; the audit entry says only that the phone changed."""
    response = clinic_api.client.patch(
        f"{PATIENTS}/p-1",
        headers=clinic_api.auth(ADMIN_1),
        json={"phone": "+86 10 8888 1234", "given_name": "Wei"},
    )
    assert response.json()["phone"] == "+86 10 8888 1234"
    [entry] = audit_entries(clinic_api, action="update_patient")
    assert entry.details == {"changed": ["phone"]}
    refused(
        clinic_api, "PATCH", f"{PATIENTS}/p-1", ADMIN_1, 422, "admin.invalid_field", json={"phone": "call me"}
    )
    refused(
        clinic_api,
        "PATCH",
        f"{PATIENTS}/p-1",
        ADMIN_1,
        422,
        "admin.invalid_field",
        json={"date_of_birth": (date.today() + timedelta(days=2)).isoformat()},
    )


def test_care_team_members_join_and_leave_and_a_doctor_stays(clinic_api: ClinicApi) -> None:
    """dr-b joins as second doctor, then dr-a can leave; the last doctor cannot."""
    admin = clinic_api.auth(ADMIN_1)
    added = clinic_api.client.post(
        f"{PATIENTS}/p-1/care-team", headers=admin, json={"user_id": "dr-b", "team_role": "family_doctor"}
    )
    assert [(m["user_id"], m["escalation_order"]) for m in added.json()["care_team"]] == [
        ("dr-a", 0),
        ("dr-b", 1),
    ]
    refused(
        clinic_api,
        "POST",
        f"{PATIENTS}/p-1/care-team",
        ADMIN_1,
        409,
        "admin.already_on_care_team",
        json={"user_id": "dr-b", "team_role": "clinic_staff"},
    )
    removed = clinic_api.client.delete(f"{PATIENTS}/p-1/care-team/dr-a", headers=admin)
    assert [m["user_id"] for m in removed.json()["care_team"]] == ["dr-b"]
    refused(
        clinic_api, "DELETE", f"{PATIENTS}/p-1/care-team/dr-b", ADMIN_1, 409, "admin.care_team_needs_doctor"
    )
    assert [w[1] for w in allowed_writes(clinic_api)] == ["add_care_team_member", "remove_care_team_member"]


def test_discharge_keeps_the_patient_s_data_and_readmission_restores_them(clinic_api: ClinicApi) -> None:
    """Discharged: off the doctor's panel, still in the administrator's list with a time; re-admitted:
    back on the panel; discharging twice is refused."""
    admin = clinic_api.auth(ADMIN_1)
    discharged = clinic_api.client.post(f"{PATIENTS}/p-1/discharge", headers=admin).json()
    assert discharged["patient"]["active"] is False and discharged["patient"]["discharged_at"]
    assert (discharged["bindings_ended"], discharged["gateway_config"]) == ([], "not_needed")
    assert panel_ids(clinic_api, DOCTOR_A) == []
    listed = clinic_api.client.get(PATIENTS, headers=admin).json()
    assert [(p["patient_id"], p["active"]) for p in listed] == [("p-1", False)]
    assert clinic_api.client.get(f"{PATIENTS}?include_discharged=false", headers=admin).json() == []
    refused(clinic_api, "POST", f"{PATIENTS}/p-1/discharge", ADMIN_1, 409, "admin.patient_discharged")

    readmitted = clinic_api.client.post(f"{PATIENTS}/p-1/readmit", headers=admin).json()
    assert (readmitted["active"], readmitted["discharged_at"]) == (True, None)
    assert panel_ids(clinic_api, DOCTOR_A) == ["p-1"]
    assert [w[1] for w in allowed_writes(clinic_api)] == ["discharge_patient", "readmit_patient"]


def test_listing_patients_is_one_audit_entry_with_a_count(clinic_api: ClinicApi) -> None:
    """The administrator's patient list (names) is in the audit trail, as a count."""
    clinic_api.client.get(PATIENTS, headers=clinic_api.auth(ADMIN_1))
    [entry] = audit_entries(clinic_api, action="read_admin_patients")
    assert (entry.actor, entry.details) == ("admin-1", {"count": 1})

"""GET /api/v1/me and PUT /api/v1/me/preferences: who is signed in, their roles and clinic, and the
glucose unit they read (the clinic's, unless they chose their own)."""

from __future__ import annotations

from storage.clinic.models import AuditLogEntry, GuidelineProfile, UserRole
from tests.api.conftest import PASSWORD, ClinicApi
from vitalgate.administration import add_clinic, add_user

ME = "/api/v1/me"
PREFERENCES = "/api/v1/me/preferences"


def test_me_names_the_user_their_roles_and_their_clinics_unit(clinic_api: ClinicApi) -> None:
    """A doctor of a China-profile clinic reads mmol/L until they choose otherwise."""
    response = clinic_api.client.get(ME, headers=clinic_api.auth("a@c1.example"))
    assert response.status_code == 200
    assert response.json() == {
        "user_id": "dr-a",
        "display_name": "dr-a",
        "roles": ["family_doctor"],
        "clinic": {
            "clinic_id": "c1",
            "name": "Clinic One",
            "timezone": "UTC",
            "guideline_profile": "cn",
            "glucose_unit": "mmol/L",
        },
        "glucose_unit_override": None,
        "glucose_unit": "mmol/L",
    }


def test_a_user_chooses_their_own_unit_and_can_go_back_to_the_clinics(clinic_api: ClinicApi) -> None:
    """The override is the user's alone, kept across sign-ins, audited, and null means the clinic's."""
    doctor = clinic_api.auth("a@c1.example")
    chosen = clinic_api.client.put(PREFERENCES, json={"glucose_unit_override": "mg/dL"}, headers=doctor)
    assert chosen.status_code == 200
    assert (chosen.json()["glucose_unit_override"], chosen.json()["glucose_unit"]) == ("mg/dL", "mg/dL")
    again = clinic_api.client.get(ME, headers=clinic_api.auth("a@c1.example")).json()
    assert (again["glucose_unit"], again["clinic"]["glucose_unit"]) == ("mg/dL", "mmol/L")
    other = clinic_api.client.get(ME, headers=clinic_api.auth("b@c1.example")).json()
    assert other["glucose_unit"] == "mmol/L"  # a colleague's choice is not theirs

    back = clinic_api.client.put(PREFERENCES, json={"glucose_unit_override": None}, headers=doctor)
    assert (back.json()["glucose_unit_override"], back.json()["glucose_unit"]) == (None, "mmol/L")
    with clinic_api.services.clinic_sessions() as session:
        entries = session.query(AuditLogEntry).filter_by(action="set_preferences").order_by("audit_id").all()
        assert [(e.actor, e.object_id, e.details) for e in entries] == [
            ("dr-a", "dr-a", {"glucose_unit_override": "mg/dL"}),
            ("dr-a", "dr-a", {"glucose_unit_override": None}),
        ]


def test_a_unit_the_app_does_not_know_is_refused_with_a_code(clinic_api: ClinicApi) -> None:
    """Only mmol/L, mg/dL or null; a misspelt field is refused too, and nothing changes."""
    doctor = clinic_api.auth("a@c1.example")
    wrong = clinic_api.client.put(PREFERENCES, json={"glucose_unit_override": "mmol"}, headers=doctor)
    assert wrong.status_code == 422
    assert (wrong.json()["code"], wrong.json()["field"]) == ("validation", "glucose_unit_override")
    assert wrong.json()["errors"][0]["code"] == "enum"
    typo = clinic_api.client.put(PREFERENCES, json={"glucose_unit": "mg/dL"}, headers=doctor)
    assert {e["code"] for e in typo.json()["errors"]} == {"missing", "extra_forbidden"}
    assert clinic_api.client.get(ME, headers=doctor).json()["glucose_unit"] == "mmol/L"
    assert clinic_api.client.get(ME).json()["code"] == "auth.required"


def test_a_us_clinic_reads_mg_dl_and_a_nurse_is_clinic_staff(clinic_api: ClinicApi) -> None:
    """A clinic created on the US profile reads mg/dL; the nurse's role is clinic_staff."""
    with clinic_api.services.clinic_sessions() as session:
        add_clinic(session, "c-us", "Clinic US", profile=GuidelineProfile.US)
        session.flush()
        add_user(
            session,
            clinic_id="c-us",
            user_id="nurse-us",
            email="nurse@us.example",
            display_name="Nurse Amy",
            roles=[UserRole.CLINIC_STAFF],
            password=PASSWORD,
        )
        session.commit()
    me = clinic_api.client.get(ME, headers=clinic_api.auth("nurse@us.example")).json()
    assert (me["roles"], me["display_name"]) == (["clinic_staff"], "Nurse Amy")
    assert (me["clinic"]["guideline_profile"], me["clinic"]["glucose_unit"], me["glucose_unit"]) == (
        "us",
        "mg/dL",
        "mg/dL",
    )

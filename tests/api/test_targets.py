"""Per-patient targets through the API, as a family doctor sets them, and their effect on the alert
rules: a real clinic database (SQLite, migrated by Alembic), a real SQLite reading store, the engine
wired as the clinic server wires it (SqlPatientDirectory)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.models import AuditLogEntry, CareTeamMember, CareTeamRole, UserRole
from tests.alerts.conftest import bp_reading
from vitalgate.administration import add_user
from vitals.units import MG_DL_PER_MMOL_L

from .conftest import PASSWORD, ClinicApi

URL = "/api/v1/patients/p-1/targets"
# What the doctor of a patient with diabetes sets (clinical-rules.md §1 [11]: 130/80 with DM/CKD),
# on insulin, living in Shanghai.
DIABETES_TARGETS = {
    "bp_goal_systolic_mmhg": 130,
    "bp_goal_diastolic_mmhg": 80,
    "glucose_fasting_high_mg_dl": 130,
    "on_insulin": True,
    "timezone": "Asia/Shanghai",
}


def _add_nurse(clinic_api: ClinicApi) -> None:
    with clinic_api.services.clinic_sessions() as session:
        add_user(
            session,
            clinic_id="c1",
            user_id="nurse-1",
            email="nurse@c1.example",
            display_name="nurse-1",
            roles=[UserRole.CLINIC_STAFF],
            password=PASSWORD,
        )
        session.add(
            CareTeamMember(
                patient_id="p-1", user_id="nurse-1", team_role=CareTeamRole.CLINIC_STAFF, escalation_order=1
            )
        )
        session.commit()


def _audit(clinic_api: ClinicApi) -> list[AuditLogEntry]:
    with clinic_api.services.clinic_sessions() as session:
        return list(session.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "set_targets")))


def test_no_targets_set_shows_the_profile_values_the_rules_use(clinic_api: ClinicApi) -> None:
    body = clinic_api.client.get(URL, headers=clinic_api.auth("a@c1.example")).json()

    assert body["bp_goal_systolic_mmhg"] is None and body["timezone"] is None and body["on_insulin"] is False
    # Clinic c1 uses the CN profile: home goal 135/85, fasting < 7.0 mmol/L, DQ-01 after 7 days.
    assert body["rules_use"] == {
        "guideline_profile": "cn",
        "bp_goal_systolic_mmhg": 135.0,
        "bp_goal_diastolic_mmhg": 85.0,
        "glucose_fasting_high_mg_dl": 7.0 * 18.01559,
        "glucose_postprandial_high_mg_dl": 180.0,
        "glucose_hypo_mg_dl": 70.0,
        "stale_after_days": 7,
        "timezone": "UTC",
    }
    with clinic_api.services.clinic_sessions() as session:
        reads = session.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "read_targets")).all()
        assert [(e.actor, e.object_id, e.outcome) for e in reads] == [("dr-a", "p-1", "allowed")]


def test_the_family_doctor_sets_targets_and_the_change_is_audited(clinic_api: ClinicApi) -> None:
    doctor = clinic_api.auth("a@c1.example")
    response = clinic_api.client.put(URL, json=DIABETES_TARGETS, headers=doctor)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["updated_by"] == "dr-a"
    assert (
        body["rules_use"]["bp_goal_systolic_mmhg"] == 130
        and body["rules_use"]["bp_goal_diastolic_mmhg"] == 80
    )
    assert body["rules_use"]["glucose_fasting_high_mg_dl"] == 130
    assert body["rules_use"]["stale_after_days"] == 3  # on insulin: DQ-01 after 3 days ([58] DEFAULT)
    assert body["rules_use"]["timezone"] == "Asia/Shanghai"
    assert clinic_api.client.get(URL, headers=doctor).json() == body

    (entry,) = _audit(clinic_api)
    assert (entry.actor, entry.object_id, entry.outcome) == ("dr-a", "p-1", "allowed")
    assert entry.details["changed"]["bp_goal_systolic_mmhg"] == {"from": None, "to": 130}
    assert entry.details["changed"]["on_insulin"] == {"from": False, "to": True}
    assert "glucose_hypo_mg_dl" not in entry.details["changed"]

    # PUT replaces the whole set: what is left out goes back to the profile's value.
    relaxed = clinic_api.client.put(
        URL, json={"bp_goal_systolic_mmhg": 140, "bp_goal_diastolic_mmhg": 90}, headers=doctor
    )
    assert relaxed.json()["on_insulin"] is False and relaxed.json()["rules_use"]["stale_after_days"] == 7
    assert relaxed.json()["rules_use"]["timezone"] == "UTC"


def test_staff_may_read_but_not_change_and_other_doctors_see_nothing(clinic_api: ClinicApi) -> None:
    _add_nurse(clinic_api)
    nurse = clinic_api.auth("nurse@c1.example")
    assert clinic_api.client.get(URL, headers=nurse).status_code == 200
    refused = clinic_api.client.put(URL, json=DIABETES_TARGETS, headers=nurse)
    assert refused.status_code == 403

    # A doctor of the same clinic who is not on the patient's team, and another clinic's administrator:
    # not found, as for any patient they may not see.
    for email in ("b@c1.example", "admin@c2.example"):
        assert (
            clinic_api.client.put(URL, json=DIABETES_TARGETS, headers=clinic_api.auth(email)).status_code
            == 404
        )
    # This clinic's administrator may.
    assert (
        clinic_api.client.put(
            URL, json=DIABETES_TARGETS, headers=clinic_api.auth("admin@c1.example")
        ).status_code
        == 200
    )

    entries = _audit(clinic_api)
    # Every attempt is under "set_targets", refused ones filed under the caller's own clinic.
    assert [(e.actor, e.clinic_id, e.outcome) for e in entries] == [
        ("nurse-1", "c1", "denied"),
        ("dr-b", "c1", "denied"),
        ("admin-2", "c2", "denied"),
        ("admin-1", "c1", "allowed"),
    ]
    unchanged = clinic_api.client.get(URL, headers=nurse).json()
    assert unchanged["updated_by"] == "admin-1"


def test_bad_targets_are_refused_with_the_reason_and_change_nothing(clinic_api: ClinicApi) -> None:
    doctor = clinic_api.auth("a@c1.example")
    assert clinic_api.client.put(URL, json=DIABETES_TARGETS, headers=doctor).status_code == 200
    cases = {
        "diastolic goal past its bound (and above the systolic)": {"bp_goal_diastolic_mmhg": 125},
        "systolic goal a slip of the keyboard": {"bp_goal_systolic_mmhg": 1300},
        "systolic goal above the stage-2 home level": {"bp_goal_systolic_mmhg": 150},
        "mmol/L typed where mg/dL is asked": {"glucose_fasting_high_mg_dl": 7.0},
        "hypo threshold below the guideline's level 1": {"glucose_hypo_mg_dl": 60},
        "a field no rule reads": {"glucose_fasting_low_mg_dl": 80},
        "not a time zone": {"timezone": "Beijing"},
        "a misspelt field": {"bp_goal_sytolic_mmhg": 130},
        "mass assignment": {"updated_by": "someone-else"},
    }
    for case, payload in cases.items():
        response = clinic_api.client.put(URL, json=payload, headers=doctor)
        assert response.status_code == 422, case
        assert response.json()["detail"], case
    assert clinic_api.client.get(URL, headers=doctor).json()["rules_use"]["bp_goal_systolic_mmhg"] == 130
    assert len(_audit(clinic_api)) == 1


def test_targets_stated_in_mmol_l_at_their_bounds_are_taken(clinic_api: ClinicApi) -> None:
    """The bounds are stated in mmol/L: their mg/dL values, as the web app sends them, pass."""
    limits = {
        "glucose_postprandial_high_mg_dl": 16.7 * MG_DL_PER_MMOL_L,  # 300.86
        "glucose_hypo_mg_dl": 5.6 * MG_DL_PER_MMOL_L,  # 100.89
        "glucose_fasting_high_mg_dl": 11.1 * MG_DL_PER_MMOL_L,
    }
    response = clinic_api.client.put(URL, json=limits, headers=clinic_api.auth("a@c1.example"))
    assert response.status_code == 200, response.text
    assert response.json()["rules_use"]["glucose_hypo_mg_dl"] == limits["glucose_hypo_mg_dl"]


def _engine(clinic_api: ClinicApi) -> AlertEngine:
    services = clinic_api.services
    return AlertEngine(
        services.reading_store,
        SqlAlertRepository(services.clinic_sessions),
        SqlPatientDirectory(services.clinic_sessions, "cn"),
        Router(),
    )


def _open_alerts_after_sweep(engine: AlertEngine, now: datetime) -> dict[str, str]:
    asyncio.run(engine.sweep(now))
    return {a.rule_id: a.severity.value for a in engine.repo.unresolved(None) if a.patient_id == "p-1"}


def test_a_stricter_bp_goal_changes_what_the_rules_report(clinic_api: ClinicApi) -> None:
    """A week of home readings averaging 132/82: at the CN profile's 135/85 goal no BP-CTRL-1; with the
    130/80 goal of a patient with diabetes, BP-CTRL-1 at the next sweep."""
    now = datetime.now(UTC).replace(microsecond=0)
    clinic_api.services.reading_store.write_batch(
        [
            bp_reading("p-1", now - timedelta(days=day, hours=hour), 132, 82)
            for day in range(7)
            for hour in (1, 9, 13)
        ]
    )
    engine = _engine(clinic_api)
    assert "BP-CTRL-1" not in _open_alerts_after_sweep(engine, now)

    goal = {"bp_goal_systolic_mmhg": 130, "bp_goal_diastolic_mmhg": 80}
    assert clinic_api.client.put(URL, json=goal, headers=clinic_api.auth("a@c1.example")).status_code == 200

    assert _open_alerts_after_sweep(engine, now)["BP-CTRL-1"] == "warning"


def test_insulin_makes_four_days_without_a_reading_stale(clinic_api: ClinicApi) -> None:
    """DQ-01 ([58] DEFAULT): no reading for 7 days (stable) or 3 days (titration or insulin), then a
    warning instead of information."""
    now = datetime.now(UTC).replace(microsecond=0)
    clinic_api.services.reading_store.write_batch([bp_reading("p-1", now - timedelta(days=4), 128, 78)])
    engine = _engine(clinic_api)
    assert "DQ-01" not in _open_alerts_after_sweep(engine, now)

    on_insulin = {"on_insulin": True}
    assert (
        clinic_api.client.put(URL, json=on_insulin, headers=clinic_api.auth("a@c1.example")).status_code
        == 200
    )

    assert _open_alerts_after_sweep(engine, now)["DQ-01"] == "warning"

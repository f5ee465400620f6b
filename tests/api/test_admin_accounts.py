"""Clinic administration through the API: the clinic's settings and accounts, the one-time password
code, the administrator-only rule and tenancy, over a real clinic database."""

from __future__ import annotations

from .admin_helpers import ADMIN_1, ADMIN_2, DOCTOR_A, allowed_writes, audit_entries, refused, row_counts
from .conftest import ClinicApi

ACCOUNTS = "/api/v1/admin/accounts"
RESET = "/api/v1/auth/password-reset"


def _new_nurse(api: ClinicApi) -> dict[str, object]:
    response = api.client.post(
        ACCOUNTS,
        headers=api.auth(ADMIN_1),
        json={"email": "Nurse@C1.example", "display_name": "Nurse Zhao", "roles": ["clinic_staff"]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_only_clinic_administrators_may_administer(clinic_api: ClinicApi) -> None:
    """A family doctor is refused with 403 `forbidden`, the attempt is audited, nothing changes."""
    refused(clinic_api, "GET", ACCOUNTS, DOCTOR_A, 403, "forbidden")
    refused(clinic_api, "POST", "/api/v1/admin/patients/p-1/discharge", DOCTOR_A, 403, "forbidden")
    denials = audit_entries(clinic_api, action="administer", outcome="denied")
    assert [(e.actor, e.details["path"]) for e in denials] == [
        ("dr-a", ACCOUNTS),
        ("dr-a", "/api/v1/admin/patients/p-1/discharge"),
    ]


def test_a_new_account_sets_its_own_password_with_a_one_time_code(clinic_api: ClinicApi) -> None:
    """The administrator never learns the password: the holder uses the code once, then signs in."""
    created = _new_nurse(clinic_api)
    account, code = created["account"], created["reset_code"]
    assert isinstance(account, dict) and isinstance(code, dict)
    assert (account["email"], account["roles"], account["active"]) == (
        "nurse@c1.example",
        ["clinic_staff"],
        True,
    )
    user_id = account["user_id"]
    assert allowed_writes(clinic_api)[-2:] == [
        ("admin-1", "create_account", user_id),
        ("admin-1", "issue_password_reset", user_id),
    ]

    response = clinic_api.client.post(
        RESET, json={"code": code["code"], "new_password": "a long new password"}
    )
    assert response.status_code == 204, response.text
    assert clinic_api.token("nurse@c1.example", "a long new password")
    assert audit_entries(clinic_api, action="reset_password")[-1].actor == user_id

    again = clinic_api.client.post(RESET, json={"code": code["code"], "new_password": "another new password"})
    assert (again.status_code, again.json()["code"]) == (422, "admin.reset_code_invalid")
    assert audit_entries(clinic_api, action="reset_password")[-1].outcome == "denied"


def test_a_short_password_keeps_the_code_usable(clinic_api: ClinicApi) -> None:
    """A password under 12 characters is refused before the code is spent."""
    code = _new_nurse(clinic_api)["reset_code"]
    assert isinstance(code, dict)
    short = clinic_api.client.post(RESET, json={"code": code["code"], "new_password": "short"})
    assert (short.status_code, short.json()["code"], short.json()["field"]) == (
        422,
        "admin.password_length",
        "new_password",
    )
    ok = clinic_api.client.post(RESET, json={"code": code["code"], "new_password": "long enough now"})
    assert ok.status_code == 204


def test_another_clinic_s_account_is_absent(clinic_api: ClinicApi) -> None:
    """Clinic c2's administrator gets 404 for c1's doctor, and changes nothing."""
    for method, url, body in (
        ("PATCH", f"{ACCOUNTS}/dr-a", {"display_name": "X"}),
        ("PUT", f"{ACCOUNTS}/dr-a/roles", {"roles": ["clinic_admin"]}),
        ("POST", f"{ACCOUNTS}/dr-a/deactivate", None),
        ("POST", f"{ACCOUNTS}/dr-a/unlock", None),
        ("POST", f"{ACCOUNTS}/dr-a/password-reset", None),
    ):
        refused(clinic_api, method, url, ADMIN_2, 404, "admin.not_found", json=body)
    listed = clinic_api.client.get(ACCOUNTS, headers=clinic_api.auth(ADMIN_2)).json()
    assert [a["user_id"] for a in listed] == ["admin-2"]


def test_deactivation_ends_sign_in_and_tokens_at_once(clinic_api: ClinicApi) -> None:
    """A deactivated doctor's token stops working; reactivated, they sign in again; both audited."""
    doctor = clinic_api.auth(DOCTOR_A)
    response = clinic_api.client.post(f"{ACCOUNTS}/dr-a/deactivate", headers=clinic_api.auth(ADMIN_1))
    assert response.status_code == 200 and response.json()["active"] is False
    assert clinic_api.client.get("/api/v1/patients", headers=doctor).status_code == 401
    refused(clinic_api, "POST", f"{ACCOUNTS}/dr-a/deactivate", ADMIN_1, 409, "admin.account_inactive")
    assert (
        clinic_api.client.post(f"{ACCOUNTS}/dr-a/reactivate", headers=clinic_api.auth(ADMIN_1)).status_code
        == 200
    )
    assert clinic_api.token(DOCTOR_A)
    assert [w[1] for w in allowed_writes(clinic_api)[-2:]] == ["deactivate_account", "reactivate_account"]


def test_the_last_administrator_and_a_taken_e_mail_are_refused(clinic_api: ClinicApi) -> None:
    """The clinic keeps an administrator; one e-mail address, one account; nothing changes."""
    refused(
        clinic_api,
        "PUT",
        f"{ACCOUNTS}/admin-1/roles",
        ADMIN_1,
        409,
        "admin.last_admin",
        json={"roles": ["family_doctor"]},
    )
    body = refused(
        clinic_api,
        "POST",
        ACCOUNTS,
        ADMIN_1,
        409,
        "admin.email_taken",
        json={"email": "B@c1.example", "display_name": "Dup", "roles": ["family_doctor"]},
    )
    assert body["field"] == "email" and "b@c1" not in body["detail"]
    refused(
        clinic_api,
        "POST",
        ACCOUNTS,
        ADMIN_1,
        422,
        "validation",
        json={"email": "x@y.z", "display_name": "N", "roles": []},
    )


def test_roles_change_and_are_audited_from_and_to(clinic_api: ClinicApi) -> None:
    """A doctor who also administers the clinic: both roles, the change audited."""
    response = clinic_api.client.put(
        f"{ACCOUNTS}/dr-b/roles",
        headers=clinic_api.auth(ADMIN_1),
        json={"roles": ["clinic_admin", "family_doctor"]},
    )
    assert response.json()["roles"] == ["family_doctor", "clinic_admin"]
    [entry] = audit_entries(clinic_api, action="set_roles")
    assert entry.details == {"from": ["family_doctor"], "to": ["clinic_admin", "family_doctor"]}


def test_clinic_settings_change_and_an_unknown_zone_is_refused(clinic_api: ClinicApi) -> None:
    """Profile, zone and glucose unit change together, audited; a misspelt zone changes nothing."""
    url = "/api/v1/admin/clinic"
    body = refused(
        clinic_api, "PATCH", url, ADMIN_1, 422, "admin.unknown_timezone", json={"timezone": "Asia/Shangai"}
    )
    assert body["field"] == "timezone"
    response = clinic_api.client.patch(
        url,
        headers=clinic_api.auth(ADMIN_1),
        json={"guideline_profile": "us", "timezone": "America/Chicago", "glucose_unit": "mg/dL"},
    )
    assert response.json() == {
        "clinic_id": "c1",
        "name": "Clinic One",
        "guideline_profile": "us",
        "timezone": "America/Chicago",
        "glucose_unit": "mg/dL",
        "readings_retention_days": None,
        "readings_retention_min_days": 90,
        "readings_retention_max_days": 730,
    }
    [entry] = audit_entries(clinic_api, action="update_clinic_settings", outcome="allowed")
    assert set(entry.details["changed"]) == {"default_profile", "timezone", "glucose_unit"}
    other = clinic_api.client.get(url, headers=clinic_api.auth(ADMIN_2)).json()
    assert (other["clinic_id"], other["timezone"]) == ("c2", "UTC")


def test_unlock_clears_failed_logins(clinic_api: ClinicApi) -> None:
    """Three wrong passwords are cleared by an administrator, audited with the count."""
    for _ in range(3):
        clinic_api.client.post(
            "/api/v1/auth/token", data={"username": DOCTOR_A, "password": "wrong password!"}
        )
    before = row_counts(clinic_api)
    response = clinic_api.client.post(f"{ACCOUNTS}/dr-a/unlock", headers=clinic_api.auth(ADMIN_1))
    assert response.json()["failed_logins_cleared"] == 3
    assert response.json()["account"]["failed_logins"] == 0
    assert row_counts(clinic_api) == before
    assert audit_entries(clinic_api, action="unlock_account")[-1].details == {"failed_logins": 3}


def test_refused_codes_from_one_address_are_throttled(clinic_api: ClinicApi) -> None:
    """After 10 refused codes the next attempt gets 429 with Retry-After, and is not checked."""
    for _ in range(10):
        wrong = clinic_api.client.post(
            RESET, json={"code": "AAAAA-AAAAA-AAAAA-AAAAA", "new_password": "x" * 12}
        )
        assert wrong.json()["code"] == "admin.reset_code_invalid"
    code = _new_nurse(clinic_api)["reset_code"]
    assert isinstance(code, dict)
    throttled = clinic_api.client.post(
        RESET, json={"code": code["code"], "new_password": "a long new password"}
    )
    assert (throttled.status_code, throttled.json()["code"]) == (429, "auth.throttled")
    assert int(throttled.headers["Retry-After"]) > 0
    assert len(audit_entries(clinic_api, action="reset_password", outcome="denied")) == 10

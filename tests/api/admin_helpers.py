"""Helpers of the administration API tests: who calls, and what the clinic database holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from storage.clinic.models import (
    AuditLogEntry,
    CareTeamMember,
    Clinic,
    Gateway,
    Meter,
    MeterBinding,
    PasswordResetCode,
    Patient,
    User,
    UserRoleGrant,
)

from .conftest import ClinicApi

ADMIN_1 = "admin@c1.example"  # clinic c1's administrator
ADMIN_2 = "admin@c2.example"  # clinic c2's administrator
DOCTOR_A = "a@c1.example"
TABLES = (
    Clinic,
    User,
    UserRoleGrant,
    Patient,
    CareTeamMember,
    Gateway,
    Meter,
    MeterBinding,
    PasswordResetCode,
)


def row_counts(api: ClinicApi) -> dict[str, int]:
    """Rows of every table an administrative change may touch (the audit log apart)."""
    with api.services.clinic_sessions() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0 for t in TABLES}


def audit_entries(api: ClinicApi, **where: Any) -> list[AuditLogEntry]:
    with api.services.clinic_sessions() as session:
        query = select(AuditLogEntry).order_by(AuditLogEntry.audit_id)
        for name, value in where.items():
            query = query.where(getattr(AuditLogEntry, name) == value)
        return list(session.scalars(query))


def allowed_writes(api: ClinicApi) -> list[tuple[str, str, str | None]]:
    """(actor, action, object id) of every allowed entry that is not a read or a login."""
    return [
        (e.actor, e.action, e.object_id)
        for e in audit_entries(api, outcome="allowed")
        if not e.action.startswith("read_") and e.action != "login"
    ]


def panel_ids(api: ClinicApi, email: str) -> list[str]:
    """The patient ids on a user's panel."""
    page = api.client.get("/api/v1/patients", headers=api.auth(email)).json()
    return [row["patient_id"] for row in page["patients"]]


def refused(
    api: ClinicApi, method: str, url: str, email: str, status: int, code: str, **kwargs: Any
) -> dict[str, Any]:
    """Call, check the refusal's status and code, and that no table changed and no allowed entry was
    written; returns the body."""
    before, writes = row_counts(api), allowed_writes(api)
    response = api.client.request(method, url, headers=api.auth(email), **kwargs)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert row_counts(api) == before
    assert allowed_writes(api) == writes
    return body

"""GET /api/v1/audit: the clinic's audit trail, for its administrators (HIPAA §164.312(b): "record and
examine activity").

Only `clinic_admin` may read it, and only their own clinic's entries (filed under the acting user's
clinic). Anyone else gets 403, itself audited ("read_audit", denied). A read is audited as well, with
the number of entries returned. Filters match `vitalgate admin audit`; newest first, at most
MAX_PAGE entries a page; `before_audit_id` (the last id of a page) gives the next page.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.deps import CurrentUser, Services, commit_audited, commit_denial
from api.errors import ApiError, ErrorCode, validation_error
from api.limits import BoundedDatetime
from storage.clinic.audit import AuditOutcome, audit_entry_json, find_audit_entries, record_audit
from storage.clinic.models import UserRole

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

DEFAULT_PAGE = 100
MAX_PAGE = 500  # the page cap (OWASP API4); page on with before_audit_id
OPAQUE_ID = r"^[A-Za-z0-9_|.:-]{1,200}$"  # user, patient, alert ids and meter keys


class AuditEntryOut(BaseModel):
    audit_id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    clinic_id: str | None
    outcome: AuditOutcome
    details: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_before_audit_id: int | None  # pass as before_audit_id for the next page; None: no more


def _read_trail(
    sessions: sessionmaker[Session],
    user: Principal,
    filters: dict[str, Any],
    limit: int,
) -> list[dict[str, Any]] | None:
    """The caller's clinic's entries, or None for a caller who is not its administrator (audited)."""
    with sessions() as session:
        if UserRole.CLINIC_ADMIN not in user.roles:
            commit_denial(
                session,
                actor=user.user_id,
                action="read_audit",
                object_type="audit_log",
                object_id=None,
                clinic_id=user.clinic_id,
                details={"reason": "not_clinic_admin"},
            )
            return None
        entries = [
            audit_entry_json(e)
            for e in find_audit_entries(session, clinic_id=user.clinic_id, limit=limit, **filters)
        ]
        record_audit(
            session,
            actor=user.user_id,
            action="read_audit",
            object_type="audit_log",
            object_id=None,
            clinic_id=user.clinic_id,
            details={"count": len(entries)},
        )
        commit_audited(session, "read_audit")
        return entries


@router.get("")
async def audit_trail(
    user: CurrentUser,
    services: Services,
    patient_id: Annotated[
        str | None, Query(pattern=OPAQUE_ID, description="entries about this patient")
    ] = None,
    object_type: Annotated[str | None, Query(max_length=32)] = None,
    object_id: Annotated[str | None, Query(pattern=OPAQUE_ID)] = None,
    actor: Annotated[str | None, Query(pattern=OPAQUE_ID)] = None,
    since: Annotated[BoundedDatetime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
    outcome: AuditOutcome | None = None,
    before_audit_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> AuditPage:
    if patient_id is not None and (object_id is not None or object_type not in (None, "patient")):
        raise validation_error(
            "patient_id",
            "conflicting_filters",
            "patient_id names the object: give it or object_id",
            location="query",
        )
    filters: dict[str, Any] = {
        "object_type": "patient" if patient_id is not None else object_type,
        "object_id": patient_id if patient_id is not None else object_id,
        "actor": actor,
        "since": since,
        "outcome": outcome,
        "before_audit_id": before_audit_id,
    }
    entries = await asyncio.to_thread(_read_trail, services.clinic_sessions, user, filters, limit)
    if entries is None:
        raise ApiError(ErrorCode.FORBIDDEN, "only clinic administrators may read the audit log")
    out = [AuditEntryOut.model_validate(e) for e in entries]
    more = len(out) == limit
    return AuditPage(entries=out, next_before_audit_id=out[-1].audit_id if more and out else None)

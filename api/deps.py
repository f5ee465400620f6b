"""What every route needs: the services handed to the app at start, the current user, and the
check that the user may see a patient (care-team membership, or an administrator of the clinic)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import AuthenticationError, Principal, read_token
from storage.clinic.models import CareTeamMember, Patient, User, UserRole
from storage.readings.protocol import ReadingStore

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


@dataclass(slots=True)
class ApiServices:
    """Handed to `create_app` by the composition root; no globals."""

    reading_store: ReadingStore
    clinic_sessions: sessionmaker[Session]
    jwt_secret: str
    access_token_ttl_s: int = 8 * 3600
    # Optional extras wired by the composition root (alert service, ingest counters, event hub).
    extras: dict[str, Any] = field(default_factory=dict)


def get_services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


Services = Annotated[ApiServices, Depends(get_services)]


def _current_account(sessions: sessionmaker[Session], claimed: Principal) -> Principal | None:
    """The account as it is now: a deactivated user or a revoked role takes effect at once, not when
    the token expires (OWASP API2, broken authentication)."""
    with sessions() as session:
        user = session.get(User, claimed.user_id)
        if user is None or not user.active or user.clinic_id != claimed.clinic_id:
            return None
        return Principal(user.user_id, user.clinic_id, frozenset(grant.role for grant in user.roles))


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)], services: Services) -> Principal:
    unauthorised = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="invalid or expired token",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        claimed = read_token(token, services.jwt_secret)
    except AuthenticationError as exc:
        raise unauthorised from exc
    current = await asyncio.to_thread(_current_account, services.clinic_sessions, claimed)
    if current is None:
        raise unauthorised
    return current


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def _may_see_patient(sessions: sessionmaker[Session], user: Principal, patient_id: str) -> bool:
    with sessions() as session:
        patient = session.get(Patient, patient_id)
        if patient is None or patient.clinic_id != user.clinic_id:
            return False
        if UserRole.CLINIC_ADMIN in user.roles:
            return True
        member = session.scalar(
            select(CareTeamMember.care_team_member_id).where(
                CareTeamMember.patient_id == patient_id, CareTeamMember.user_id == user.user_id
            )
        )
        return member is not None


async def require_patient_access(patient_id: str, user: CurrentUser, services: Services) -> str:
    """The patient id, if the user may see this patient; 404 otherwise (no existence leak)."""
    allowed = await asyncio.to_thread(_may_see_patient, services.clinic_sessions, user, patient_id)
    if not allowed:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="patient not found")
    return patient_id


PatientAccess = Annotated[str, Depends(require_patient_access)]

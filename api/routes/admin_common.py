"""What every administration route shares: the clinic administrator check, and running a change with
its audit entry in one transaction off the event loop.

- Only `clinic_admin` may call /api/v1/admin/...: anyone else gets 403 `forbidden`, audited as a
  denied "administer" entry.
- A change runs in one thread hop and one transaction with its audit entry (storage.clinic.
  administration writes it): no trail, no change (503). A refusal (`AdministrationError`) changes
  nothing, is audited as denied with its code, and answers 404 (`admin.not_found`: absent, or another
  clinic's), 409 (a conflict with the present state) or 422 (input that can never be accepted).
- A listing of the clinic's accounts or patients (names) is audited as one entry with a count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final, TypeVar

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.deps import ApiServices, CurrentUser, Services, commit_audited, commit_denial
from api.errors import ApiError, ErrorCode
from storage.clinic.administration.common import Actor, AdminErrorKind, AdministrationError
from storage.clinic.audit import record_audit
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.models import UserRole

logger = logging.getLogger(__name__)

T = TypeVar("T")

ADMIN_PREFIX: Final = "/api/v1/admin"
_STATUS: Final = {AdminErrorKind.NOT_FOUND: 404, AdminErrorKind.CONFLICT: 409, AdminErrorKind.INVALID: 422}


def _refuse_non_admin(sessions: sessionmaker[Session], user: Principal, method: str, path: str) -> None:
    with sessions() as session:
        commit_denial(
            session,
            actor=user.user_id,
            action="administer",
            object_type="clinic",
            object_id=user.clinic_id,
            clinic_id=user.clinic_id,
            details={"reason": "not_clinic_admin", "method": method, "path": path},
        )


async def require_clinic_admin(request: Request, user: CurrentUser, services: Services) -> Actor:
    """The caller as an administration actor in their clinic; 403 `forbidden` for anyone else."""
    if UserRole.CLINIC_ADMIN not in user.roles:
        await asyncio.to_thread(
            _refuse_non_admin, services.clinic_sessions, user, request.method, request.url.path
        )
        raise ApiError(ErrorCode.FORBIDDEN, "only clinic administrators may do this")
    return Actor(user.user_id, user.clinic_id)


AdminActor = Annotated[Actor, Depends(require_clinic_admin)]


def api_error(exc: AdministrationError) -> ApiError:
    """The API's answer to a refused change: its code, its field, and a status by its kind."""
    return ApiError(ErrorCode(exc.code), str(exc), field=exc.field, status_code=_STATUS[exc.kind])


@dataclass(frozen=True, slots=True)
class Audited:
    """The action a refusal is recorded under, and the object it was about."""

    action: str
    object_type: str
    object_id: str | None = None


def _deny(sessions: sessionmaker[Session], actor: Actor, audited: Audited, code: str) -> None:
    with sessions() as session:
        commit_denial(
            session,
            actor=actor.actor_id,
            action=audited.action,
            object_type=audited.object_type,
            object_id=audited.object_id,
            clinic_id=actor.clinic_id,
            details={"code": code},
        )


async def record_refusal(services: ApiServices, actor: Actor, audited: Audited, code: str) -> None:
    """Audit a refusal decided outside the clinic database (the broker's) as a denied entry."""
    await asyncio.to_thread(_deny, services.clinic_sessions, actor, audited, code)


class ChangedMeanwhile(Exception):
    """The change collided with another one committed first (a unique key, e.g. two bindings)."""


def _write(
    sessions: sessionmaker[Session], actor: Actor, audited: Audited, change: Callable[[Session], T]
) -> T:
    with sessions() as session:
        try:
            result = change(session)
        except AdministrationError as exc:
            session.rollback()
            commit_denial(
                session,
                actor=actor.actor_id,
                action=audited.action,
                object_type=audited.object_type,
                object_id=audited.object_id,
                clinic_id=actor.clinic_id,
                details={"code": exc.code},
            )
            raise
        try:
            commit_audited(session, audited.action)
        except ClinicDatabaseUnavailableError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ChangedMeanwhile() from exc
            raise
        return result


async def run_change(
    services: ApiServices, actor: Actor, audited: Audited, change: Callable[[Session], T]
) -> T:
    """Run `change(session)` (which writes its audit entry) and commit, off the event loop. Build
    the answer inside `change`: its objects are not loaded after the session ends."""
    try:
        return await asyncio.to_thread(_write, services.clinic_sessions, actor, audited, change)
    except AdministrationError as exc:
        raise api_error(exc) from exc
    except ChangedMeanwhile as exc:
        raise ApiError(ErrorCode.CONFLICT, "another change came first; reload and try again") from exc


def _read(
    sessions: sessionmaker[Session],
    actor: Actor,
    action: str | None,
    read: Callable[[Session], T],
    count: Callable[[T], int],
    denied_as: str,
) -> T:
    with sessions() as session:
        try:
            result = read(session)
        except AdministrationError as exc:
            session.rollback()
            commit_denial(
                session,
                actor=actor.actor_id,
                action=action or denied_as,
                object_type="clinic",
                object_id=actor.clinic_id,
                clinic_id=actor.clinic_id,
                details={"code": exc.code},
            )
            raise
        if action is not None:
            record_audit(
                session,
                actor=actor.actor_id,
                action=action,
                object_type="clinic",
                object_id=actor.clinic_id,
                clinic_id=actor.clinic_id,
                details={"count": count(result)},
            )
            commit_audited(session, action)
        return result


async def run_read(
    services: ApiServices,
    actor: Actor,
    read: Callable[[Session], T],
    *,
    audited_as: str | None = None,
    count: Callable[[T], int] = lambda _result: 1,
    denied_as: str = "read_admin",
) -> T:
    """Run `read(session)` off the event loop; with `audited_as`, record it as one entry with a count
    before anything is returned (no trail, no answer). A refusal (e.g. another clinic's object) is
    recorded as denied, under `audited_as` or else `denied_as`."""
    try:
        return await asyncio.to_thread(
            _read, services.clinic_sessions, actor, audited_as, read, count, denied_as
        )
    except AdministrationError as exc:
        raise api_error(exc) from exc

"""What every route needs: the services handed to the app at start, the current user, the check that
the user may see a patient (care-team membership, or an administrator of the clinic), and the audit
trail those checks write (HIPAA §164.312(b); reliability.md scenario 13: every denial is audited).

Audit entries are written in the same thread hop and database transaction as the check they record,
one INSERT each. What happens when that write fails:

- a denial stands: the caller gets the same 401/403/404 it would have got, and the failed write is
  logged (ids and the error class only). Turning a refusal into a 5xx would tell a prober something,
  and the refusal already protects the record;
- an allowed read or change fails closed: no trail, no data. The request gets 503 (the app's handler
  for `ClinicDatabaseUnavailableError`) and nothing is returned or changed. The audit write shares the
  access check's transaction on the same database, so this costs availability only when the clinic
  database itself is failing, when the check would fail anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.auth import AuthenticationError, Principal, read_token
from api.broker_accounts import GatewayAccounts
from api.errors import ApiError, ErrorCode
from api.limits import MAX_REQUEST_BODY_BYTES
from api.login_throttle import LoginThrottle
from api.refused_tokens import RefusedTokens
from api.services import AlertApi, FleetCommands
from api.sessions import (
    ACCESS_TOKEN_TTL_S,
    REFRESH_TOKEN_TTL_S,
    SESSION_MAX_S,
    SessionPolicy,
    session_refusal,
)
from storage.clinic.audit import AuditOutcome, record_audit
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.models import CareTeamMember, Patient, User, UserRole, UserSession
from storage.readings.protocol import ReadingStore

logger = logging.getLogger(__name__)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


class GatewayConfigPublisher(Protocol):
    """Publishes a gateway's bindings, as the clinic database holds them now, on its retained config
    topic (DESIGN.md, MQTT); raises when the broker did not take it."""

    async def publish_config(self, gateway_id: str) -> None: ...


@dataclass(slots=True)
class ApiServices:
    """Handed to `create_app` by the composition root; no globals."""

    reading_store: ReadingStore
    clinic_sessions: sessionmaker[Session]
    jwt_secret: str
    access_token_ttl_s: int = ACCESS_TOKEN_TTL_S
    refresh_token_ttl_s: int = REFRESH_TOKEN_TTL_S
    session_max_s: int = SESSION_MAX_S
    # Request bodies above this are refused with 413 before they are read (api/security.py).
    max_request_body_bytes: int = MAX_REQUEST_BODY_BYTES
    # Reverse proxies whose X-Forwarded-For / -Proto are believed (addresses or networks); none by
    # default, so no client can choose the address the login throttle counts it under.
    trusted_proxies: tuple[str, ...] = ()
    # Strict-Transport-Security on every response, not only those to requests that came over TLS.
    hsts: bool = False
    # The longest readings retention a clinic's administrator may set (api/routes/admin_clinic.py;
    # None: no ceiling): retention.clinic_readings_max_days, by default retention.readings_days,
    # whose default (730 days) this is.
    clinic_readings_max_days: int | None = 730

    @property
    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(self.access_token_ttl_s, self.refresh_token_ttl_s, self.session_max_s)

    # Wired by the composition root (vitalgate.wiring) where this process serves them:
    # the alert inbox, actions and live events (api/routes/alerts.py; None: 503),
    alerts: AlertApi | None = None
    # the gateways' commands (api/routes/admin_fleet.py; None: decisions are recorded, not sent),
    fleet: FleetCommands | None = None
    # and Prometheus text exposition (0.0.4) for /metrics (api/routes/ops.py).
    metrics: list[Callable[[], str]] = field(default_factory=list)
    # Failed-login counters of this API process (api/login_throttle.py: per process, in memory).
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Bearer tokens this API process refused, by reason (api/refused_tokens.py).
    refused_tokens: RefusedTokens = field(default_factory=RefusedTokens)
    # Gateways' broker accounts (api/broker_accounts.py); None: this process provisions none (503).
    gateway_accounts: GatewayAccounts | None = None
    # Sends a gateway its bindings after an administrative change; None: not sent from here.
    gateway_configs: GatewayConfigPublisher | None = None


def get_services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


Services = Annotated[ApiServices, Depends(get_services)]


def commit_denial(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | None,
    clinic_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write a denied entry and commit it. A failed write is logged and the denial stands."""
    record_audit(
        session,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        clinic_id=clinic_id,
        outcome=AuditOutcome.DENIED,
        details=details,
    )
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.error(
            "audit entry for a denial not written",
            extra={"action": action, "object_type": object_type, "error": type(exc).__name__},
        )


def commit_audited(session: Session, action: str) -> None:
    """Commit an allowed entry (and whatever else the session holds); fail closed when that fails."""
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.error("audit entry not written", extra={"action": action, "error": type(exc).__name__})
        # The app answers 503 with a generic message; the SQL error (no bound values: the engine
        # hides them) stays in the log.
        raise ClinicDatabaseUnavailableError(f"audit entry for {action} not written") from exc


def _commit_listing(
    sessions: sessionmaker[Session], user: Principal, action: str, details: dict[str, Any]
) -> None:
    with sessions() as session:
        record_audit(
            session,
            actor=user.user_id,
            action=action,
            object_type="clinic",
            object_id=user.clinic_id,
            clinic_id=user.clinic_id,
            details=details,
        )
        commit_audited(session, action)


async def audit_listing(services: ApiServices, user: Principal, action: str, details: dict[str, Any]) -> None:
    """Audit a read that spans the caller's patients (an inbox, a live stream) as one entry, with
    counts rather than patient ids; before anything is returned, so no trail means no answer (503)."""
    await asyncio.to_thread(_commit_listing, services.clinic_sessions, user, action, details)


def _current_account(sessions: sessionmaker[Session], claimed: Principal) -> Principal | None:
    """The account as it is now, if the token's session still stands for it: a signed-out session,
    a deactivated user or a changed role takes effect at once, not when the token expires (OWASP
    API2, broken authentication; api/sessions.py). One SELECT by primary keys, then the roles. A
    validly signed token that no longer stands for its account is an audited denial."""
    with sessions() as session:
        # The account and its session in one SELECT (the roles follow, as for any account read).
        row = session.execute(
            select(User, UserSession)
            .outerjoin(
                UserSession,
                and_(UserSession.session_id == claimed.session_id, UserSession.user_id == User.user_id),
            )
            .where(User.user_id == claimed.user_id)
        ).first()
        user, signed_in = (row[0], row[1]) if row is not None else (None, None)
        reason = session_refusal(user, signed_in, claimed, datetime.now(UTC))
        if reason is not None or user is None:
            commit_denial(
                session,
                actor=claimed.user_id,
                action="use_token",
                object_type="user",
                object_id=claimed.user_id,
                clinic_id=claimed.clinic_id,
                details={"reason": reason},
            )
            return None
        return claimed


def session_stands(services: ApiServices, user: Principal) -> bool:
    """Whether `user`'s session still stands (the same check as every request's, audited the same
    way when it does not): for a live-event stream, which outlives the request that opened it.
    Blocking: call it from a worker thread."""
    return _current_account(services.clinic_sessions, user) is not None


async def session_is_current(services: ApiServices, user: Principal) -> bool:
    """`session_stands`, from the event loop."""
    return await asyncio.to_thread(session_stands, services, user)


def _unauthorised(code: ErrorCode) -> ApiError:
    # One sentence for every refused token: it says no more than the code does.
    return ApiError(code, "invalid or expired token", headers={"WWW-Authenticate": "Bearer"})


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)], services: Services) -> Principal:
    """The signed-in user. A token past its time is `auth.expired` (the web app signs the user in
    again and returns to where they were); any other refused token is `auth.required`."""
    try:
        claimed = read_token(token, services.jwt_secret)
    except AuthenticationError as exc:
        due = services.refused_tokens.record(exc.reason)
        if due:  # never the token, nor anything from inside it
            logger.warning("bearer tokens refused", extra={"reason": exc.reason, "count": due})
        code = ErrorCode.AUTH_EXPIRED if exc.reason == "expired" else ErrorCode.AUTH_REQUIRED
        raise _unauthorised(code) from exc
    current = await asyncio.to_thread(_current_account, services.clinic_sessions, claimed)
    if current is None:
        raise _unauthorised(ErrorCode.AUTH_REQUIRED)
    return current


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def _may_see_patient(session: Session, user: Principal, patient_id: str) -> bool:
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


@dataclass(frozen=True, slots=True)
class AuditedAccess:
    """What a patient access check records: the action, and the object it names (the patient unless
    the route acts on something of the patient's, e.g. an alert)."""

    action: str
    object_type: str = "patient"
    object_id: str | None = None  # None: the patient id
    record_allowed: bool = True  # False: only a denial is recorded (the route records its own entry)
    details: dict[str, Any] | None = None


def _check_patient_access(
    sessions: sessionmaker[Session], user: Principal, patient_id: str | None, access: AuditedAccess
) -> bool:
    """Whether `user` may see `patient_id` (None: a record that is not the user's to see), with its
    audit entry, in one transaction."""
    with sessions() as session:
        allowed = patient_id is not None and _may_see_patient(session, user, patient_id)
        object_id = access.object_id if access.object_id is not None else patient_id
        if not allowed:
            commit_denial(
                session,
                actor=user.user_id,
                action=access.action,
                object_type=access.object_type,
                object_id=object_id,
                clinic_id=user.clinic_id,
            )
            return False
        if access.record_allowed:
            details = dict(access.details or {})
            if access.object_type != "patient":
                details["patient_id"] = patient_id
            record_audit(
                session,
                actor=user.user_id,
                action=access.action,
                object_type=access.object_type,
                object_id=object_id,
                clinic_id=user.clinic_id,
                details=details,
            )
            commit_audited(session, access.action)
        return True


async def check_patient_access(
    services: ApiServices, user: Principal, patient_id: str | None, access: AuditedAccess
) -> bool:
    """`_check_patient_access` off the event loop (one thread hop, one transaction)."""
    return await asyncio.to_thread(_check_patient_access, services.clinic_sessions, user, patient_id, access)


def patient_access(action: str) -> Callable[..., Coroutine[Any, Any, str]]:
    """A dependency: the patient id, if the user may see this patient, 404 otherwise (no existence
    leak, OWASP API1). Either way `action` (e.g. "read_readings") is audited on the patient, allowed or
    denied, in the same transaction as the check."""

    async def dependency(patient_id: str, user: CurrentUser, services: Services) -> str:
        if not await check_patient_access(services, user, patient_id, AuditedAccess(action)):
            raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
        return patient_id

    return dependency


def client_address(request: Request) -> str:
    """The peer address as the ASGI server reports it (a proxy's, unless the server trusts its
    forwarded headers)."""
    return request.client.host if request.client else "unknown"

"""Sign-in, session renewal and sign-out (api/sessions.py says what a session is).

- POST /api/v1/auth/token    e-mail and password for an access token and a refresh token (OAuth2
                             password flow; a new session)
- POST /api/v1/auth/refresh  a refresh token for the next pair (rotation; a reused one ends the session)
- POST /api/v1/auth/logout   ends the session of the bearer token (even an expired one) or of the
                             refresh token given; 204 whether or not there was one to end

Sign-in is throttled (api/login_throttle.py): past the failed-login thresholds a login gets 429 with
Retry-After and the password is not checked. And locked: an account whose last
LOCK_AFTER_FAILED_LOGINS logins all failed gets 403 until a clinic administrator unlocks it
(`vitalgate admin unlock-account`); the count lives in the clinic database, so it holds across API
processes and restarts, which the throttle's in-memory windows do not (NIST SP 800-63B §5.2.2).
Every outcome is audited as action "login" (object "user"): a success under the user's id; a failure
under the account's user id when the e-mail matches one, else "unknown"; throttled attempts with
{"reason": "throttled"}, one entry and one log line per throttling window (the first refusal of
it), so a flood of refused attempts cannot fill the audit log. Session changes are audited as
"refresh_session" (denied when refused: the reason; a reused token as "refresh_reused") and
"logout". Neither the e-mail address nor anything derived from the password or a token is ever
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Body, Depends, Form, Request, status
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.auth import AuthenticationError, Principal, read_token, verify_password
from api.deps import ApiServices, Services, client_address, commit_audited, commit_denial
from api.errors import ApiError, ErrorCode
from api.limits import EMAIL_MAX, OPAQUE_ID_MAX, PASSWORD_MAX, SECRET_TOKEN_MAX
from api.sessions import (
    IssuedTokens,
    RefreshRefused,
    SessionPolicy,
    open_session,
    refresh_session,
    revoke_session,
    token_hash,
)
from storage.clinic.audit import record_audit
from storage.clinic.models import RefreshToken, User, UserSession

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

UNKNOWN_ACTOR = "unknown"
# NIST SP 800-63B §5.2.2: verifiers "SHALL implement a rate-limiting mechanism that effectively limits
# failed authentication attempts that can be made on the subscriber's account to no more than 100".
LOCK_AFTER_FAILED_LOGINS: Final = 100
LOCKED_DETAIL: Final = "account locked after repeated failed logins; a clinic administrator can unlock it"
SCOPE_MAX: Final = 200  # OAuth2 scopes: none are defined; room for a client that sends some

# Signing out takes the bearer token when there is one, valid or expired, and does not need it.
optional_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (OAuth2 token type, not a secret)
    expires_in: int = Field(description="seconds the access token is good for")
    refresh_token: str = Field(description="trade it at /api/v1/auth/refresh before it lapses; once only")
    refresh_expires_in: int = Field(description="seconds the refresh token is good for, if unused")

    @classmethod
    def of(cls, issued: IssuedTokens) -> Token:
        return cls(
            access_token=issued.access_token,
            expires_in=issued.access_expires_in,
            refresh_token=issued.refresh_token,
            refresh_expires_in=issued.refresh_expires_in,
        )


class SignInForm:
    """The OAuth2 password grant's form (RFC 6749 §4.3.2), every field bounded (api/limits.py)."""

    def __init__(
        self,
        username: Annotated[str, Form(max_length=EMAIL_MAX, description="the account's e-mail address")],
        password: Annotated[str, Form(max_length=PASSWORD_MAX, json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$", max_length=8)] = None,
        scope: Annotated[str, Form(max_length=SCOPE_MAX)] = "",
        client_id: Annotated[str | None, Form(max_length=OPAQUE_ID_MAX)] = None,
        client_secret: Annotated[str | None, Form(max_length=SECRET_TOKEN_MAX)] = None,
    ) -> None:
        self.username = username
        self.password = password
        self.grant_type = grant_type
        self.scopes = scope.split()
        self.client_id = client_id
        self.client_secret = client_secret


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=SECRET_TOKEN_MAX)


class LogoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, min_length=1, max_length=SECRET_TOKEN_MAX)


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str


def _find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def _deny_login(session: Session, user: User | None, details: dict[str, str]) -> None:
    """A refused login. Its actor is "unknown": whoever typed the password was not signed in, so the
    account holder's own activity (`--actor`) stays theirs. The account it was for, when the e-mail
    matches one, is the object."""
    commit_denial(
        session,
        actor=UNKNOWN_ACTOR,
        action="login",
        object_type="user",
        object_id=user.user_id if user else None,
        clinic_id=user.clinic_id if user else None,
        details=details,
    )


def _count_attempt(session: Session, user_id: str) -> int | None:
    """Count this login attempt against the account before its password is checked, and commit
    that: the account's attempts since its last success, or None when it is locked.

    One conditional UPDATE, so concurrent attempts (threads, API processes) each take their own
    count and no more than LOCK_AFTER_FAILED_LOGINS passwords are ever checked between successes.
    Counted first, the attempt stays counted whatever happens next (a crash, an audit write that
    fails); a success sets it back to 0. Fails closed (503) if the count cannot be committed."""
    count: int | None = session.execute(
        update(User)
        .where(User.user_id == user_id, User.failed_logins < LOCK_AFTER_FAILED_LOGINS)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    commit_audited(session, "login")
    return count


def _authenticate(
    sessions: sessionmaker[Session], email: str, password: str, secret: str, policy: SessionPolicy
) -> IssuedTokens | _Refusal:
    """A new session's tokens, or why not; each outcome is committed with its audit entry."""
    with sessions() as session:
        user = _find_user(session, email)
        if user is None or not user.active:
            verify_password(password, None)  # the same work as a real check: no timing difference
            reason = "unknown_account" if user is None else "account_inactive"
            _deny_login(session, user, {"reason": reason})
            return _Refusal(reason)
        user_id, clinic_id = user.user_id, user.clinic_id
        attempts = _count_attempt(session, user_id)
        if attempts is None:
            _deny_login(session, user, {"reason": "account_locked"})  # the password is not checked
            return _Refusal("account_locked")
        if not verify_password(password, user.password_hash):
            details = {"reason": "wrong_password"}
            if attempts >= LOCK_AFTER_FAILED_LOGINS:
                details["locked"] = "true"
                logger.warning("account locked after consecutive failed logins", extra={"user_id": user_id})
            _deny_login(session, user, details)
            return _Refusal("wrong_password")
        now = datetime.now(UTC)
        session.execute(
            update(User)
            .where(User.user_id == user_id)
            .values(failed_logins=0, last_login_at=now)
            .execution_options(synchronize_session=False)
        )
        issued = open_session(session, user, secret, policy, now)
        record_audit(
            session,
            actor=user_id,
            action="login",
            object_type="user",
            object_id=user_id,
            clinic_id=clinic_id,
        )
        commit_audited(session, "login")  # no trail, no token
        return issued


def _record_throttled(sessions: sessionmaker[Session], email: str, scope: str) -> None:
    """A refused attempt: attributed to the account when the e-mail matches one (one indexed SELECT
    and one INSERT; no password hashing)."""
    with sessions() as session:
        _deny_login(session, _find_user(session, email), {"reason": "throttled", "scope": scope})


@router.post("/token")
async def login(request: Request, form: Annotated[SignInForm, Depends()], services: Services) -> Token:
    throttle = services.login_throttle
    account_key = throttle.account_key(form.username)
    address = client_address(request)
    refused = throttle.begin_attempt(account_key, address)
    if refused is not None:
        if refused.first_in_window:  # one entry and one line per window, however many attempts
            await asyncio.to_thread(_record_throttled, services.clinic_sessions, form.username, refused.scope)
            logger.warning(
                "login throttled", extra={"scope": refused.scope, "retry_after_s": refused.retry_after_s}
            )
        raise ApiError(ErrorCode.AUTH_THROTTLED, headers={"Retry-After": str(refused.retry_after_s)})
    try:
        outcome = await asyncio.to_thread(
            _authenticate,
            services.clinic_sessions,
            form.username,
            form.password,
            services.jwt_secret,
            services.session_policy,
        )
    except BaseException:
        throttle.abandoned(account_key, address)
        raise
    if isinstance(outcome, _Refusal) and outcome.reason == "account_locked":
        raise ApiError(ErrorCode.AUTH_LOCKED, LOCKED_DETAIL)
    if isinstance(outcome, _Refusal):
        raise ApiError(ErrorCode.AUTH_INVALID_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(account_key, address)
    return Token.of(outcome)


def _refresh(services: ApiServices, refresh_token: str) -> IssuedTokens | RefreshRefused:
    with services.clinic_sessions() as session:
        outcome = refresh_session(
            session, refresh_token, services.jwt_secret, services.session_policy, datetime.now(UTC)
        )
        if isinstance(outcome, RefreshRefused):
            if outcome.user is not None:  # a token that named an account: its refusal is on its trail
                commit_denial(
                    session,
                    actor=outcome.user.user_id,
                    action="refresh_session",
                    object_type="user",
                    object_id=outcome.user.user_id,
                    clinic_id=outcome.user.clinic_id,
                    details={"reason": outcome.reason, "session_id": outcome.session_id},
                )
            return outcome
        user = outcome.principal
        record_audit(
            session,
            actor=user.user_id,
            action="refresh_session",
            object_type="user",
            object_id=user.user_id,
            clinic_id=user.clinic_id,
            details={"session_id": user.session_id},
        )
        commit_audited(session, "refresh_session")
        return outcome


@router.post("/refresh")
async def refresh(body: RefreshIn, services: Services) -> Token:
    """The next access token and refresh token of a session; the refresh token given is used up. A
    refresh token used a second time ends its session (RFC 9700 §4.14.2). Refused: 401 auth.required."""
    outcome = await asyncio.to_thread(_refresh, services, body.refresh_token)
    if isinstance(outcome, RefreshRefused):
        if outcome.reason == "refresh_reused":
            logger.warning("refresh token reused: session revoked", extra={"session_id": outcome.session_id})
        raise ApiError(ErrorCode.AUTH_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
    return Token.of(outcome)


def _logout(services: ApiServices, bearer: Principal | None, refresh_token: str | None) -> None:
    now = datetime.now(UTC)
    with services.clinic_sessions() as session:
        targets: list[tuple[str, str]] = []  # (session id, user id)
        if bearer is not None:
            targets.append((bearer.session_id, bearer.user_id))
        if refresh_token is not None:
            stored = session.get(RefreshToken, token_hash(refresh_token))
            owner = session.get(UserSession, stored.session_id) if stored is not None else None
            if owner is not None:
                targets.append((owner.session_id, owner.user_id))
        for session_id, user_id in dict(targets).items():
            user = session.get(User, user_id)
            if user is None or not revoke_session(session, session_id, "signed_out", now):
                continue
            record_audit(
                session,
                actor=user_id,
                action="logout",
                object_type="user",
                object_id=user_id,
                clinic_id=user.clinic_id,
                details={"session_id": session_id},
            )
        commit_audited(session, "logout")


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    services: Services,
    token: Annotated[str | None, Depends(optional_bearer)],
    body: Annotated[LogoutIn | None, Body()] = None,
) -> None:
    """End the session of the bearer token (an expired one still names its session) and/or of the
    refresh token in the body: its access tokens are refused and its refresh tokens dead from now."""
    bearer = None
    if token is not None:
        with contextlib.suppress(AuthenticationError):
            bearer = read_token(token, services.jwt_secret, verify_expiry=False)
    refresh_token = body.refresh_token if body is not None else None
    if bearer is not None or refresh_token is not None:
        await asyncio.to_thread(_logout, services, bearer, refresh_token)

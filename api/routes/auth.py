"""POST /api/v1/auth/token: exchange e-mail and password for a bearer token (OAuth2 password flow).

Throttled (api/login_throttle.py): past the failed-login thresholds a login gets 429 with Retry-After
and the password is not checked. And locked: an account whose last LOCK_AFTER_FAILED_LOGINS logins
all failed gets 403 until a clinic administrator unlocks it (`vitalgate admin unlock-account`); the
count lives in the clinic database, so it holds across API processes and restarts, which the
throttle's in-memory windows do not (NIST SP 800-63B §5.2.2). Every outcome is audited as action "login" (object "user"): a
success under the user's id; a failure under the account's user id when the e-mail matches one, else
"unknown"; a throttled attempt with {"reason": "throttled"}. Neither the e-mail address nor anything
derived from the password is ever written.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal, issue_token, verify_password
from api.deps import Services, client_address, commit_audited, commit_denial
from api.errors import ApiError, ErrorCode
from storage.clinic.audit import record_audit
from storage.clinic.models import User

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

UNKNOWN_ACTOR = "unknown"
# NIST SP 800-63B §5.2.2: verifiers "SHALL implement a rate-limiting mechanism that effectively limits
# failed authentication attempts that can be made on the subscriber's account to no more than 100".
LOCK_AFTER_FAILED_LOGINS: Final = 100
LOCKED_DETAIL: Final = "account locked after repeated failed logins; a clinic administrator can unlock it"


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (OAuth2 token type, not a secret)
    expires_in: int


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


def _authenticate(sessions: sessionmaker[Session], email: str, password: str) -> Principal | _Refusal:
    """The principal, or why not; each outcome is committed with its audit entry."""
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
        session.execute(
            update(User)
            .where(User.user_id == user_id)
            .values(failed_logins=0, last_login_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        record_audit(
            session,
            actor=user_id,
            action="login",
            object_type="user",
            object_id=user_id,
            clinic_id=clinic_id,
        )
        commit_audited(session, "login")  # no trail, no token
        return Principal(user_id, clinic_id, frozenset(grant.role for grant in user.roles))


def _record_throttled(sessions: sessionmaker[Session], email: str, scope: str) -> None:
    """A refused attempt: attributed to the account when the e-mail matches one (one indexed SELECT
    and one INSERT; no password hashing)."""
    with sessions() as session:
        _deny_login(session, _find_user(session, email), {"reason": "throttled", "scope": scope})


@router.post("/token")
async def login(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], services: Services
) -> Token:
    throttle = services.login_throttle
    account_key = throttle.account_key(form.username)
    address = client_address(request)
    refused = throttle.begin_attempt(account_key, address)
    if refused is not None:
        await asyncio.to_thread(_record_throttled, services.clinic_sessions, form.username, refused.scope)
        logger.warning(
            "login throttled", extra={"scope": refused.scope, "retry_after_s": refused.retry_after_s}
        )
        raise ApiError(ErrorCode.AUTH_THROTTLED, headers={"Retry-After": str(refused.retry_after_s)})
    try:
        outcome = await asyncio.to_thread(
            _authenticate, services.clinic_sessions, form.username, form.password
        )
    except BaseException:
        throttle.abandoned(account_key, address)
        raise
    if isinstance(outcome, _Refusal) and outcome.reason == "account_locked":
        raise ApiError(ErrorCode.AUTH_LOCKED, LOCKED_DETAIL)
    if isinstance(outcome, _Refusal):
        raise ApiError(ErrorCode.AUTH_INVALID_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(account_key, address)
    token = issue_token(outcome, services.jwt_secret, services.access_token_ttl_s)
    return Token(access_token=token, expires_in=services.access_token_ttl_s)

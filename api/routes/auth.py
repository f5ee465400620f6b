"""POST /api/v1/auth/token: exchange e-mail and password for a bearer token (OAuth2 password flow).

Throttled (api/login_throttle.py): past the failed-login thresholds a login gets 429 with Retry-After
and the password is not checked. Every outcome is audited as action "login" (object "user"): a
success under the user's id; a failure under the account's user id when the e-mail matches one, else
"unknown"; a throttled attempt with {"reason": "throttled"}. Neither the e-mail address nor anything
derived from the password is ever written.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal, issue_token, verify_password
from api.deps import Services, client_address, commit_audited, commit_denial
from storage.clinic.audit import record_audit
from storage.clinic.models import User

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

UNKNOWN_ACTOR = "unknown"


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


def _authenticate(sessions: sessionmaker[Session], email: str, password: str) -> Principal | _Refusal:
    """The principal, or why not; the outcome is audited in the same transaction."""
    with sessions() as session:
        user = _find_user(session, email)
        if not verify_password(password, user.password_hash if user and user.active else None):
            if user is None:
                reason = "unknown_account"
            elif not user.active:
                reason = "account_inactive"
            else:
                reason = "wrong_password"
            _deny_login(session, user, {"reason": reason})
            return _Refusal(reason)
        assert user is not None
        user.last_login_at = datetime.now(UTC)
        record_audit(
            session,
            actor=user.user_id,
            action="login",
            object_type="user",
            object_id=user.user_id,
            clinic_id=user.clinic_id,
        )
        commit_audited(session, "login")  # no trail, no token
        return Principal(user.user_id, user.clinic_id, frozenset(grant.role for grant in user.roles))


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
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many failed logins; try again later",
            headers={"Retry-After": str(refused.retry_after_s)},
        )
    try:
        outcome = await asyncio.to_thread(
            _authenticate, services.clinic_sessions, form.username, form.password
        )
    except BaseException:
        throttle.abandoned(account_key, address)
        raise
    if isinstance(outcome, _Refusal):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="wrong e-mail or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    throttle.succeeded(account_key, address)
    token = issue_token(outcome, services.jwt_secret, services.access_token_ttl_s)
    return Token(access_token=token, expires_in=services.access_token_ttl_s)

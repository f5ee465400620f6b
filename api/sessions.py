"""Sign-in sessions: short-lived access tokens, rotating refresh tokens, revocation.

- A sign-in opens a session (`user_sessions`): an access token (JWT, `ACCESS_TOKEN_TTL_S`, naming
  the session as `sid` and the account's session version as `ver`) and a refresh token (256 random
  bits; the clinic database keeps only its SHA-256, `refresh_tokens`).
- POST /api/v1/auth/refresh trades a refresh token for a new access token and a new refresh token;
  the old one is used up. A refresh token not used within `REFRESH_TOKEN_TTL_S` lapses, and no
  session lives past `SESSION_MAX_S` from its sign-in (HIPAA §164.312(a)(2)(iii), automatic logoff).
- Reuse of a used refresh token means two parties hold it: the whole session (every token issued
  from the same sign-in, the "family") is revoked and the attempt is audited (OAuth 2.0 Security
  Best Current Practice, RFC 9700 §4.14.2: refresh token rotation). Two refreshes racing with one
  token count as reuse: the token is used up by a conditional UPDATE, so only one can win.
- Sign-out revokes the session: its access tokens are refused from the next request on, its refresh
  tokens can no longer be used.
- Deactivating or reactivating an account or changing its roles raises `users.session_version`
  (storage.clinic.models), which every request already loads: each session of an older version is
  refused at once, on every API process.

Every request checks its session in the SELECT that reads the account anyway (joined on the
session's primary key): bench/session_check.py measures what that adds to a request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import update
from sqlalchemy.orm import Session

from api.auth import Principal, issue_token
from storage.clinic.models import RefreshToken, User, UserSession

ACCESS_TOKEN_TTL_S: Final = 15 * 60
REFRESH_TOKEN_TTL_S: Final = 60 * 60
SESSION_MAX_S: Final = 12 * 3600  # one clinic shift; then sign in again
REFRESH_TOKEN_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    access_token_ttl_s: int = ACCESS_TOKEN_TTL_S
    refresh_token_ttl_s: int = REFRESH_TOKEN_TTL_S
    session_max_s: int = SESSION_MAX_S


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    principal: Principal
    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_in: int


def token_hash(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()


def _remaining_s(until: datetime, now: datetime, ttl_s: int) -> int:
    return max(1, min(ttl_s, int((until - now).total_seconds())))


def _issue(
    db: Session, principal: Principal, session: UserSession, secret: str, policy: SessionPolicy, now: datetime
) -> IssuedTokens:
    access_s = _remaining_s(session.expires_at, now, policy.access_token_ttl_s)
    refresh_s = _remaining_s(session.expires_at, now, policy.refresh_token_ttl_s)
    refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    db.add(
        RefreshToken(
            token_hash=token_hash(refresh_token),
            session_id=session.session_id,
            issued_at=now,
            expires_at=now + timedelta(seconds=refresh_s),
        )
    )
    return IssuedTokens(
        principal=principal,
        access_token=issue_token(principal, secret, access_s, now),
        access_expires_in=access_s,
        refresh_token=refresh_token,
        refresh_expires_in=refresh_s,
    )


def open_session(db: Session, user: User, secret: str, policy: SessionPolicy, now: datetime) -> IssuedTokens:
    """A new session for `user` (signed in just now) with its first tokens; the caller commits."""
    session = UserSession(
        session_id=secrets.token_hex(16),
        user_id=user.user_id,
        session_version=user.session_version,
        created_at=now,
        expires_at=now + timedelta(seconds=policy.session_max_s),
    )
    db.add(session)
    db.flush()  # the session row before its refresh token's (no ORM relationship orders them)
    principal = Principal(
        user.user_id, user.clinic_id, user.role_set, session.session_id, user.session_version
    )
    return _issue(db, principal, session, secret, policy, now)


def session_refusal(
    user: User | None, session: UserSession | None, claimed: Principal, now: datetime
) -> str | None:
    """Why the session a token names no longer stands for the account (None: it does)."""
    if user is None:
        return "account_unknown"
    if not user.active:
        return "account_inactive"
    if user.clinic_id != claimed.clinic_id:
        return "clinic_changed"
    if session is None or session.user_id != user.user_id:
        return "session_unknown"
    if session.revoked_at is not None:
        return "session_revoked"
    if session.expires_at <= now:
        return "session_expired"
    if user.session_version != session.session_version or claimed.session_version != session.session_version:
        return "account_changed"
    if user.role_set != claimed.roles:
        return "roles_changed"
    return None


def revoke_session(db: Session, session_id: str, reason: str, now: datetime) -> bool:
    """Revoke a session (no-op when already revoked); True when this call revoked it. The caller commits."""
    revoked = db.execute(
        update(UserSession)
        .where(UserSession.session_id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .returning(UserSession.session_id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return revoked is not None


@dataclass(frozen=True, slots=True)
class RefreshRefused:
    """Why a refresh token bought nothing; `session_id`/`user` when the token named a session."""

    reason: str
    session_id: str | None = None
    user: User | None = None


def refresh_session(
    db: Session, refresh_token: str, secret: str, policy: SessionPolicy, now: datetime
) -> IssuedTokens | RefreshRefused:
    """Use up `refresh_token` and issue the next pair, or refuse (a reused token revokes its
    session). The caller commits either way: a revocation must stick."""
    stored = db.get(RefreshToken, token_hash(refresh_token))
    if stored is None:
        return RefreshRefused("refresh_unknown")
    session = db.get(UserSession, stored.session_id)
    user = db.get(User, session.user_id) if session is not None else None
    if session is None or user is None:
        return RefreshRefused("session_unknown", stored.session_id)
    used_now = db.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == stored.token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.token_hash)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if used_now is None:
        revoke_session(db, session.session_id, "refresh_reused", now)
        return RefreshRefused("refresh_reused", session.session_id, user)
    if stored.expires_at <= now:
        return RefreshRefused("refresh_expired", session.session_id, user)
    claimed = Principal(
        user.user_id, user.clinic_id, user.role_set, session.session_id, session.session_version
    )
    refusal = session_refusal(user, session, claimed, now)
    if refusal is not None:
        return RefreshRefused(refusal, session.session_id, user)
    return _issue(db, claimed, session, secret, policy, now)

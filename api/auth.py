"""Authentication for clinic users: argon2 password hashes (pwdlib) and short-lived JWT bearer tokens
(PyJWT, HS256). reliability.md §5.3: FastAPI's security tutorial uses PyJWT and pwdlib with argon2;
§5.2 OWASP API1 (broken object-level authorisation) is handled per route by `api.deps.patient_access` / `check_patient_access`.

Every access token belongs to a session (api/sessions.py): its claims name the session (`sid`) and
the account's session version when it was signed in (`ver`), so that a signed-out session, a
deactivated account or a changed role refuses the token at once, not when it expires.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from storage.clinic.enrolment import password_hasher
from storage.clinic.models import UserRole

JWT_ALGORITHM = "HS256"
_password_hash = password_hasher()  # the clinic database's argon2id hasher (storage.clinic.enrolment)
# A real hash of a random password, verified against when the user does not exist, so that a login
# for an unknown e-mail costs the same time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _password_hash.hash("vitalgate-timing-equaliser")


class AuthenticationError(Exception):
    """Credentials or token not valid. The message never says which part was wrong; `reason` is for
    monitoring only: "expired" (a token of ours, past its time) or "invalid" (anything else)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _password_hash.verify(password, _DUMMY_HASH)
        return False
    return bool(_password_hash.verify(password, password_hash))


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user: opaque ids and roles only."""

    user_id: str
    clinic_id: str
    roles: frozenset[UserRole]
    session_id: str = ""  # the sign-in (storage.clinic.models.UserSession) its token belongs to
    session_version: int = 0  # users.session_version when that session was signed in


def issue_token(principal: Principal, secret: str, ttl_s: int, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "sub": principal.user_id,
        "clinic": principal.clinic_id,
        "roles": sorted(r.value for r in principal.roles),
        "sid": principal.session_id,
        "ver": principal.session_version,
        "jti": secrets.token_hex(8),  # two tokens issued in one second still differ (RFC 7519 §4.1.7)
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def read_token(token: str, secret: str, *, verify_expiry: bool = True) -> Principal:
    """The principal a token of ours names. `verify_expiry=False` only where an expired token may
    still name its session (signing out): its signature is always checked."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "clinic", "sid", "ver"], "verify_exp": verify_expiry},
        )
        return Principal(
            user_id=str(claims["sub"]),
            clinic_id=str(claims["clinic"]),
            roles=frozenset(UserRole(r) for r in claims.get("roles", [])),
            session_id=str(claims["sid"]),
            session_version=int(claims["ver"]),
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("invalid or expired token", "expired") from exc
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise AuthenticationError("invalid or expired token") from exc

"""Bearer headers for tests that call the API as a user without going through the sign-in form: a
real session row (api/sessions.py), so the token is checked like any other."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from api.sessions import SessionPolicy, open_session
from storage.clinic.models import User, UserRole


def bearer_headers(
    sessions: sessionmaker[Session],
    user_id: str,
    secret: str,
    *,
    clinic_id: str | None = None,
    role: UserRole | None = None,
    ttl_s: int = 3600,
) -> dict[str, str]:
    """Sign `user_id` in (checking the clinic and role the test expects it to have)."""
    with sessions() as db:
        user = db.get(User, user_id)
        assert user is not None, f"no account {user_id}"
        assert clinic_id is None or user.clinic_id == clinic_id, (user_id, user.clinic_id)
        assert role is None or role in user.role_set, (user_id, user.role_set)
        issued = open_session(db, user, secret, SessionPolicy(access_token_ttl_s=ttl_s), datetime.now(UTC))
        db.commit()
    return {"Authorization": f"Bearer {issued.access_token}"}

"""POST /api/v1/auth/token: exchange e-mail and password for a bearer token (OAuth2 password flow)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal, issue_token, verify_password
from api.deps import Services
from storage.clinic.models import User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (OAuth2 token type, not a secret)
    expires_in: int


def _authenticate(sessions: sessionmaker[Session], email: str, password: str) -> Principal | None:
    with sessions() as session:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if not verify_password(password, user.password_hash if user and user.active else None):
            return None
        assert user is not None
        user.last_login_at = datetime.now(UTC)
        session.commit()
        return Principal(user.user_id, user.clinic_id, frozenset(grant.role for grant in user.roles))


@router.post("/token")
async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], services: Services) -> Token:
    principal = await asyncio.to_thread(_authenticate, services.clinic_sessions, form.username, form.password)
    if principal is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="wrong e-mail or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = issue_token(principal, services.jwt_secret, services.access_token_ttl_s)
    return Token(access_token=token, expires_in=services.access_token_ttl_s)

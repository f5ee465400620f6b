"""The clinic's accounts, for its administrators, and the public step of a password reset.

- GET  /api/v1/admin/accounts                          every account of the clinic (audited, a count)
- POST /api/v1/admin/accounts                          create one; answers a one-time code with which
                                                       its holder sets their own password
- PATCH /api/v1/admin/accounts/{user_id}               name, e-mail address, phone
- PUT  /api/v1/admin/accounts/{user_id}/roles          replace the roles
- POST /api/v1/admin/accounts/{user_id}/deactivate     sign-in and tokens refused at once
- POST /api/v1/admin/accounts/{user_id}/reactivate
- POST /api/v1/admin/accounts/{user_id}/unlock         clear the consecutive failed logins
- POST /api/v1/admin/accounts/{user_id}/password-reset a new one-time code (24 h, single use)
- POST /api/v1/auth/password-reset                     (public) set a new password with a code

An administrator never sees or sets a password: they pass the code on (in person, by phone), and the
account's holder chooses their password on the sign-in page's "set a password" form. Only the code's
hash is kept. The clinic keeps at least one active administrator (`admin.last_admin`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from api.deps import Services, client_address, commit_audited, commit_denial
from api.errors import ApiError, ErrorCode
from api.limits import OPAQUE_ID_MAX
from api.routes.admin_common import ADMIN_PREFIX, AdminActor, Audited, api_error, run_change, run_read
from api.routes.auth import LOCK_AFTER_FAILED_LOGINS, UNKNOWN_ACTOR
from storage.clinic.administration import accounts as admin
from storage.clinic.administration.accounts import IssuedResetCode
from storage.clinic.administration.common import AdministrationError
from storage.clinic.models import User, UserRole

router = APIRouter(prefix=f"{ADMIN_PREFIX}/accounts", tags=["admin"])
public_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

OPAQUE_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
# Where the web app's "set a password" form is: the code goes there, typed or in the link.
RESET_PAGE: Final = "/app/set-password"
UserId = Annotated[str, Path(pattern=OPAQUE_ID)]


class AccountOut(BaseModel):
    user_id: str
    email: str
    display_name: str
    phone: str | None
    roles: list[UserRole]
    active: bool
    locked: bool = Field(description="locked by consecutive failed logins; unlock or reset the password")
    failed_logins: int
    created_at: datetime
    last_login_at: datetime | None


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    display_name: str = Field(min_length=1, max_length=200)
    roles: list[UserRole] = Field(min_length=1)
    phone: str | None = Field(default=None, max_length=40, description="for alerts pushed by SMS or voice")
    user_id: str | None = Field(
        default=None, pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX, description="null: one is chosen"
    )


class AccountUpdateIn(BaseModel):
    """The fields to change; left out (or null): unchanged; an empty phone clears it."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, min_length=3, max_length=254)
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)


class RolesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[UserRole] = Field(min_length=1)


class ResetCodeOut(BaseModel):
    """Shown once: the code is not kept, only its hash."""

    user_id: str
    code: str = Field(description="give it to the account's holder; it works once, until expires_at")
    expires_at: datetime
    set_password_path: str = Field(description="the web app page where the code is used")


class AccountCreated(BaseModel):
    account: AccountOut
    reset_code: ResetCodeOut


class UnlockOut(BaseModel):
    account: AccountOut
    failed_logins_cleared: int


class PasswordResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    new_password: str = Field(min_length=1, max_length=admin.MAX_PASSWORD_LENGTH)


def account_out(user: User) -> AccountOut:
    return AccountOut(
        user_id=user.user_id,
        email=user.email,
        display_name=user.display_name,
        phone=user.phone,
        roles=sorted(user.role_set, key=list(UserRole).index),
        active=user.active,
        locked=user.failed_logins >= LOCK_AFTER_FAILED_LOGINS,
        failed_logins=user.failed_logins,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _code_out(issued: IssuedResetCode) -> ResetCodeOut:
    return ResetCodeOut(
        user_id=issued.user_id, code=issued.code, expires_at=issued.expires_at, set_password_path=RESET_PAGE
    )


@router.get("")
async def list_accounts(actor: AdminActor, services: Services) -> list[AccountOut]:
    return await run_read(
        services,
        actor,
        lambda s: [account_out(u) for u in admin.list_accounts(s, actor)],
        audited_as="read_admin_accounts",
        count=len,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_account(body: AccountIn, actor: AdminActor, services: Services) -> AccountCreated:
    def change(session: Session) -> AccountCreated:
        user, code = admin.create_account(
            session,
            actor,
            user_id=body.user_id,
            email=body.email,
            display_name=body.display_name,
            roles=body.roles,
            phone=body.phone,
        )
        assert code is not None  # no password given: the holder sets their own with the code
        return AccountCreated(account=account_out(user), reset_code=_code_out(code))

    return await run_change(services, actor, Audited("create_account", "user", body.user_id), change)


@router.patch("/{user_id}")
async def update_account(
    user_id: UserId, body: AccountUpdateIn, actor: AdminActor, services: Services
) -> AccountOut:
    def change(session: Session) -> AccountOut:
        return account_out(
            admin.update_account(
                session, actor, user_id, display_name=body.display_name, email=body.email, phone=body.phone
            )
        )

    return await run_change(services, actor, Audited("update_account", "user", user_id), change)


@router.put("/{user_id}/roles")
async def set_roles(user_id: UserId, body: RolesIn, actor: AdminActor, services: Services) -> AccountOut:
    def change(session: Session) -> AccountOut:
        return account_out(admin.set_roles(session, actor, user_id, body.roles))

    return await run_change(services, actor, Audited("set_roles", "user", user_id), change)


@router.post("/{user_id}/deactivate")
async def deactivate_account(user_id: UserId, actor: AdminActor, services: Services) -> AccountOut:
    def change(session: Session) -> AccountOut:
        return account_out(admin.deactivate_account(session, actor, user_id))

    return await run_change(services, actor, Audited("deactivate_account", "user", user_id), change)


@router.post("/{user_id}/reactivate")
async def reactivate_account(user_id: UserId, actor: AdminActor, services: Services) -> AccountOut:
    def change(session: Session) -> AccountOut:
        return account_out(admin.reactivate_account(session, actor, user_id))

    return await run_change(services, actor, Audited("reactivate_account", "user", user_id), change)


@router.post("/{user_id}/unlock")
async def unlock_account(user_id: UserId, actor: AdminActor, services: Services) -> UnlockOut:
    def change(session: Session) -> UnlockOut:
        cleared = admin.unlock_account(session, actor, user_id)
        user = session.get(User, user_id)
        assert user is not None
        return UnlockOut(account=account_out(user), failed_logins_cleared=cleared)

    return await run_change(services, actor, Audited("unlock_account", "user", user_id), change)


@router.post("/{user_id}/password-reset")
async def issue_password_reset(user_id: UserId, actor: AdminActor, services: Services) -> ResetCodeOut:
    def change(session: Session) -> ResetCodeOut:
        return _code_out(admin.issue_password_reset(session, actor, user_id))

    return await run_change(services, actor, Audited("issue_password_reset", "user", user_id), change)


def _reset(sessions: sessionmaker[Session], body: PasswordResetIn) -> None:
    with sessions() as session:
        try:
            admin.reset_password_with_code(session, code=body.code, new_password=body.new_password)
        except AdministrationError as exc:
            session.rollback()
            # Whoever typed the code is not signed in; the code names no account they could prove.
            commit_denial(
                session,
                actor=UNKNOWN_ACTOR,
                action="reset_password",
                object_type="user",
                object_id=None,
                clinic_id=None,
                details={"code": exc.code},
            )
            raise
        commit_audited(session, "reset_password")


@public_router.post("/password-reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(body: PasswordResetIn, request: Request, services: Services) -> Response:
    """Set a new password with a one-time code from a clinic administrator (no sign-in needed).

    A code has 100 random bits, so guessing one is hopeless; the login throttle still bounds the
    refused attempts from one address (api/login_throttle.py), each of which is an audit entry."""
    throttle = services.login_throttle
    address = client_address(request)
    key = throttle.account_key(f"password-reset:{address}")
    refused = throttle.begin_attempt(key, address)
    if refused is not None:
        raise ApiError(
            ErrorCode.AUTH_THROTTLED,
            "too many refused codes; try again later",
            headers={"Retry-After": str(refused.retry_after_s)},
        )
    try:
        await asyncio.to_thread(_reset, services.clinic_sessions, body)
    except AdministrationError as exc:
        raise api_error(exc) from exc  # counted as a failure
    except BaseException:
        throttle.abandoned(key, address)
        raise
    throttle.succeeded(key, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

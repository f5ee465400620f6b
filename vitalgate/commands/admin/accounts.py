"""Account commands: adding and changing accounts, roles, deactivation, unlocking, and one-time
password reset codes."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from vitalgate.commands.admin.runner import actor_command, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


ROLES = ["family_doctor", "clinic_staff", "clinic_admin"]


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add the account commands, `add-user` to `reset-password`."""
    p = command("add-user", "create a clinic account; the password is read from stdin")
    p.add_argument("--clinic-id")
    p.add_argument("--user-id", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--phone", help="for alerts pushed by SMS or voice")
    p.add_argument("--role", action="append", choices=ROLES, required=True)
    p.add_argument(
        "--issue-code",
        action="store_true",
        help="read no password: print a one-time code with which the user sets their own",
    )
    p.set_defaults(
        func=actor_command(_add_user, "create_account", "user", "user_id", clinic_from_object=False)
    )

    p = command("update-user", "change an account's display name, e-mail address or phone")
    p.add_argument("--user-id", required=True)
    p.add_argument("--email")
    p.add_argument("--name", help="display name")
    p.add_argument("--phone", help="an empty value clears it")
    p.set_defaults(func=actor_command(_update_user, "update_account", "user", "user_id"))

    p = command("set-roles", "replace an account's roles")
    p.add_argument("--user-id", required=True)
    p.add_argument("--role", action="append", choices=ROLES, required=True)
    p.set_defaults(func=actor_command(_set_roles, "set_roles", "user", "user_id"))

    p = command("deactivate-user", "refuse an account's sign-in and tokens from now on")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=actor_command(_deactivate_user, "deactivate_account", "user", "user_id"))

    p = command("reactivate-user", "let a deactivated account sign in again")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=actor_command(_reactivate_user, "reactivate_account", "user", "user_id"))

    p = command("unlock-account", "let an account that was locked by repeated failed logins sign in again")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=actor_command(_unlock_account, "unlock_account", "user", "user_id"))

    p = command("reset-password", "print a one-time code (24 h) with which the user sets a new password")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=actor_command(_reset_password, "issue_password_reset", "user", "user_id"))


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _print_code(user_id: str, code: str, expires_at: datetime) -> None:
    print(f"one-time code for {user_id} (shown once; valid until {expires_at.isoformat()}): {code}")
    print("the user enters it on the sign-in page's 'set a password' form")


def _add_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import check_password, create_account
    from storage.clinic.models import UserRole

    password = None if args.issue_code else check_password(_read_password())
    _user, code = in_transaction(
        sessions,
        lambda s: create_account(
            s,
            actor,
            user_id=args.user_id,
            email=args.email,
            display_name=args.name,
            roles=[UserRole(r) for r in args.role],
            phone=args.phone,
            password=password,
        ),
    )
    print(f"user {args.user_id} created")
    if code is not None:
        _print_code(code.user_id, code.code, code.expires_at)
    return 0


def _update_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import update_account

    in_transaction(
        sessions,
        lambda s: update_account(
            s, actor, args.user_id, display_name=args.name, email=args.email, phone=args.phone
        ),
    )
    print(f"user {args.user_id} updated")
    return 0


def _set_roles(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import set_roles
    from storage.clinic.models import UserRole

    in_transaction(sessions, lambda s: set_roles(s, actor, args.user_id, [UserRole(r) for r in args.role]))
    print(f"user {args.user_id}: roles {', '.join(sorted(set(args.role)))}")
    return 0


def _deactivate_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import deactivate_account

    in_transaction(sessions, lambda s: deactivate_account(s, actor, args.user_id))
    print(f"user {args.user_id} deactivated")
    return 0


def _reactivate_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import reactivate_account

    in_transaction(sessions, lambda s: reactivate_account(s, actor, args.user_id))
    print(f"user {args.user_id} reactivated")
    return 0


def _unlock_account(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import unlock_account

    failed = in_transaction(sessions, lambda s: unlock_account(s, actor, args.user_id))
    print(f"user {args.user_id} unlocked ({failed} consecutive failed logins cleared)")
    return 0


def _reset_password(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import issue_password_reset

    code = in_transaction(sessions, lambda s: issue_password_reset(s, actor, args.user_id))
    _print_code(code.user_id, code.code, code.expires_at)
    return 0

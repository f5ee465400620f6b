"""How an administrative command runs: for an actor in a clinic, its change in one transaction with
its audit entry; a refusal recorded as denied, printed with its code, and its exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


# What a command acts on, to find its clinic when the operator names the object only.
Scope = str  # "clinic", "user", "patient", "gateway", "binding", "meter"
Action = Callable[[argparse.Namespace, "sessionmaker[Session]", "Actor"], int]
EXIT_REFUSED = 2
EXIT_BROKER = 3


def aware_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(f"vitalgate admin: {message}", file=sys.stderr)
    return code


def actor_command(
    action: Action,
    audit_action: str,
    scope: Scope,
    object_arg: str | None = None,
    *,
    clinic_from_object: bool = True,
) -> Callable[[argparse.Namespace], int]:
    """A command run for an actor: the operator's account (`--actor`) or "cli:<os user>", in the clinic
    named (`--clinic-id`), or else (`clinic_from_object`) the clinic of the object the command names.
    A refusal is recorded as denied under `audit_action`, on that object, and exits 2."""

    def run(args: argparse.Namespace) -> int:
        from api.broker_accounts import BrokerAccountsError
        from storage.clinic.administration.common import AdministrationError
        from storage.clinic.audit import AuditOutcome, record_audit
        from vitalgate.administration import AdminError, clinic_of, resolve_actor
        from vitalgate.wiring import open_clinic_database

        database = open_clinic_database(args.settings)
        sessions = database.sessions
        actor = None
        value = getattr(args, object_arg) if object_arg else None
        object_id = None if value is None else str(value)
        try:
            with sessions() as session:
                clinic_id = getattr(args, "clinic_id", None)
                if clinic_id is None and args.actor is None and object_id is not None and clinic_from_object:
                    clinic_id = clinic_of(session, scope, object_id)
                    if clinic_id is None:
                        raise AdminError(f"no {scope} {object_id}")
                actor = resolve_actor(session, actor_user_id=args.actor, clinic_id=clinic_id)
            return action(args, sessions, actor)
        except AdministrationError as exc:
            if actor is not None:
                with sessions() as session, session.begin():
                    record_audit(
                        session,
                        actor=actor.actor_id,
                        action=audit_action,
                        object_type=scope,
                        object_id=object_id,
                        clinic_id=actor.clinic_id,
                        outcome=AuditOutcome.DENIED,
                        details={"code": exc.code},
                    )
            return fail(f"{exc} ({exc.code})")
        except AdminError as exc:
            return fail(str(exc))
        except BrokerAccountsError as exc:
            return fail(f"the broker did not make the change: {exc}", EXIT_BROKER)
        finally:
            database.close()

    return run


def in_transaction(sessions: sessionmaker[Session], change: Callable[[Session], Any]) -> Any:
    with sessions() as session, session.begin():
        return change(session)

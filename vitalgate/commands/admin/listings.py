"""Listing commands: the clinic's accounts, patients, gateways, meters and bindings, and the audit
trail; one JSON object a line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vitalgate.commands.admin.runner import actor_command, aware_time, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add the `list-*` commands and `audit`."""
    for name, what, run in (
        ("list-accounts", "the clinic's accounts", _list_accounts),
        ("list-patients", "the clinic's patients, discharged ones too", _list_patients),
        ("list-gateways", "the clinic's gateways", _list_gateways),
        ("list-meters", "the clinic's meters", _list_meters),
        ("list-bindings", "the clinic's meter bindings, newest first", _list_bindings),
    ):
        p = command(name, f"print {what}, one JSON object a line")
        p.add_argument("--clinic-id")
        p.set_defaults(func=actor_command(run, name.replace("list-", "read_admin_"), "clinic", "clinic_id"))

    p = sub.add_parser(
        "audit",
        help="print audit log entries, newest first, one JSON object a line",
        description="Print audit log entries (who did what to which record, allowed or denied), newest "
        "first, one JSON object a line. Filters combine (AND).",
    )
    p.add_argument("--clinic-id", help="entries filed under this clinic (the acting user's)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--patient-id", help="entries about this patient (object_type patient)")
    target.add_argument("--object-id", help="entries naming this object id (alert, user, patient ...)")
    p.add_argument(
        "--object-type", help="patient, alert, user, meter, gateway, clinic, patient_panel, audit_log"
    )
    p.add_argument("--actor", help="user id, cli:<os user>, or 'unknown' for logins naming no account")
    p.add_argument("--since", type=aware_time, help="ISO 8601 time; without an offset, UTC")
    p.add_argument("--outcome", choices=["allowed", "denied", "error"])
    p.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100, max 1000)")
    p.set_defaults(func=_audit)


def _print_rows(rows: list[dict[str, Any]]) -> int:
    for row in rows:
        print(json.dumps(row, sort_keys=True, ensure_ascii=False, default=_json_value))
    return 0


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _audited_listing(
    sessions: sessionmaker[Session],
    actor: Actor,
    action: str,
    read: Callable[[Session], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    from storage.clinic.audit import record_audit

    with sessions() as session, session.begin():
        rows = read(session)
        record_audit(
            session,
            actor=actor.actor_id,
            action=action,
            object_type="clinic",
            object_id=actor.clinic_id,
            clinic_id=actor.clinic_id,
            details={"count": len(rows)},
        )
    return rows


def _list_accounts(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import list_accounts

    def read(session: Session) -> list[dict[str, Any]]:
        return [
            {
                "user_id": u.user_id,
                "email": u.email,
                "display_name": u.display_name,
                "roles": sorted(r.value for r in u.role_set),
                "active": u.active,
                "failed_logins": u.failed_logins,
            }
            for u in list_accounts(session, actor)
        ]

    return _print_rows(_audited_listing(sessions, actor, "read_admin_accounts", read))


def _list_patients(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import list_patients

    def read(session: Session) -> list[dict[str, Any]]:
        return [
            {
                "patient_id": p.patient_id,
                "given_name": p.given_name,
                "family_name": p.family_name,
                "active": p.active,
                "discharged_at": p.discharged_at,
                "care_team": [m.user_id for m in p.care_team],
            }
            for p in list_patients(session, actor)
        ]

    return _print_rows(_audited_listing(sessions, actor, "read_admin_patients", read))


def _list_gateways(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.gateways import list_gateways

    with sessions() as session:
        rows = [
            {
                "gateway_id": g.gateway_id,
                "active": g.active,
                "created_at": g.created_at,
                "last_seen_at": g.last_seen_at,
            }
            for g in list_gateways(session, actor)
        ]
    return _print_rows(rows)


def _list_meters(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import list_meters

    with sessions() as session:
        rows = [
            {"meter_key": m.meter_key, "kind": m.kind.value, "manufacturer": m.manufacturer, "model": m.model}
            for m in list_meters(session, actor)
        ]
    return _print_rows(rows)


def _list_bindings(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import list_bindings
    from storage.clinic.models import ANY_DEVICE_USER

    with sessions() as session:
        rows = [
            {
                "binding_id": b.binding_id,
                "meter_key": b.meter_key,
                "gateway_id": b.gateway_id,
                "patient_id": b.patient_id,
                "device_user_id": None if b.device_user_id == ANY_DEVICE_USER else b.device_user_id,
                "active": b.active,
                "bound_at": b.bound_at,
                "unbound_at": b.unbound_at,
                "prior_memory_belongs": b.prior_memory_belongs,
            }
            for b in list_bindings(session, actor)
        ]
    return _print_rows(rows)


def _audit(args: argparse.Namespace) -> int:
    from storage.clinic.audit import MAX_AUDIT_PAGE, AuditOutcome, audit_entry_json, find_audit_entries
    from vitalgate.wiring import open_clinic_database

    if not 1 <= args.limit <= MAX_AUDIT_PAGE:
        return fail(f"--limit must be between 1 and {MAX_AUDIT_PAGE}")
    if args.patient_id is not None and args.object_type not in (None, "patient"):
        return fail("--patient-id names a patient; leave out --object-type or give 'patient'")
    with open_clinic_database(args.settings) as database, database.sessions() as session:
        entries = find_audit_entries(
            session,
            clinic_id=args.clinic_id,
            object_type="patient" if args.patient_id is not None else args.object_type,
            object_id=args.patient_id if args.patient_id is not None else args.object_id,
            actor=args.actor,
            since=args.since,
            outcome=AuditOutcome(args.outcome) if args.outcome else None,
            limit=args.limit,
        )
        for entry in entries:
            print(json.dumps(audit_entry_json(entry), sort_keys=True, ensure_ascii=False))
    return 0

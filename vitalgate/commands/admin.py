"""`vitalgate admin`: clinic administration from a shell, for scripts: the clinic's settings,
accounts, patients, gateways (on the broker's dynamic security accounts), meters and bindings; the
gateways' configurations; the audit trail (`vitalgate admin audit`).

Every change is written with its audit entry in one transaction (storage.clinic.administration), as
from the web app. The entry's actor is the operator's own administrator account, given with
`--actor USER_ID` (which then acts in that account's clinic only), or else "cli:<os user>". A refused
change prints its code (`admin.meter_already_bound`, ...), changes nothing, is recorded as denied,
and exits 2; a broker that does not answer exits 3.

Passwords are read from standard input (never from the command line, where `ps` would show them).
Commands that list records print one JSON object a line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor

ROLES = ["family_doctor", "clinic_staff", "clinic_admin"]
# What a command acts on, to find its clinic when the operator names the object only.
Scope = str  # "clinic", "user", "patient", "gateway", "binding", "meter"
Action = Callable[[argparse.Namespace, "sessionmaker[Session]", "Actor"], int]
EXIT_REFUSED = 2
EXIT_BROKER = 3


def _actor_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--actor",
        metavar="USER_ID",
        help="your clinic administrator account, as the audit log records you (default: cli:<os user>)",
    )
    return common


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="clinic administration: settings, accounts, patients, gateways, meters",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    actor = _actor_options()

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[actor])

    p = sub.add_parser("init-db", help="create or migrate the clinic database to the newest schema")
    p.set_defaults(func=_init_db)

    p = sub.add_parser(
        "storage",
        help="set the stores up (init: clinic database schema; InfluxDB database or bucket and its "
        "retention) or delete what is past its retention now (prune)",
    )
    p.add_argument("storage_action", choices=["init", "prune"])
    p.set_defaults(func=_storage)

    # -- clinic ----------------------------------------------------------------------------------
    p = command("add-clinic", "enrol a clinic")
    p.add_argument("--clinic-id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--profile", choices=["cn", "us", "eu"], required=True, help="guideline profile")
    p.add_argument("--timezone", default="UTC", help="IANA zone for day boundaries, e.g. Asia/Shanghai")
    p.add_argument("--glucose-unit", choices=["mmol/L", "mg/dL"], help="default: mg/dL for us, else mmol/L")
    p.set_defaults(func=_add_clinic)

    p = command("set-clinic", "change the clinic's name, guideline profile, time zone or glucose unit")
    p.add_argument("--clinic-id")
    p.add_argument("--name")
    p.add_argument("--profile", choices=["cn", "us", "eu"])
    p.add_argument("--timezone", help="IANA zone, e.g. Asia/Shanghai")
    p.add_argument("--glucose-unit", choices=["mmol/L", "mg/dL"])
    p.set_defaults(func=_admin(_set_clinic, "update_clinic_settings", "clinic", "clinic_id"))

    # -- accounts --------------------------------------------------------------------------------
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
    p.set_defaults(func=_admin(_add_user, "create_account", "user", "user_id", clinic_from_object=False))

    p = command("update-user", "change an account's display name, e-mail address or phone")
    p.add_argument("--user-id", required=True)
    p.add_argument("--email")
    p.add_argument("--name", help="display name")
    p.add_argument("--phone", help="an empty value clears it")
    p.set_defaults(func=_admin(_update_user, "update_account", "user", "user_id"))

    p = command("set-roles", "replace an account's roles")
    p.add_argument("--user-id", required=True)
    p.add_argument("--role", action="append", choices=ROLES, required=True)
    p.set_defaults(func=_admin(_set_roles, "set_roles", "user", "user_id"))

    p = command("deactivate-user", "refuse an account's sign-in and tokens from now on")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_admin(_deactivate_user, "deactivate_account", "user", "user_id"))

    p = command("reactivate-user", "let a deactivated account sign in again")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_admin(_reactivate_user, "reactivate_account", "user", "user_id"))

    p = command("unlock-account", "let an account that was locked by repeated failed logins sign in again")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_admin(_unlock_account, "unlock_account", "user", "user_id"))

    p = command("reset-password", "print a one-time code (24 h) with which the user sets a new password")
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_admin(_reset_password, "issue_password_reset", "user", "user_id"))

    # -- patients --------------------------------------------------------------------------------
    p = command("add-patient", "enrol a patient under a family doctor")
    p.add_argument("--clinic-id")
    p.add_argument(
        "--patient-id", help="opaque id used everywhere outside the clinic database (default: chosen)"
    )
    p.add_argument("--given-name", required=True)
    p.add_argument("--family-name", required=True)
    p.add_argument("--birth-date", help="YYYY-MM-DD")
    p.add_argument("--phone")
    p.add_argument("--email")
    p.add_argument("--doctor", required=True, help="user id of the family doctor")
    p.add_argument(
        "--staff", action="append", default=[], help="user id of clinic staff, in escalation order"
    )
    p.set_defaults(
        func=_admin(_add_patient, "enrol_patient", "patient", "patient_id", clinic_from_object=False)
    )

    p = command("update-patient", "change a patient's names, birth date, phone or e-mail address")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--given-name")
    p.add_argument("--family-name")
    p.add_argument("--birth-date", help="YYYY-MM-DD; an empty value clears it")
    p.add_argument("--phone", help="an empty value clears it")
    p.add_argument("--email", help="an empty value clears it")
    p.set_defaults(func=_admin(_update_patient, "update_patient", "patient", "patient_id"))

    p = command(
        "add-care-team-member", "add a doctor or staff member to a patient's care team (notified last)"
    )
    p.add_argument("--patient-id", required=True)
    p.add_argument("--user-id", required=True)
    p.add_argument("--team-role", choices=["family_doctor", "clinic_staff"], required=True)
    p.set_defaults(func=_admin(_add_member, "add_care_team_member", "patient", "patient_id"))

    p = command("remove-care-team-member", "take a member off a patient's care team")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_admin(_remove_member, "remove_care_team_member", "patient", "patient_id"))

    p = command("discharge-patient", "discharge a patient: off every panel, meters unbound, data kept")
    p.add_argument("--patient-id", required=True)
    p.set_defaults(func=_admin(_discharge, "discharge_patient", "patient", "patient_id"))

    p = command("readmit-patient", "re-admit a discharged patient")
    p.add_argument("--patient-id", required=True)
    p.set_defaults(func=_admin(_readmit, "readmit_patient", "patient", "patient_id"))

    # -- gateways --------------------------------------------------------------------------------
    p = command(
        "provision-gateway",
        "make a gateway's broker account (dynamic security) and write its settings file for the installer",
    )
    p.add_argument("--clinic-id")
    p.add_argument("--gateway-id", required=True)
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="new file for `vitalgate gateway run --config` ('-': stdout)",
    )
    p.set_defaults(
        func=_admin(
            _provision_gateway, "provision_gateway", "gateway", "gateway_id", clinic_from_object=False
        )
    )

    p = command(
        "add-gateway",
        "register a gateway for a broker with a password file (no dynamic security); prints its password once",
    )
    p.add_argument("--clinic-id")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(
        func=_admin(_add_gateway, "provision_gateway", "gateway", "gateway_id", clinic_from_object=False)
    )

    p = command("deactivate-gateway", "disable a gateway's broker account and mark it inactive")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_admin(_deactivate_gateway, "deactivate_gateway", "gateway", "gateway_id"))

    p = command("reactivate-gateway", "enable a deactivated gateway's broker account again")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_admin(_reactivate_gateway, "reactivate_gateway", "gateway", "gateway_id"))

    p = command(
        "rotate-gateway-credentials", "give a gateway a new broker password; write its new settings file"
    )
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--output", type=Path, required=True, help="new settings file ('-': stdout)")
    p.set_defaults(func=_admin(_rotate_gateway, "rotate_gateway_credentials", "gateway", "gateway_id"))

    p = sub.add_parser("publish-config", help="publish a gateway's bindings on its retained config topic")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_publish_config)

    # -- meters and bindings ---------------------------------------------------------------------
    p = command("register-meter", "register a meter by its Device Information")
    p.add_argument("--clinic-id")
    _meter_identity(p)
    p.set_defaults(func=_admin(_register_meter, "register_meter", "meter"))

    p = command(
        "bind-meter",
        "bind a meter (and cuff user slot) to a patient through a gateway, from now on; registers the "
        "meter if needed",
    )
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--patient-id", required=True)
    _meter_identity(p)
    p.add_argument("--user-id", type=int, default=None, help="cuff user slot (default: every slot)")
    p.add_argument(
        "--prior-memory-belongs",
        action="store_true",
        help="the readings the meter already holds are this patient's (default: not, e.g. a loaner meter)",
    )
    p.set_defaults(func=_admin(_bind_meter, "bind_meter", "gateway", "gateway_id"))

    p = command("unbind-meter", "end a binding now, or at a past time (not before it began)")
    p.add_argument("--binding-id", type=int, required=True)
    p.add_argument("--at", type=_aware_time, help="ISO 8601 time; without an offset, UTC (default: now)")
    p.set_defaults(func=_admin(_unbind_meter, "unbind_meter", "binding", "binding_id"))

    p = command("move-meter", "end a binding and bind the meter to another patient, from now on")
    p.add_argument("--binding-id", type=int, required=True)
    p.add_argument("--patient-id", required=True)
    p.add_argument("--gateway-id", help="default: the same gateway")
    p.add_argument("--user-id", type=int, default=None, help="cuff user slot (default: every slot)")
    p.add_argument("--prior-memory-belongs", action="store_true")
    p.set_defaults(func=_admin(_move_meter, "move_meter", "binding", "binding_id"))

    # -- listings --------------------------------------------------------------------------------
    for name, what, run in (
        ("list-accounts", "the clinic's accounts", _list_accounts),
        ("list-patients", "the clinic's patients, discharged ones too", _list_patients),
        ("list-gateways", "the clinic's gateways", _list_gateways),
        ("list-meters", "the clinic's meters", _list_meters),
        ("list-bindings", "the clinic's meter bindings, newest first", _list_bindings),
    ):
        p = command(name, f"print {what}, one JSON object a line")
        p.add_argument("--clinic-id")
        p.set_defaults(func=_admin(run, name.replace("list-", "read_admin_"), "clinic", "clinic_id"))

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
    p.add_argument("--since", type=_aware_time, help="ISO 8601 time; without an offset, UTC")
    p.add_argument("--outcome", choices=["allowed", "denied", "error"])
    p.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100, max 1000)")
    p.set_defaults(func=_audit)


def _meter_identity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["blood_pressure", "glucose"], required=True)
    p.add_argument("--manufacturer", required=True)
    p.add_argument("--model", required=True)
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--serial-number")
    ident.add_argument("--address", help="BLE address, when the meter reports no serial number")


def _aware_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(f"vitalgate admin: {message}", file=sys.stderr)
    return code


def _admin(
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
            return _fail(f"{exc} ({exc.code})")
        except AdminError as exc:
            return _fail(str(exc))
        except BrokerAccountsError as exc:
            return _fail(f"the broker did not make the change: {exc}", EXIT_BROKER)
        finally:
            database.close()

    return run


def _change(sessions: sessionmaker[Session], change: Callable[[Session], Any]) -> Any:
    with sessions() as session, session.begin():
        return change(session)


def _init_db(args: argparse.Namespace) -> int:
    from vitalgate.wiring import open_clinic_database

    open_clinic_database(args.settings).close()
    print("clinic database is at the newest schema")
    return 0


def _storage(args: argparse.Namespace) -> int:
    """`vitalgate admin storage init|prune` (settings: storage, retention)."""
    from datetime import UTC, datetime

    from vitalgate.wiring import (
        build_reading_store,
        open_clinic_database,
        prepare_reading_store,
        prune_past_retention,
    )

    settings = args.settings
    store = build_reading_store(settings)
    try:
        with open_clinic_database(settings) as database:
            if args.storage_action == "init":
                print("clinic database is at the newest schema")
                print(f"reading store: {prepare_reading_store(settings, store) or 'SQLite (pruned daily)'}")
                return 0
            counts = prune_past_retention(settings, store, database, datetime.now(UTC))
            print(" ".join(f"{name}={count}" for name, count in counts.items()))
            return 0
    finally:
        store.close()


# -- clinic --------------------------------------------------------------------------------------


def _add_clinic(args: argparse.Namespace) -> int:
    from storage.clinic.administration.clinic import add_clinic
    from storage.clinic.administration.common import AdministrationError
    from storage.clinic.models import GuidelineProfile
    from vitalgate.administration import cli_actor_id, resolve_actor
    from vitalgate.wiring import open_clinic_database
    from vitals.units import GlucoseUnit

    database = open_clinic_database(args.settings)
    try:
        with database.sessions() as session, session.begin():
            actor_id = cli_actor_id()
            if args.actor is not None:  # an administrator of another clinic enrols this one
                actor_id = resolve_actor(session, actor_user_id=args.actor, clinic_id=None).actor_id
            add_clinic(
                session,
                actor_id=actor_id,
                clinic_id=args.clinic_id,
                name=args.name,
                profile=GuidelineProfile(args.profile),
                timezone=args.timezone,
                glucose_unit=GlucoseUnit(args.glucose_unit) if args.glucose_unit else None,
            )
    except AdministrationError as exc:
        return _fail(f"{exc} ({exc.code})")
    except ValueError as exc:  # vitalgate.administration.AdminError
        return _fail(str(exc))
    finally:
        database.close()
    print(f"clinic {args.clinic_id} enrolled")
    return 0


def _set_clinic(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.clinic import update_clinic_settings
    from storage.clinic.models import GuidelineProfile
    from vitals.units import GlucoseUnit

    clinic = _change(
        sessions,
        lambda s: update_clinic_settings(
            s,
            actor,
            name=args.name,
            guideline_profile=GuidelineProfile(args.profile) if args.profile else None,
            timezone=args.timezone,
            glucose_unit=GlucoseUnit(args.glucose_unit) if args.glucose_unit else None,
        ),
    )
    print(
        f"clinic {clinic.clinic_id}: profile {clinic.default_profile.value}, time zone {clinic.timezone}, "
        f"glucose in {clinic.glucose_unit.value}"
    )
    return 0


# -- accounts ------------------------------------------------------------------------------------


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
    _user, code = _change(
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

    _change(
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

    _change(sessions, lambda s: set_roles(s, actor, args.user_id, [UserRole(r) for r in args.role]))
    print(f"user {args.user_id}: roles {', '.join(sorted(set(args.role)))}")
    return 0


def _deactivate_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import deactivate_account

    _change(sessions, lambda s: deactivate_account(s, actor, args.user_id))
    print(f"user {args.user_id} deactivated")
    return 0


def _reactivate_user(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import reactivate_account

    _change(sessions, lambda s: reactivate_account(s, actor, args.user_id))
    print(f"user {args.user_id} reactivated")
    return 0


def _unlock_account(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import unlock_account

    failed = _change(sessions, lambda s: unlock_account(s, actor, args.user_id))
    print(f"user {args.user_id} unlocked ({failed} consecutive failed logins cleared)")
    return 0


def _reset_password(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.accounts import issue_password_reset

    code = _change(sessions, lambda s: issue_password_reset(s, actor, args.user_id))
    _print_code(code.user_id, code.code, code.expires_at)
    return 0


# -- patients ------------------------------------------------------------------------------------


def _add_patient(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import enrol_patient

    patient = _change(
        sessions,
        lambda s: enrol_patient(
            s,
            actor,
            patient_id=args.patient_id,
            given_name=args.given_name,
            family_name=args.family_name,
            family_doctor_id=args.doctor,
            staff_ids=args.staff,
            date_of_birth=args.birth_date,
            phone=args.phone,
            email=args.email,
        ),
    )
    print(f"patient {patient.patient_id} enrolled")
    return 0


def _update_patient(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import update_patient

    _change(
        sessions,
        lambda s: update_patient(
            s,
            actor,
            args.patient_id,
            given_name=args.given_name,
            family_name=args.family_name,
            date_of_birth=args.birth_date,
            phone=args.phone,
            email=args.email,
        ),
    )
    print(f"patient {args.patient_id} updated")
    return 0


def _add_member(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import add_care_team_member
    from storage.clinic.models import CareTeamRole

    member = _change(
        sessions,
        lambda s: add_care_team_member(
            s, actor, args.patient_id, user_id=args.user_id, team_role=CareTeamRole(args.team_role)
        ),
    )
    print(
        f"user {args.user_id} on patient {args.patient_id}'s care team (escalation order {member.escalation_order})"
    )
    return 0


def _remove_member(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import remove_care_team_member

    _change(
        sessions,
        lambda s: remove_care_team_member(s, actor, args.patient_id, user_id=args.user_id),
    )
    print(f"user {args.user_id} off patient {args.patient_id}'s care team")
    return 0


def _discharge(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import discharge_patient

    discharge = _change(sessions, lambda s: discharge_patient(s, actor, args.patient_id))
    print(f"patient {args.patient_id} discharged; {len(discharge.ended_bindings)} meter binding(s) ended")
    for gateway_id in discharge.gateway_ids:
        print(
            f"publish gateway {gateway_id}'s bindings: vitalgate admin publish-config --gateway-id {gateway_id}"
        )
    return 0


def _readmit(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import readmit_patient

    _change(sessions, lambda s: readmit_patient(s, actor, args.patient_id))
    print(f"patient {args.patient_id} re-admitted")
    return 0


# -- gateways ------------------------------------------------------------------------------------


def _gateway_accounts(args: argparse.Namespace, *, required: bool) -> Any:
    """The broker's gateway accounts from `broker_accounts` settings; None when they are not set and
    not `required` (a broker with a password file)."""
    from vitalgate.administration import AdminError
    from vitalgate.broker_accounts import accounts_from_settings

    if args.settings.broker_accounts.gateway_host is None:
        if required:
            raise AdminError(
                "broker_accounts.gateway_host is not set: this needs the dynamic security plugin"
            )
        return None
    return accounts_from_settings(args.settings)


def _write_settings_file(output: Path, text: str) -> None:
    """A new file only the operator can read (it holds the gateway's password); never overwritten."""
    if str(output) == "-":
        sys.stdout.write(text)
        return
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _check_output(output: Path) -> None:
    from vitalgate.administration import AdminError

    if str(output) != "-" and output.exists():
        raise AdminError(f"{output} exists; the settings file is written to a new file only")


def _provision_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import provision_gateway

    _check_output(args.output)
    credentials = provision_gateway(sessions, actor, _gateway_accounts(args, required=True), args.gateway_id)
    _write_settings_file(args.output, credentials.settings_toml)
    if str(args.output) != "-":
        print(
            f"gateway {args.gateway_id} provisioned; its settings file (with its password) is {args.output}"
        )
    return 0


def _add_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    import secrets

    from storage.clinic.administration.gateways import register_gateway
    from vitalgate.administration import RESERVED_BROKER_USERNAMES

    password = secrets.token_urlsafe(24)
    _change(
        sessions,
        lambda s: register_gateway(
            s, actor, gateway_id=args.gateway_id, mqtt_password=password, reserved=RESERVED_BROKER_USERNAMES
        ),
    )
    print(f"gateway {args.gateway_id} registered")
    print(f"MQTT username: {args.gateway_id}")
    print(f"MQTT password (shown once; add it to the broker with mosquitto_passwd): {password}")
    return 0


def _deactivate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import deactivate_gateway

    accounts = _gateway_accounts(args, required=False)
    deactivate_gateway(sessions, actor, accounts, args.gateway_id)
    print(f"gateway {args.gateway_id} deactivated")
    if accounts is None:
        print(
            "broker_accounts is not set: remove the gateway from the broker's password file", file=sys.stderr
        )
    return 0


def _reactivate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import reactivate_gateway

    reactivate_gateway(sessions, actor, _gateway_accounts(args, required=False), args.gateway_id)
    print(f"gateway {args.gateway_id} reactivated")
    return 0


def _rotate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import rotate_gateway_credentials

    _check_output(args.output)
    credentials = rotate_gateway_credentials(
        sessions, actor, _gateway_accounts(args, required=True), args.gateway_id
    )
    _write_settings_file(args.output, credentials.settings_toml)
    if str(args.output) != "-":
        print(f"gateway {args.gateway_id}: new password; its new settings file is {args.output}")
    return 0


def _publish_config(args: argparse.Namespace) -> int:
    from vitalgate.administration import ClinicMqttAccount, GatewayConfigSender
    from vitalgate.wiring import open_clinic_database

    account = ClinicMqttAccount.from_settings(args.settings)
    if account is None:
        return _fail(
            "a clinic broker account is needed: mqtt.username and mqtt.password, or mqtt.tls_cert_file"
        )
    with open_clinic_database(args.settings) as database:
        config = GatewayConfigSender(account, database.sessions).send(args.gateway_id)
    print(f"config with {len(config.bindings)} binding(s) published for gateway {args.gateway_id}")
    return 0


# -- meters and bindings -------------------------------------------------------------------------


def _register_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import register_meter
    from storage.clinic.models import MeterKind

    meter = _change(
        sessions,
        lambda s: register_meter(
            s,
            actor,
            kind=MeterKind(args.kind),
            manufacturer=args.manufacturer,
            model=args.model,
            serial_number=args.serial_number,
            address=args.address,
        ),
    )
    print(f"meter {meter.meter_key} registered")
    return 0


def _bind_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import bind_meter, register_meter
    from storage.clinic.models import Meter, MeterKind
    from vitals.readings import DeviceIdentity

    try:
        device = DeviceIdentity(
            manufacturer=args.manufacturer,
            model=args.model,
            serial_number=args.serial_number,
            address=args.address,
        )
    except ValueError:
        return _fail(
            "a meter needs a manufacturer and model (1-64 characters) and a serial number or address"
        )

    def change(session: Session) -> Any:
        if session.get(Meter, device.meter_key) is None:
            register_meter(
                session,
                actor,
                kind=MeterKind(args.kind),
                manufacturer=args.manufacturer,
                model=args.model,
                serial_number=args.serial_number,
                address=args.address,
            )
        return bind_meter(
            session,
            actor,
            meter_key=device.meter_key,
            gateway_id=args.gateway_id,
            patient_id=args.patient_id,
            device_user_id=args.user_id,
            prior_memory_belongs=args.prior_memory_belongs,
        )

    binding = _change(sessions, change)
    memory = "its earlier readings too" if args.prior_memory_belongs else "readings from now on"
    print(
        f"binding {binding.binding_id}: meter {device.meter_key} bound to patient {args.patient_id} via "
        f"{args.gateway_id} ({memory})"
    )
    print(f"publish it: vitalgate admin publish-config --gateway-id {args.gateway_id}")
    return 0


def _unbind_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import unbind_meter

    binding = _change(
        sessions,
        lambda s: unbind_meter(s, actor, binding_id=args.binding_id, unbound_at=args.at),
    )
    print(f"binding {binding.binding_id} ended at {binding.unbound_at.isoformat()}")
    print(f"publish it: vitalgate admin publish-config --gateway-id {binding.gateway_id}")
    return 0


def _move_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import move_meter

    ended, new = _change(
        sessions,
        lambda s: move_meter(
            s,
            actor,
            binding_id=args.binding_id,
            patient_id=args.patient_id,
            gateway_id=args.gateway_id,
            device_user_id=args.user_id,
            prior_memory_belongs=args.prior_memory_belongs,
        ),
    )
    print(
        f"binding {ended.binding_id} ended; binding {new.binding_id}: patient {new.patient_id} via {new.gateway_id}"
    )
    for gateway_id in sorted({ended.gateway_id, new.gateway_id}):
        print(f"publish it: vitalgate admin publish-config --gateway-id {gateway_id}")
    return 0


# -- listings ------------------------------------------------------------------------------------


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
        return _fail(f"--limit must be between 1 and {MAX_AUDIT_PAGE}")
    if args.patient_id is not None and args.object_type not in (None, "patient"):
        return _fail("--patient-id names a patient; leave out --object-type or give 'patient'")
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

"""`vitalgate admin`: enrol clinics, accounts, patients and gateways; bind meters; publish configs;
read the audit trail (`vitalgate admin audit`).

Passwords are read from standard input (never from the command line, where `ps` would show them).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "admin", help="clinic administration: accounts, patients, gateways, meters"
    )
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)

    p = sub.add_parser("init-db", help="create or migrate the clinic database to the newest schema")
    p.set_defaults(func=_run(_init_db))

    p = sub.add_parser("add-clinic", help="enrol a clinic")
    p.add_argument("--clinic-id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--profile", choices=["cn", "us", "eu"], required=True, help="guideline profile")
    p.add_argument("--timezone", default="UTC", help="IANA zone for day boundaries, e.g. Asia/Shanghai")
    p.set_defaults(func=_run(_add_clinic))

    p = sub.add_parser("add-user", help="create a clinic account; the password is read from stdin")
    p.add_argument("--clinic-id", required=True)
    p.add_argument("--user-id", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True, help="display name")
    p.add_argument(
        "--role", action="append", choices=["family_doctor", "clinic_staff", "clinic_admin"], required=True
    )
    p.set_defaults(func=_run(_add_user))

    p = sub.add_parser(
        "unlock-account",
        help="let an account that was locked by repeated failed logins sign in again",
    )
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=_run(_unlock_account))

    p = sub.add_parser("add-patient", help="enrol a patient under a family doctor")
    p.add_argument("--clinic-id", required=True)
    p.add_argument(
        "--patient-id", required=True, help="opaque id used everywhere outside the clinic database"
    )
    p.add_argument("--given-name", required=True)
    p.add_argument("--family-name", required=True)
    p.add_argument("--doctor", required=True, help="user id of the family doctor")
    p.add_argument(
        "--staff", action="append", default=[], help="user id of clinic staff, in escalation order"
    )
    p.set_defaults(func=_run(_add_patient))

    p = sub.add_parser("add-gateway", help="register a gateway; prints its new MQTT password once")
    p.add_argument("--clinic-id", required=True)
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_run(_add_gateway))

    p = sub.add_parser("bind-meter", help="bind a meter (and cuff user slot) to a patient through a gateway")
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--patient-id", required=True)
    p.add_argument("--kind", choices=["blood_pressure", "glucose"], required=True)
    p.add_argument("--manufacturer", required=True)
    p.add_argument("--model", required=True)
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--serial-number")
    ident.add_argument("--address", help="BLE address, when the meter reports no serial number")
    p.add_argument("--user-id", type=int, default=None, help="cuff user slot (default: every slot)")
    p.set_defaults(func=_run(_bind_meter))

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
    p.add_argument("--object-type", help="patient, alert, user, patient_panel, audit_log")
    p.add_argument("--actor", help="user id, or 'unknown' for logins naming no account")
    p.add_argument("--since", type=_aware_time, help="ISO 8601 time; without an offset, UTC")
    p.add_argument("--outcome", choices=["allowed", "denied", "error"])
    p.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100, max 1000)")
    p.set_defaults(func=_run(_audit))

    p = sub.add_parser("publish-config", help="publish a gateway's bindings on its retained config topic")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_publish_config)


def _run(action: Callable[[argparse.Namespace, Any], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from vitalgate.admin import AdminError
        from vitalgate.wiring import build_clinic_sessions

        sessions = build_clinic_sessions(args.settings)
        try:
            with sessions() as session:
                code = action(args, session)
                session.commit()
                return code
        except AdminError as exc:
            print(f"vitalgate admin: {exc}", file=sys.stderr)
            return 2

    return run


def _init_db(args: argparse.Namespace, session: Any) -> int:
    print("clinic database is at the newest schema")
    return 0


def _add_clinic(args: argparse.Namespace, session: Any) -> int:
    from storage.clinic.models import GuidelineProfile
    from vitalgate.admin import add_clinic

    add_clinic(
        session, args.clinic_id, args.name, profile=GuidelineProfile(args.profile), timezone=args.timezone
    )
    print(f"clinic {args.clinic_id} enrolled")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _add_user(args: argparse.Namespace, session: Any) -> int:
    from storage.clinic.models import UserRole
    from vitalgate.admin import AdminError, add_user

    password = _read_password()
    if len(password) < 12:
        raise AdminError("passwords need at least 12 characters")
    add_user(
        session,
        clinic_id=args.clinic_id,
        user_id=args.user_id,
        email=args.email,
        display_name=args.name,
        roles=[UserRole(r) for r in args.role],
        password=password,
    )
    print(f"user {args.user_id} created")
    return 0


def _unlock_account(args: argparse.Namespace, session: Any) -> int:
    from vitalgate.admin import unlock_account

    failed = unlock_account(session, args.user_id)
    print(f"user {args.user_id} unlocked ({failed} consecutive failed logins cleared)")
    return 0


def _add_patient(args: argparse.Namespace, session: Any) -> int:
    from vitalgate.admin import add_patient

    add_patient(
        session,
        clinic_id=args.clinic_id,
        patient_id=args.patient_id,
        given_name=args.given_name,
        family_name=args.family_name,
        family_doctor_id=args.doctor,
        staff_ids=args.staff,
    )
    print(f"patient {args.patient_id} enrolled")
    return 0


def _add_gateway(args: argparse.Namespace, session: Any) -> int:
    from vitalgate.admin import add_gateway

    password = add_gateway(session, clinic_id=args.clinic_id, gateway_id=args.gateway_id)
    print(f"gateway {args.gateway_id} registered")
    print(f"MQTT username: {args.gateway_id}")
    print(f"MQTT password (shown once; add it to the broker with mosquitto_passwd): {password}")
    return 0


def _bind_meter(args: argparse.Namespace, session: Any) -> int:
    from storage.clinic.models import MeterKind
    from vitalgate.admin import bind_meter
    from vitals.readings import DeviceIdentity

    device = DeviceIdentity(
        manufacturer=args.manufacturer,
        model=args.model,
        serial_number=args.serial_number,
        address=args.address,
    )
    bind_meter(
        session,
        gateway_id=args.gateway_id,
        device=device,
        kind=MeterKind(args.kind),
        patient_id=args.patient_id,
        device_user_id=args.user_id,
    )
    print(f"meter {device.meter_key} bound to patient {args.patient_id} via {args.gateway_id}")
    return 0


def _aware_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _audit(args: argparse.Namespace, session: Any) -> int:
    from storage.clinic.audit import MAX_AUDIT_PAGE, AuditOutcome, audit_entry_json, find_audit_entries
    from vitalgate.admin import AdminError

    if not 1 <= args.limit <= MAX_AUDIT_PAGE:
        raise AdminError(f"--limit must be between 1 and {MAX_AUDIT_PAGE}")
    if args.patient_id is not None and args.object_type not in (None, "patient"):
        raise AdminError("--patient-id names a patient; leave out --object-type or give 'patient'")
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


def _publish_config(args: argparse.Namespace) -> int:
    from storage.clinic.repository import ClinicRepository
    from vitalgate.admin import publish_gateway_config
    from vitalgate.wiring import build_clinic_sessions

    mqtt = args.settings.mqtt
    if mqtt.username is None or mqtt.password is None:
        print(
            "vitalgate admin: mqtt.username and mqtt.password (a clinic broker account) are needed",
            file=sys.stderr,
        )
        return 2
    config = ClinicRepository(build_clinic_sessions(args.settings)).gateway_config(
        args.gateway_id, issued_at=datetime.now(UTC)
    )
    publish_gateway_config(
        config,
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value(),
        tls_ca_file=str(mqtt.tls_ca_file) if mqtt.tls_ca_file else None,
    )
    print(f"config with {len(config.bindings)} binding(s) published for gateway {args.gateway_id}")
    return 0

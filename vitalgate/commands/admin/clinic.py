"""The clinic's own commands: `add-clinic` and `set-clinic`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from vitalgate.commands.admin.runner import actor_command, fail, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add `add-clinic` and `set-clinic`."""
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
    p.set_defaults(func=actor_command(_set_clinic, "update_clinic_settings", "clinic", "clinic_id"))


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
        return fail(f"{exc} ({exc.code})")
    except ValueError as exc:  # vitalgate.administration.AdminError
        return fail(str(exc))
    finally:
        database.close()
    print(f"clinic {args.clinic_id} enrolled")
    return 0


def _set_clinic(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.clinic import update_clinic_settings
    from storage.clinic.models import GuidelineProfile
    from vitals.units import GlucoseUnit

    clinic = in_transaction(
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

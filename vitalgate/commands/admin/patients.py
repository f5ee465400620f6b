"""Patient commands: enrolment, details, care team members, discharge and readmission."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from vitalgate.commands.admin.runner import actor_command, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add the patient commands, `add-patient` to `readmit-patient`."""
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
        func=actor_command(_add_patient, "enrol_patient", "patient", "patient_id", clinic_from_object=False)
    )

    p = command("update-patient", "change a patient's names, birth date, phone or e-mail address")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--given-name")
    p.add_argument("--family-name")
    p.add_argument("--birth-date", help="YYYY-MM-DD; an empty value clears it")
    p.add_argument("--phone", help="an empty value clears it")
    p.add_argument("--email", help="an empty value clears it")
    p.set_defaults(func=actor_command(_update_patient, "update_patient", "patient", "patient_id"))

    p = command(
        "add-care-team-member", "add a doctor or staff member to a patient's care team (notified last)"
    )
    p.add_argument("--patient-id", required=True)
    p.add_argument("--user-id", required=True)
    p.add_argument("--team-role", choices=["family_doctor", "clinic_staff"], required=True)
    p.set_defaults(func=actor_command(_add_member, "add_care_team_member", "patient", "patient_id"))

    p = command("remove-care-team-member", "take a member off a patient's care team")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--user-id", required=True)
    p.set_defaults(func=actor_command(_remove_member, "remove_care_team_member", "patient", "patient_id"))

    p = command("discharge-patient", "discharge a patient: off every panel, meters unbound, data kept")
    p.add_argument("--patient-id", required=True)
    p.set_defaults(func=actor_command(_discharge, "discharge_patient", "patient", "patient_id"))

    p = command("readmit-patient", "re-admit a discharged patient")
    p.add_argument("--patient-id", required=True)
    p.set_defaults(func=actor_command(_readmit, "readmit_patient", "patient", "patient_id"))


def _add_patient(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import enrol_patient

    patient = in_transaction(
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

    in_transaction(
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

    member = in_transaction(
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

    in_transaction(
        sessions,
        lambda s: remove_care_team_member(s, actor, args.patient_id, user_id=args.user_id),
    )
    print(f"user {args.user_id} off patient {args.patient_id}'s care team")
    return 0


def _discharge(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import discharge_patient

    discharge = in_transaction(sessions, lambda s: discharge_patient(s, actor, args.patient_id))
    print(f"patient {args.patient_id} discharged; {len(discharge.ended_bindings)} meter binding(s) ended")
    for gateway_id in discharge.gateway_ids:
        print(
            f"publish gateway {gateway_id}'s bindings: vitalgate admin publish-config --gateway-id {gateway_id}"
        )
    return 0


def _readmit(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.patients import readmit_patient

    in_transaction(sessions, lambda s: readmit_patient(s, actor, args.patient_id))
    print(f"patient {args.patient_id} re-admitted")
    return 0

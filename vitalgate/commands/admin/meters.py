"""Meter commands: registering a meter, and binding, unbinding and moving it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vitalgate.commands.admin.runner import actor_command, aware_time, fail, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add the meter commands, `register-meter` to `move-meter`."""
    p = command("register-meter", "register a meter by its Device Information")
    p.add_argument("--clinic-id")
    _meter_identity(p)
    p.set_defaults(func=actor_command(_register_meter, "register_meter", "meter"))

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
    p.set_defaults(func=actor_command(_bind_meter, "bind_meter", "gateway", "gateway_id"))

    p = command("unbind-meter", "end a binding now, or at a past time (not before it began)")
    p.add_argument("--binding-id", type=int, required=True)
    p.add_argument("--at", type=aware_time, help="ISO 8601 time; without an offset, UTC (default: now)")
    p.set_defaults(func=actor_command(_unbind_meter, "unbind_meter", "binding", "binding_id"))

    p = command("move-meter", "end a binding and bind the meter to another patient, from now on")
    p.add_argument("--binding-id", type=int, required=True)
    p.add_argument("--patient-id", required=True)
    p.add_argument("--gateway-id", help="default: the same gateway")
    p.add_argument("--user-id", type=int, default=None, help="cuff user slot (default: every slot)")
    p.add_argument("--prior-memory-belongs", action="store_true")
    p.set_defaults(func=actor_command(_move_meter, "move_meter", "binding", "binding_id"))


def _meter_identity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["blood_pressure", "glucose"], required=True)
    p.add_argument("--manufacturer", required=True)
    p.add_argument("--model", required=True)
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--serial-number")
    ident.add_argument("--address", help="BLE address, when the meter reports no serial number")


def _register_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import register_meter
    from storage.clinic.models import MeterKind

    meter = in_transaction(
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
        return fail("a meter needs a manufacturer and model (1-64 characters) and a serial number or address")

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

    binding = in_transaction(sessions, change)
    memory = "its earlier readings too" if args.prior_memory_belongs else "readings from now on"
    print(
        f"binding {binding.binding_id}: meter {device.meter_key} bound to patient {args.patient_id} via "
        f"{args.gateway_id} ({memory})"
    )
    print(f"publish it: vitalgate admin publish-config --gateway-id {args.gateway_id}")
    return 0


def _unbind_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import unbind_meter

    binding = in_transaction(
        sessions,
        lambda s: unbind_meter(s, actor, binding_id=args.binding_id, unbound_at=args.at),
    )
    print(f"binding {binding.binding_id} ended at {binding.unbound_at.isoformat()}")
    print(f"publish it: vitalgate admin publish-config --gateway-id {binding.gateway_id}")
    return 0


def _move_meter(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from storage.clinic.administration.meters import move_meter

    ended, new = in_transaction(
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

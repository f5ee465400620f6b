"""`vitalgate simulate`: virtual patients with virtual meters, on an accelerated clock.

    vitalgate simulate --patients 3 --story stable --story bp-rising --speed 3600 --run-s 10
    vitalgate simulate --patients 2 --expose tcp-server:127.0.0.1:7001        # until Ctrl-C
    vitalgate simulate --patients 1 --hardware usb:0                           # a real radio

Prints what each meter holds. With ``--expose``, a gateway in another process reaches the meters
through ``VirtualRadio.remote("tcp-client:127.0.0.1:7001")``; with ``--hardware``, the first meter
runs on a USB Bluetooth controller so a real BlueZ gateway can pair and sync with it
(docs/virtual-meters.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_drivers.virtual.meter import VirtualMeter
    from device_drivers.virtual.simulator import Simulation
    from device_drivers.virtual.stories import Story


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate", help="run virtual patients with virtual Bluetooth meters (no radio needed)"
    )
    parser.add_argument("--patients", type=int, default=3, help="number of virtual patients (default 3)")
    parser.add_argument(
        "--story",
        action="append",
        default=None,
        metavar="NAME|FILE.json",
        help="story to play (repeatable, assigned round-robin); shipped: stable, bp-rising, "
        "recurrent-hypos, missed-days, cuff-errors (default: stable)",
    )
    parser.add_argument(
        "--speed", type=float, default=3600.0, help="simulated seconds per real second (default 3600)"
    )
    parser.add_argument("--history-days", type=int, default=7, help="days of readings already on the meters")
    parser.add_argument(
        "--run-s",
        type=float,
        default=None,
        help="real seconds to run before printing (default: 0, or until Ctrl-C with --expose)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the patients' series (default 1)")
    parser.add_argument(
        "--expose",
        default=None,
        metavar="TRANSPORT",
        help="serve an HCI controller on the meters' link, e.g. tcp-server:127.0.0.1:7001",
    )
    parser.add_argument(
        "--hardware",
        default=None,
        metavar="TRANSPORT",
        help="run the first meter on a Bluetooth controller, e.g. usb:0 (bumble transport name)",
    )
    parser.add_argument(
        "--passkey", type=int, default=123456, help="PIN shown by passkey meters (default 123456)"
    )
    parser.add_argument(
        "--events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print meter events while running: measurements, gateway connections, transfers",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device_drivers.virtual.stories import StoryError, load_story

    try:
        stories = [load_story(name) for name in (args.story or ["stable"])]
    except StoryError as error:
        print(f"vitalgate simulate: {error}", file=sys.stderr)
        return 2
    if args.patients < 1 or args.speed <= 0 or args.history_days < 0:
        print("vitalgate simulate: --patients >= 1, --speed > 0, --history-days >= 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_simulate(args, stories))
    except KeyboardInterrupt:
        return 130


async def _simulate(args: argparse.Namespace, stories: list[Story]) -> int:
    from device_drivers.virtual.clock import SimulationClock
    from device_drivers.virtual.radio import VirtualRadio
    from device_drivers.virtual.simulator import Simulation

    clock = SimulationClock(start=dt.datetime.now(dt.UTC), speed=args.speed)
    async with VirtualRadio() as radio:
        simulation = Simulation(
            radio,
            clock,
            stories,
            patients=args.patients,
            seed=args.seed,
            history_days=args.history_days,
            fixed_passkey=args.passkey,
        )
        await simulation.setup(hardware_transport=args.hardware)
        if args.expose:
            await radio.serve_controller(args.expose)
            print(f"meters reachable: open the gateway's adapter as {_client_spec(args.expose)}", flush=True)
        print(simulation.describe(), flush=True)
        if args.events:
            _print_events(simulation)
        simulation.start()
        try:
            run_s = args.run_s if args.run_s is not None else (None if args.expose else 0.0)
            if run_s is None:
                await asyncio.Event().wait()  # until Ctrl-C
            elif run_s > 0:
                await asyncio.sleep(run_s)
                print(f"\nafter {run_s:g} s ({run_s * args.speed / 3600:.1f} simulated hours):", flush=True)
                print(simulation.describe(), flush=True)
        finally:
            with contextlib.suppress(Exception):
                await simulation.stop()
    return 0


#: Meter events worth a line on the console.
PRINTED_EVENTS = frozenset({"measurement", "connected", "paired", "transfer_done", "disconnected"})


def _print_events(simulation: Simulation) -> None:
    for simulated in simulation.patients:
        for meter in simulated.meters:

            def on_event(
                event: str, meter: VirtualMeter = meter, patient_id: str = simulated.patient.patient_id
            ) -> None:
                if event in PRINTED_EVENTS:
                    when = simulation.clock.now().strftime("%Y-%m-%d %H:%M")
                    print(f"[{when}] {patient_id} {meter.persona.key} {meter.address}: {event}", flush=True)

            meter.add_listener(on_event)


def _client_spec(expose: str) -> str:
    """``tcp-server:HOST:PORT`` -> ``tcp-client:HOST:PORT`` (``_`` = all interfaces -> 127.0.0.1)."""
    scheme, _, rest = expose.partition(":")
    if scheme != "tcp-server":
        return expose
    host, _, port = rest.rpartition(":")
    return f"tcp-client:{'127.0.0.1' if host in ('', '_', '0.0.0.0') else host}:{port}"  # noqa: S104

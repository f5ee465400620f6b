"""`vitalgate gateway run | pair | devices | status`: the edge gateway in the patient's home."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from gateway.app import Gateway, GatewayOptions
from gateway.bindings import Bindings, BindingsError, MeterProfile
from gateway.health import read_status_file
from gateway.meters import Collector
from gateway.outbox import Outbox
from vitalgate.wiring import gateway_options

if TYPE_CHECKING:
    from gateway.bluez_agent import PasskeyPrompt

logger = logging.getLogger(__name__)

PROFILE_CHOICES = {"bp": MeterProfile.BLOOD_PRESSURE, "glucose": MeterProfile.GLUCOSE}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("gateway", help="the edge gateway: meters -> outbox -> MQTT")
    commands = parser.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)

    run = commands.add_parser("run", help="run the gateway until stopped (systemd: Type=notify)")
    _virtual_option(run)
    run.set_defaults(func=run_command)

    pair = commands.add_parser("pair", help="list meters advertising now, or bond and bind one")
    pair.add_argument("--scan-seconds", type=float, default=10.0, help="how long to listen (listing)")
    pair.add_argument("--address", help="the meter to bond with (AA:BB:CC:DD:EE:FF)")
    pair.add_argument("--profile", choices=sorted(PROFILE_CHOICES), help="bp or glucose")
    pair.add_argument("--patient", help="opaque patient id to bind the meter (and slot) to")
    pair.add_argument("--user-slot", type=int, default=None, help="cuff user slot for --patient")
    pair.add_argument("--passkey", type=int, default=None, help="PIN shown by the meter (else asked)")
    pair.add_argument("--replace", action="store_true", help="move a meter paired at another address")
    _virtual_option(pair)
    pair.set_defaults(func=pair_command)

    devices = commands.add_parser("devices", help="paired meters, their bindings and sync positions")
    devices.set_defaults(func=devices_command)

    status = commands.add_parser("status", help="the last health report and the outbox now")
    status.add_argument("--max-age-s", type=float, default=600.0, help="report older than this: exit 1")
    status.set_defaults(func=status_command)


def _virtual_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--virtual-radio",
        metavar="TRANSPORT",
        default=None,
        help="reach virtual meters through a bumble transport, e.g. tcp-client:127.0.0.1:7001 "
        "(see docs/virtual-meters.md); default: the system's Bluetooth adapter (BlueZ)",
    )


def _bindings(options: GatewayOptions) -> Bindings:
    return Bindings(options.effective_bindings_path, options.gateway_id).load()


# -- run -------------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    options = gateway_options(args.settings)
    try:
        asyncio.run(_run(options, args.virtual_radio))
    except BindingsError as exc:
        print(f"vitalgate gateway: {exc}", file=sys.stderr)
        return 2
    return 0


async def _run(
    options: GatewayOptions, virtual_radio: str | None, collector: Collector | None = None
) -> None:
    """Run the gateway until SIGTERM/SIGINT (also used by the process-level tests)."""
    from gateway.collect import default_collector

    collector = collector or default_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    backends = None
    if virtual_radio is not None:
        from gateway.virtual_radio import open_virtual_radio

        backends = await open_virtual_radio(virtual_radio, options.state_dir / "virtual-bonds.json")
    try:
        gateway = Gateway(
            options,
            collector,
            scanner_backend=backends.scanner_backend if backends else None,
            client_backend=backends.client_backend if backends else None,
        )
        await gateway.run(stop)
    finally:
        if backends is not None:
            await backends.close()


# -- pair ------------------------------------------------------------------------------------------


def pair_command(args: argparse.Namespace) -> int:
    options = gateway_options(args.settings)
    if args.address is not None and args.profile is None:
        print("vitalgate gateway pair: --address needs --profile bp|glucose", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_pair(options, args))
    except Exception as exc:  # reported to the person at the keyboard, with a non-zero exit
        from gateway.pairing import PairingError

        if isinstance(exc, (PairingError, BindingsError, TimeoutError)):
            print(f"vitalgate gateway pair: {exc}", file=sys.stderr)
            return 1
        raise


async def _prompt_passkey(address: str) -> int | None:
    text = await asyncio.to_thread(input, f"PIN shown on the meter {address}: ")
    return int(text) if text.strip().isdigit() else None


async def _prompt_confirm(address: str, passkey: int) -> bool:
    text = await asyncio.to_thread(input, f"Does the meter {address} show {passkey:06d}? [y/N] ")
    return text.strip().lower() in ("y", "yes")


def _given_passkey(passkey: int) -> PasskeyPrompt:
    async def given(_address: str) -> int | None:
        return passkey

    return given


async def _pair(options: GatewayOptions, args: argparse.Namespace) -> int:
    from gateway import pairing

    bindings = _bindings(options)
    backends = None
    if args.virtual_radio is not None:
        from gateway.virtual_radio import open_virtual_radio

        backends = await open_virtual_radio(args.virtual_radio, options.state_dir / "virtual-bonds.json")
    scanner_backend = backends.scanner_backend if backends else None
    client_backend = backends.client_backend if backends else None
    try:
        if args.address is None:
            found = await pairing.discover(
                bindings, duration_s=args.scan_seconds, scanner_backend=scanner_backend
            )
            for c in found:
                mark = "paired" if c.already_paired else "new"
                print(f"{c.address}  {c.profile.value:<15} rssi={c.rssi:>4}  {mark:<6}  {c.name or ''}")
            if not found:
                print("no meter advertising: put the meter in pairing mode and try again", file=sys.stderr)
            return 0
        kwargs: dict[str, Any] = dict(
            profile=PROFILE_CHOICES[args.profile],
            patient_id=args.patient,
            user_id=args.user_slot,
            passkey=args.passkey,
            replace=args.replace,
            client_backend=client_backend,
            scanner_backend=scanner_backend,
        )
        if backends is None and sys.platform.startswith("linux"):
            # BlueZ needs an agent to answer passkey requests; bleak has none (reliability.md §5.4).
            from gateway.bluez_agent import PairingAgent, RegisteredAgent

            # --passkey answers the agent's request as the person would type it (scripts, tests).
            passkey_prompt = _prompt_passkey if args.passkey is None else _given_passkey(args.passkey)
            agent = PairingAgent(args.address, passkey_prompt, _prompt_confirm)
            async with RegisteredAgent(agent):
                meter = await pairing.pair(bindings, args.address, **kwargs)
        else:
            meter = await pairing.pair(bindings, args.address, **kwargs)
        print(json.dumps({"paired": meter.address, "meter_key": meter.meter_key, "patient": args.patient}))
        return 0
    finally:
        if backends is not None:
            await backends.close()


# -- devices / status ------------------------------------------------------------------------------


def devices_command(args: argparse.Namespace) -> int:
    options = gateway_options(args.settings)
    bindings = _bindings(options)
    unbound: dict[tuple[str, int | None], int] = {}
    positions: dict[str, int | None] = {}
    if options.effective_outbox_path.exists():
        with Outbox(options.effective_outbox_path, capacity=options.outbox_capacity) as outbox:
            unbound = outbox.unbound_summary()
            for meter in bindings.meters:
                position = outbox.sync_position(meter.meter_key)
                positions[meter.meter_key] = None if position is None else position.last_sequence_number
    rows = []
    effective = bindings.effective_bindings()
    for meter in bindings.meters:
        rows.append(
            {
                "address": meter.address,
                "meter_key": meter.meter_key,
                "profile": meter.profile.value,
                "paired_at": meter.paired_at.isoformat(),
                "bindings": [
                    {"user_slot": b.user_id, "patient_id": b.patient_id}
                    for b in effective
                    if b.meter_key == meter.meter_key
                ],
                "last_sequence_number": positions.get(meter.meter_key),
            }
        )
    out = {
        "meters": rows,
        "unbound_readings": [
            {"meter_key": key, "user_slot": slot, "readings": count} for (key, slot), count in unbound.items()
        ],
    }
    print(json.dumps(out, indent=2))
    return 0


def status_command(args: argparse.Namespace) -> int:
    options = gateway_options(args.settings)
    report = read_status_file(options.status_path)
    out: dict[str, Any] = {"last_report": None if report is None else json.loads(report.model_dump_json())}
    code = 0
    if options.effective_outbox_path.exists():
        with Outbox(options.effective_outbox_path, capacity=options.outbox_capacity) as outbox:
            stats = outbox.stats()
        out["outbox"] = {
            "depth": stats.depth,
            "capacity": stats.capacity,
            "full": stats.full,
            "in_flight": stats.in_flight,
            "unbound": stats.unbound,
            "oldest_unacked_age_s": None
            if stats.oldest_committed_at is None
            else round(time.time() - stats.oldest_committed_at, 1),
        }
        if stats.full:
            code = 1
    if report is None or (time.time() - report.reported_at.timestamp()) > args.max_age_s:
        code = 1
    print(json.dumps(out, indent=2, default=str))
    return code

"""Run a gateway PROCESS for process-level tests and the memory bench.

    python -m testbed.gateway_proc --virtual-radio tcp-client:127.0.0.1:PORT [--collector burst]

Settings come from VITALGATE_* variables, exactly as `vitalgate gateway run` takes them; this entry
point only adds the choice of collector (``default``: device_drivers' procedures; ``burst``: a
stand-in that reads the meter's identity over GATT and commits ``--burst`` readings per session, to
load the outbox) and a short re-sync interval.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Sequence

from bleak import BleakClient

from device_drivers.profiles.uuids import BATTERY_LEVEL
from gateway.meters import Collector, MeterSession
from gateway.pairing import read_identity
from testbed.factories import glucose
from vitalgate.commands.gateway import _run
from vitalgate.logs import configure_logging
from vitalgate.settings import load_settings
from vitalgate.wiring import gateway_options


def burst_collector(per_session: int, batch: int) -> Collector:
    async def collect(client: BleakClient, session: MeterSession) -> None:
        identity = await read_identity(client, session.meter.address)
        session.report_battery((await client.read_gatt_char(BATTERY_LEVEL))[0])
        first = (session.since_sequence_number or 0) + 1
        for start in range(first, first + per_session, batch):
            end = min(start + batch, first + per_session)
            readings = [glucose(n % 0xFFFF, device=identity, patient_id=None) for n in range(start, end)]
            await session.commit(readings, last_sequence_number=end - 1)

    return collect


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--virtual-radio", required=True)
    parser.add_argument("--collector", choices=["default", "burst"], default="default")
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--resync-after-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    settings = load_settings(None)
    configure_logging(settings.log_level, "text")
    options = gateway_options(settings)
    options = dataclasses.replace(
        options,
        ble=dataclasses.replace(options.ble, resync_after_s=args.resync_after_s, connect_timeout_s=10),
    )
    collector = burst_collector(args.burst, args.batch) if args.collector == "burst" else None
    asyncio.run(_run(options, args.virtual_radio, collector))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

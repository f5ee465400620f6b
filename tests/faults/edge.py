"""A gateway PROCESS for the fault scenarios: the gateway's delivery path, fed by simulated meters.

    python -m tests.faults.edge --gateway-id GW --outbox PATH --host H --port P --username U
        --password W --patients K --count N --t0 EPOCH [--rate R] ...

The delivery path is the product's own: `gateway.outbox.Outbox` (WAL, synchronous=FULL),
`gateway.uplink.MqttUplink` and `Forwarder` (resend after the ack timeout and on every reconnect,
delete only on the application ack), `gateway.health.GatewayHealth` written to the status file and the
retained status topic, as `gateway.app.Gateway` composes them. Only the Bluetooth side is replaced:
the meters of `tests.faults.meters.Home` hand their readings to the outbox at `--rate` readings a
second, as a meter session does through `Gateway.commit`; a batch the outbox refuses (full, or the
disk is full) stays on the meter and is offered again after a pause, as `gateway.meters` does
(BLE to outbox is covered by tests/gateway with virtual meters). A restarted process offers every
reading again from the first, as a cuff that reports its whole memory does: the outbox keeps what
it holds once and knows what was acked.

Runs until SIGTERM/SIGINT (a clean stop) or SIGKILL (the scenarios' crash).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.health import GatewayHealth, write_status_file
from gateway.outbox import DEFAULT_CAPACITY, Outbox, OutboxError
from gateway.uplink import Forwarder, ForwarderConfig, MqttUplink, UplinkConfig, UplinkError
from tests.faults.meters import Home
from vitals.payload import GatewayStatus
from vitals.topics import status_topic

logger = logging.getLogger("faults.edge")

REFUSED_PAUSE_S = 0.5  # a refused batch is offered again after this (the meter's next session)


async def feed(
    home: Home, outbox: Outbox, forwarder: Forwarder, health: GatewayHealth, rate: float, batch: int
) -> None:
    """The meters: every reading of the home, in order, at `rate` a second (0: as fast as possible)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    g = 0
    while g < home.count:
        if rate > 0:
            due = started + g / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())  # the meters' pace, not a wait for an event
        stop = min(home.count, g + batch)
        readings = [home.reading(i) for i in range(g, stop)]
        try:
            stats = await asyncio.to_thread(outbox.stats)
            if stats.full:
                raise OutboxError(f"outbox full ({stats.depth}/{stats.capacity}): records stay on the meter")
            await asyncio.to_thread(outbox.commit, readings)
        except OutboxError as exc:
            health.error(f"outbox: {exc}")
            logger.error("meter batch refused, it stays on the meter: %s", exc)
            await asyncio.sleep(REFUSED_PAUSE_S)  # the meter's next session
            started += REFUSED_PAUSE_S  # the pace resumes where it stopped
            continue
        g = stop
        forwarder.wake()
        print(f"committed {g}", flush=True)


async def status_loop(
    home: Home, outbox: Outbox, uplink: MqttUplink, health: GatewayHealth, path: Path, interval_s: float
) -> None:
    while True:
        report = health.report(await asyncio.to_thread(outbox.stats))
        await asyncio.to_thread(write_status_file, path, report)
        if uplink.connected:
            with contextlib.suppress(UplinkError):
                uplink.publish(status_topic(home.gateway_id), report.model_dump_json(), retain=True)
        await asyncio.sleep(interval_s)  # the report's period


async def run(args: argparse.Namespace) -> int:
    home = Home(args.gateway_id, args.patients, args.count, args.t0, args.step)
    outbox = await asyncio.to_thread(Outbox(Path(args.outbox), capacity=args.capacity).open)
    health = GatewayHealth(home.gateway_id)
    will = GatewayStatus(gateway_id=home.gateway_id, online=False, reported_at=datetime.now(UTC))
    uplink = MqttUplink(
        UplinkConfig(
            gateway_id=home.gateway_id,
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
            allow_plain_mqtt=True,  # the test broker listens on loopback
            client_id=home.gateway_id,
            keepalive_s=args.keepalive,
            connect_timeout_s=5.0,
            reconnect_min_s=1,
            reconnect_max_s=2,
        ),
        will=will,
    )
    forwarder = Forwarder(
        home.gateway_id,
        outbox,
        uplink,
        ForwarderConfig(ack_timeout_s=args.ack_timeout, batch_size=args.forward_batch, idle_poll_s=1.0),
    )
    await uplink.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(forwarder.run(), name="forwarder"),
        asyncio.create_task(
            feed(home, outbox, forwarder, health, args.rate, args.commit_batch), name="meters"
        ),
        asyncio.create_task(
            status_loop(home, outbox, uplink, health, Path(args.status_file), args.status_interval),
            name="status",
        ),
    ]
    stop_wait = asyncio.create_task(stop.wait())
    failed = 0
    try:
        while not stop.is_set():
            done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception() is not None:
                    # As gateway.app.Gateway.run: a failed part ends the process (systemd restarts it).
                    logger.error("gateway part failed", exc_info=task.exception())
                    failed = 1
                    stop.set()
            tasks = [t for t in tasks if not t.done()]
    finally:
        for task in [*tasks, stop_wait]:
            task.cancel()
        await asyncio.gather(*tasks, stop_wait, return_exceptions=True)
        final = health.report(await asyncio.to_thread(outbox.stats), online=False)
        await uplink.stop(final_status=final)
        await asyncio.to_thread(outbox.close)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway-id", required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--status-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--step", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="readings a second; 0: as fast as possible")
    parser.add_argument("--commit-batch", type=int, default=50)
    parser.add_argument("--forward-batch", type=int, default=100)
    parser.add_argument("--ack-timeout", type=float, default=5.0)
    parser.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY)
    parser.add_argument("--keepalive", type=int, default=5)
    parser.add_argument("--status-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())

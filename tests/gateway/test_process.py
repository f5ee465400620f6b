"""The gateway as a process: pairing through the CLI, kill -9 in a burst, outage of the broker."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.acker import Acker
from tests.gateway.helpers import wait_until
from tests.gateway.process_rig import GatewayProcess, MeterHost, gateway_env, run_cli
from vitalgate.mosquitto import MosquittoBroker

pytestmark = [pytest.mark.mosquitto]

GW = "gw-proc"


@pytest.fixture
def broker(mqtt_broker: MosquittoBroker) -> MosquittoBroker:
    mqtt_broker.add_gateway(GW)
    return mqtt_broker


@pytest.fixture
def acker(broker: MosquittoBroker) -> Iterator[Acker]:
    acker = Acker(broker).start()
    yield acker
    acker.stop()


def outbox_ids(path: Path) -> tuple[set[str], set[str], str]:
    """(held, acked, integrity) read straight from the gateway's SQLite file."""
    db = sqlite3.connect(path, timeout=10)
    try:
        if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'delivered'").fetchone()[0] == 0:
            return set(), set(), "ok"  # the gateway has not created its schema yet
        held = {r[0] for r in db.execute("SELECT reading_id FROM outbox")}
        acked = {r[0] for r in db.execute("SELECT reading_id FROM delivered")}
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return held, acked, integrity


async def pair_all(host: MeterHost, env: dict[str, str]) -> None:
    for i, meter in enumerate(host.meters):
        code, out, err = await run_cli(
            env, "gateway", "pair", "--virtual-radio", host.transport_spec,
            "--address", meter.address, "--profile", "glucose", "--patient", f"patient-{i}",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["paired"] == meter.address


async def test_kill_9_in_a_burst_loses_nothing_committed(
    tmp_path: Path, broker: MosquittoBroker, acker: Acker
) -> None:
    data_dir = tmp_path / "gw"
    env = gateway_env(broker, data_dir, GW)
    async with MeterHost() as host:
        await host.add_glucose_meter("GL-BURST-1")
        await host.add_glucose_meter("GL-BURST-2")
        await pair_all(host, env)
        outbox = data_dir / "gateway" / "outbox.sqlite3"
        args = ("--collector", "burst", "--burst", "3000", "--batch", "20")
        gateway = await GatewayProcess(env, host.transport_spec, tmp_path / "gw.log", args).start()
        try:
            # Kill in the middle of the burst: some readings committed, some sent, some acked.
            await wait_until(
                lambda: outbox.exists() and sum(map(len, outbox_ids(outbox)[:2])) >= 400,
                60,
                "burst under way",
            )
            await gateway.kill9()
            held, acked, integrity = outbox_ids(outbox)
            assert integrity == "ok"
            committed = held | acked
            assert acked <= set(acker.acked)  # deleted only after the application ack
            gateway = await GatewayProcess(env, host.transport_spec, tmp_path / "gw.log", args).start()
            assert await asyncio.to_thread(acker.wait_for, committed, 120)
        finally:
            await gateway.stop()
    held_after, _, _ = outbox_ids(outbox)
    assert not (held_after & committed)
    # What the gateway had deleted on an ack before the kill was never sent again.
    assert all(acker.received[rid] == 1 for rid in acked)


OUTAGE_S = float(os.environ.get("VITALGATE_OUTAGE_S", "20"))


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_S * 3 + 300)
async def test_broker_outage_while_meters_keep_producing_then_everything_arrives(
    tmp_path: Path, broker: MosquittoBroker, acker: Acker
) -> None:
    """Broker down for VITALGATE_OUTAGE_S seconds (CI: 20 s; the issue's figure: 300 s)."""
    data_dir = tmp_path / "gw"
    env = gateway_env(broker, data_dir, GW)
    loop = asyncio.get_running_loop()
    async with MeterHost() as host:
        for i in range(4):
            await host.add_glucose_meter(f"GL-OUT-{i}")
        await pair_all(host, env)
        outbox = data_dir / "gateway" / "outbox.sqlite3"
        # Each meter yields 10 new readings every ~2 s: the meters keep producing all along.
        args = ("--collector", "burst", "--burst", "10", "--batch", "10", "--resync-after-s", "2")
        gateway = await GatewayProcess(env, host.transport_spec, tmp_path / "gw.log", args).start()
        try:
            await wait_until(lambda: len(acker.acked) >= 40, 60, "first readings delivered")
            await asyncio.to_thread(broker.stop)
            down_at = loop.time()
            before = set(acker.acked)
            await asyncio.sleep(OUTAGE_S)  # the outage itself: this is the scenario, not a wait for an event
            held_during, _, _ = outbox_ids(outbox)
            await asyncio.to_thread(broker.start)
            up_at = loop.time()
            held_at_restart, acked_at_restart, _ = outbox_ids(outbox)
            committed = held_at_restart | acked_at_restart
            assert await asyncio.to_thread(acker.wait_for, committed, 120 + OUTAGE_S)
            drained_at = loop.time()
        finally:
            await gateway.stop()
    produced_during = len(held_during - before)
    print(
        f"\noutage {up_at - down_at:.0f} s: {produced_during} readings produced while the broker was down,"
        f" {len(committed)} committed in all, all acked {drained_at - up_at:.1f} s after the broker returned;"
        f" duplicates received: {sum(n - 1 for n in acker.received.values())}"
    )
    assert produced_during > 0

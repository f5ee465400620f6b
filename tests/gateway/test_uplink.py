"""Uplink + forwarder against a private Mosquitto: batches out, application acks back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.outbox import Outbox
from gateway.uplink import Forwarder, ForwarderConfig, MqttUplink, UplinkConfig
from testbed.acker import Acker
from testbed.factories import blood_pressure, glucose
from tests.gateway.helpers import wait_until
from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import GatewayConfig, GatewayStatus, MeterBinding
from vitals.topics import config_topic, status_topic

pytestmark = pytest.mark.mosquitto

GATEWAY_ID = "gw-uplink-test"


@dataclass
class Rig:
    outbox: Outbox
    uplink: MqttUplink
    forwarder: Forwarder
    task: asyncio.Task[None]


def uplink_config(broker: MosquittoBroker, gateway_id: str = GATEWAY_ID) -> UplinkConfig:
    username, password = broker.credentials(gateway_id)
    return UplinkConfig(
        gateway_id=gateway_id,
        host=broker.host,
        port=broker.port,
        username=username,
        password=password,
        allow_plain_mqtt=True,  # the test broker listens on loopback
        reconnect_min_s=1,
        reconnect_max_s=2,
    )


@pytest.fixture
def broker(mqtt_broker: MosquittoBroker) -> MosquittoBroker:
    mqtt_broker.add_gateway(GATEWAY_ID)
    return mqtt_broker


@pytest.fixture
def acker(broker: MosquittoBroker) -> Iterator[Acker]:
    acker = Acker(broker).start()
    yield acker
    acker.stop()


async def make_rig(
    broker: MosquittoBroker, tmp_path: Path, *, ack_timeout_s: float = 30.0, capacity: int = 10_000
) -> Rig:
    outbox = Outbox(tmp_path / "outbox.db", capacity=capacity).open()
    will = GatewayStatus(gateway_id=GATEWAY_ID, online=False, reported_at=datetime.now(UTC))
    uplink = MqttUplink(uplink_config(broker), will=will)
    forwarder = Forwarder(
        GATEWAY_ID, outbox, uplink, ForwarderConfig(ack_timeout_s=ack_timeout_s, batch_size=50)
    )
    await uplink.start()
    assert await uplink.wait_connected(10)
    task = asyncio.create_task(forwarder.run())
    return Rig(outbox, uplink, forwarder, task)


@pytest.fixture
async def rig(broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await make_rig(broker, tmp_path)
    yield rig
    rig.task.cancel()
    await rig.uplink.stop()
    rig.outbox.close()


async def test_every_committed_reading_is_delivered_and_acked_once(rig: Rig, acker: Acker) -> None:
    readings = [glucose(n) for n in range(1, 121)] + [blood_pressure(n) for n in range(1, 81)]
    rig.outbox.commit(readings)
    rig.forwarder.wake()
    ids = {r.reading_id for r in readings}
    assert await asyncio.to_thread(acker.wait_for, ids, 20)
    await wait_until(lambda: rig.outbox.stats().depth == 0, 10, "outbox to drain")
    assert set(acker.received) == ids
    assert set(acker.acked.values()) == {1}
    assert set(acker.received.values()) == {1}


async def test_unacked_readings_are_resent_after_the_timeout_acked_ones_never(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    readings = [glucose(n) for n in range(1, 21)]
    ignored = {r.reading_id for r in readings[::4]}
    # The acker stays silent the first time it sees every fourth reading, as if ingest lost it.
    acker = Acker(broker, should_ack=lambda rid, n: rid not in ignored or n > 1).start()
    rig = await make_rig(broker, tmp_path, ack_timeout_s=1.5)
    try:
        rig.outbox.commit(readings)
        rig.forwarder.wake()
        assert await asyncio.to_thread(acker.wait_for, [r.reading_id for r in readings], 20)
        await wait_until(lambda: rig.outbox.stats().depth == 0, 10, "outbox to drain")
        for reading in readings:
            expected = 2 if reading.reading_id in ignored else 1
            assert acker.received[reading.reading_id] == expected, reading.reading_id
    finally:
        rig.task.cancel()
        await rig.uplink.stop()
        rig.outbox.close()
        acker.stop()


async def test_rejected_readings_are_removed_and_not_resent(broker: MosquittoBroker, tmp_path: Path) -> None:
    readings = [blood_pressure(n) for n in range(1, 6)]
    poison = readings[2].reading_id
    acker = Acker(broker, reject=lambda rid: "unstorable" if rid == poison else None).start()
    rig = await make_rig(broker, tmp_path, ack_timeout_s=1.0)
    try:
        rig.outbox.commit(readings)
        rig.forwarder.wake()
        await wait_until(lambda: rig.outbox.stats().depth == 0, 15, "outbox to drain")
        assert acker.received[poison] == 1
    finally:
        rig.task.cancel()
        await rig.uplink.stop()
        rig.outbox.close()
        acker.stop()


async def test_broker_restart_resends_everything_unacked(
    broker: MosquittoBroker, tmp_path: Path, acker: Acker
) -> None:
    rig = await make_rig(broker, tmp_path)
    try:
        first = [glucose(n) for n in range(1, 11)]
        rig.outbox.commit(first)
        rig.forwarder.wake()
        assert await asyncio.to_thread(acker.wait_for, [r.reading_id for r in first], 15)
        await asyncio.to_thread(broker.kill)
        await wait_until(lambda: not rig.uplink.connected, 10, "uplink to notice the broker is gone")
        during = [glucose(n) for n in range(11, 41)]
        rig.outbox.commit(during)  # the meters keep producing during the outage
        rig.forwarder.wake()
        await asyncio.to_thread(broker.start)
        assert await asyncio.to_thread(acker.wait_for, [r.reading_id for r in during], 30)
        await wait_until(lambda: rig.outbox.stats().depth == 0, 15, "outbox to drain")
    finally:
        rig.task.cancel()
        await rig.uplink.stop()
        rig.outbox.close()


async def test_status_will_and_config(broker: MosquittoBroker, tmp_path: Path) -> None:
    received_configs: list[GatewayConfig] = []
    got_config = asyncio.Event()

    async def on_config(config: GatewayConfig) -> None:
        received_configs.append(config)
        got_config.set()

    # The clinic publishes the retained config before the gateway ever connects.
    username, password = broker.credentials("clinic")
    clinic = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    clinic.username_pw_set(username, password)
    statuses: list[GatewayStatus] = []
    clinic.on_message = lambda _c, _u, m: statuses.append(GatewayStatus.model_validate_json(m.payload))
    clinic.connect(broker.host, broker.port)
    clinic.loop_start()
    config = GatewayConfig(
        gateway_id=GATEWAY_ID,
        issued_at=datetime.now(UTC),
        bindings=(MeterBinding(meter_key="a|b|c", patient_id="p-1"),),
    )
    clinic.publish(config_topic(GATEWAY_ID), config.model_dump_json(), qos=1, retain=True).wait_for_publish(5)
    clinic.subscribe(status_topic(GATEWAY_ID), qos=1)

    outbox = Outbox(tmp_path / "o.db").open()
    will = GatewayStatus(gateway_id=GATEWAY_ID, online=False, reported_at=datetime.now(UTC))
    uplink = MqttUplink(uplink_config(broker), will=will)
    forwarder = Forwarder(GATEWAY_ID, outbox, uplink, on_config=on_config)
    await uplink.start()
    try:
        await asyncio.wait_for(got_config.wait(), 10)
        assert received_configs[0].bindings == config.bindings
        online = GatewayStatus(gateway_id=GATEWAY_ID, online=True, reported_at=datetime.now(UTC))
        uplink.publish(status_topic(GATEWAY_ID), online.model_dump_json(), retain=True)
        await wait_until(lambda: any(s.online for s in statuses), 10, "online status")
        assert forwarder.readings_sent == 0
    finally:
        await uplink.stop(
            final_status=GatewayStatus(gateway_id=GATEWAY_ID, online=False, reported_at=datetime.now(UTC))
        )
        outbox.close()
    await wait_until(lambda: not statuses[-1].online, 10, "offline status after stop")
    clinic.loop_stop()
    clinic.disconnect()


async def test_gateway_cannot_publish_as_another_gateway(broker: MosquittoBroker, tmp_path: Path) -> None:
    """The ACL confines each gateway to its own topics: credentials are per gateway."""
    broker.add_gateway("gw-other")
    acker = Acker(broker).start()
    outbox = Outbox(tmp_path / "o.db").open()
    # Credentials of gw-other, but claiming to be GATEWAY_ID in the topic.
    config = uplink_config(broker, "gw-other")
    spoof = dataclasses.replace(config, gateway_id=GATEWAY_ID, client_id="spoof")
    uplink = MqttUplink(spoof)
    forwarder = Forwarder(GATEWAY_ID, outbox, uplink, ForwarderConfig(ack_timeout_s=60))
    await uplink.start()
    task = asyncio.create_task(forwarder.run())
    try:
        assert await uplink.wait_connected(10)
        outbox.commit([glucose(1)])
        forwarder.wake()
        await wait_until(lambda: forwarder.readings_sent == 1, 10, "publish attempt")
        assert not await asyncio.to_thread(acker.wait_for, [glucose(1).reading_id], 2)
        assert outbox.stats().depth == 1  # never acked, so never deleted
    finally:
        task.cancel()
        await uplink.stop()
        outbox.close()
        acker.stop()


async def test_readings_travel_over_tls_with_the_gateway_credentials(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "tls-broker", tls=True)
    broker.start()
    try:
        broker.add_gateway(GATEWAY_ID)
        assert broker.tls_files is not None
        assert broker.tls_port is not None
        acker = Acker(broker).start()  # plain listener on loopback for the test's acker
        username, password = broker.credentials(GATEWAY_ID)
        config = UplinkConfig(
            gateway_id=GATEWAY_ID,
            host=broker.host,
            port=broker.tls_port,
            username=username,
            password=password,
            tls_ca_file=broker.tls_files.ca_file,
        )
        outbox = Outbox(tmp_path / "o.db").open()
        uplink = MqttUplink(config)
        forwarder = Forwarder(GATEWAY_ID, outbox, uplink)
        await uplink.start()
        task = asyncio.create_task(forwarder.run())
        try:
            assert await uplink.wait_connected(15)
            readings = [glucose(n) for n in range(1, 6)]
            outbox.commit(readings)
            forwarder.wake()
            assert await asyncio.to_thread(acker.wait_for, [r.reading_id for r in readings], 15)
            await wait_until(lambda: outbox.stats().depth == 0, 10, "outbox to drain")
        finally:
            task.cancel()
            await uplink.stop()
            outbox.close()
            acker.stop()
    finally:
        broker.stop()

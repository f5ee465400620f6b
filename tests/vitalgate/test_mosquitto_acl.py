"""The broker ACL confines each gateway to its own topics (DESIGN.md, MQTT; reliability.md §2)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from vitalgate.mosquitto import ACL_TEMPLATE, ROLE_ACL, BrokerRole, MosquittoBroker

pytestmark = pytest.mark.mosquitto
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 5.0


class Listener:
    def __init__(
        self,
        broker: MosquittoBroker,
        username: str,
        topic: str,
        *,
        port: int | None = None,
        tls: bool = False,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(*broker.credentials(username))
        if tls:
            assert broker.tls_files is not None
            self.client.tls_set(ca_certs=str(broker.tls_files.ca_file))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, port or broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT_S)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, msg.payload))
        self.got.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(broker: MosquittoBroker, username: str, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(*broker.credentials(username))
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def listener(mosquitto_broker: MosquittoBroker) -> Iterator[Listener]:
    # The admin account sees every topic, so it can tell what the broker let through.
    lis = Listener(mosquitto_broker, "admin", "vitalgate/#")
    yield lis
    lis.close()


def test_gateway_publishes_its_own_readings(mosquitto_broker: MosquittoBroker, listener: Listener) -> None:
    mosquitto_broker.add_gateway("gw-acl-1")
    publish(mosquitto_broker, "gw-acl-1", "vitalgate/v1/gw/gw-acl-1/readings", b"mine")
    assert listener.got.wait(WAIT_S)
    assert listener.messages == [("vitalgate/v1/gw/gw-acl-1/readings", b"mine")]


def test_gateway_cannot_forge_another_homes_readings_or_acks(
    mosquitto_broker: MosquittoBroker, listener: Listener
) -> None:
    mosquitto_broker.add_gateway("gw-acl-2")
    publish(mosquitto_broker, "gw-acl-2", "vitalgate/v1/gw/gw-other/readings", b"forged")
    publish(mosquitto_broker, "gw-acl-2", "vitalgate/v1/gw/gw-acl-2/acks", b"self-ack")
    publish(mosquitto_broker, "gw-acl-2", "vitalgate/v1/gw/gw-acl-2/status", b"status")  # allowed: a marker
    assert listener.got.wait(WAIT_S)
    assert listener.messages == [("vitalgate/v1/gw/gw-acl-2/status", b"status")]


def test_gateway_cannot_read_another_homes_config(mosquitto_broker: MosquittoBroker) -> None:
    mosquitto_broker.add_gateway("gw-acl-3")
    spy = Listener(mosquitto_broker, "gw-acl-3", "vitalgate/v1/gw/gw-victim/config")
    own = Listener(mosquitto_broker, "gw-acl-3", "vitalgate/v1/gw/gw-acl-3/config")
    publish(mosquitto_broker, "clinic", "vitalgate/v1/gw/gw-victim/config", b"bindings")
    publish(mosquitto_broker, "clinic", "vitalgate/v1/gw/gw-acl-3/config", b"own")
    assert own.got.wait(WAIT_S)
    assert spy.messages == []
    spy.close()
    own.close()


def test_wrong_password_is_refused(mosquitto_broker: MosquittoBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("ingest", "wrong")
    refused = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: refused.set() if reason.is_failure else None
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.loop_start()
    assert refused.wait(WAIT_S)
    client.loop_stop()


def test_tls_listener_serves_gateways(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "tls", tls=True) as broker:
        broker.add_gateway("gw-tls")
        assert broker.tls_port is not None
        lis = Listener(broker, "gw-tls", "vitalgate/v1/gw/gw-tls/acks", port=broker.tls_port, tls=True)
        assert lis.client.is_connected()
        lis.close()


def test_deployed_acl_matches_the_one_tests_run_against() -> None:
    deployed = (REPO / "deploy" / "mosquitto" / "vitalgate.acl").read_text(encoding="utf-8")
    for line in ACL_TEMPLATE.splitlines():
        if line.startswith("pattern"):
            assert line in deployed
    for role in (BrokerRole.INGEST, BrokerRole.CLINIC):
        assert f"user {role.value}\n{ROLE_ACL[role]}" in deployed

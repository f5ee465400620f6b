"""The ACL of the test broker, and the documented fallback for brokers without the dynamic security
plugin (deploy/mosquitto/without-plugin/ as shipped), confine each gateway to its own topics
(DESIGN.md, MQTT; reliability.md §2)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.fixtures.mosquitto import BrokerAccount, DeployedRig, MqttProbe, deployed_rig
from vitalgate.mosquitto import ACL_TEMPLATE, ROLE_ACL, BrokerRole, MosquittoBroker

pytestmark = pytest.mark.mosquitto
REPO = Path(__file__).resolve().parents[2]
FALLBACK = REPO / "deploy" / "mosquitto" / "without-plugin"
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
        self.messages.append((msg.topic, bytes(msg.payload)))
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


def test_fallback_acl_gives_the_rights_tests_run_against() -> None:
    """The documented fallback ACL (no plugin) gives each account the rights the test broker gives it."""
    deployed = (FALLBACK / "vitalgate.acl").read_text(encoding="utf-8")
    for line in ACL_TEMPLATE.splitlines():
        if line.startswith("pattern"):
            assert line in deployed
    for role in (BrokerRole.INGEST, BrokerRole.CLINIC):
        assert f"user vitalgate-{role.value}\n{ROLE_ACL[role]}" in deployed


# -- the fallback without the plugin, as shipped ---------------------------------------------------

FALLBACK_GATEWAYS = {"gw-fb-1": secrets.token_urlsafe(16), "gw-fb-2": secrets.token_urlsafe(16)}


@pytest.fixture(scope="module")
def fallback() -> Iterator[DeployedRig]:
    with deployed_rig(
        "vitalgate-fallback-", config_file=FALLBACK / "vitalgate.conf", gateway_passwords=FALLBACK_GATEWAYS
    ) as rig:
        yield rig


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def fallback_gateway(gateway_id: str) -> BrokerAccount:
    return BrokerAccount(gateway_id, FALLBACK_GATEWAYS[gateway_id])


def test_fallback_gateway_under_ingests_client_id_leaves_ingests_session_alone(
    fallback: DeployedRig, probes: list[MqttProbe]
) -> None:
    """Without the plugin too, a gateway connecting as ingest's client id loses none of ingest's queued readings."""
    session = {"client_id": "vitalgate-ingest-1", "clean_start": False, "session_expiry_s": 3600}
    ingest = fallback.probe(fallback.clinic("vitalgate-ingest"), "clinic", **session)
    probes.append(ingest)
    assert ingest.connect() and ingest.subscribe("vitalgate/v1/gw/+/readings") < 0x80
    ingest.close()
    sender = fallback.probe(fallback_gateway("gw-fb-1"), "gateway", client_id="gw-fb-1")
    probes.append(sender)
    assert sender.connect()
    for index in range(5):
        assert sender.publish("vitalgate/v1/gw/gw-fb-1/readings", str(index).encode()) < 0x80
    thief = fallback.probe(fallback_gateway("gw-fb-2"), "gateway", client_id="vitalgate-ingest-1")
    probes.append(thief)
    assert thief.connect()
    thief.close()
    again = fallback.probe(fallback.clinic("vitalgate-ingest"), "clinic", **session)
    probes.append(again)
    assert again.connect()
    again.wait_messages(5)
    assert len(again.messages) == 5


def test_fallback_keeps_clinic_accounts_and_gateways_on_their_own_listeners(
    fallback: DeployedRig, probes: list[MqttProbe]
) -> None:
    """Without the plugin too, clinic certificates give no login where gateways connect, and gateways none on the clinic listener."""
    clinic = fallback.clinic("vitalgate-ingest")
    attempts = [
        fallback.probe(
            BrokerAccount("vitalgate-ingest", "guess", clinic.cert_file, clinic.key_file), "gateway"
        ),
        fallback.probe(fallback_gateway("gw-fb-1"), "clinic", client_id="gw-fb-1"),
        fallback.probe(None, "gateway"),
    ]
    probes.extend(attempts)
    assert [probe.connect() for probe in attempts] == [False, False, False]

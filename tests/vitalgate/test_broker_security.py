"""MQTT abuse against the shipped broker configuration (deploy/mosquitto/ verbatim on private ports).

A gateway's credentials are the ones an attacker holds after stealing a home's Raspberry Pi: they must
never reach another client's session or another home's readings (DESIGN.md, MQTT; reliability.md §2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.uplink import MqttUplink, PlainMqttRefusedError, UplinkConfig
from tests.fixtures.mosquitto import BrokerAccount, DeployedRig, MqttProbe
from vitalgate.mosquitto import issue_certificate, make_ca

pytestmark = pytest.mark.mosquitto
REFUSED = 0x80  # reason codes from 0x80 up are refusals (MQTT v5 §2.4)
INGEST_CLIENT_ID = "vitalgate-ingest-1"  # IngestSettings.client_id default
SHARED_READINGS = "$share/vitalgate-ingest/vitalgate/v1/gw/+/readings"
_numbers = itertools.count(1)


@pytest.fixture
def deployed(deployed_broker: DeployedRig) -> DeployedRig:
    return deployed_broker


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def gateway_id() -> str:
    return f"gw-sec-{next(_numbers)}"


def connected(probes: list[MqttProbe], probe: MqttProbe) -> MqttProbe:
    probes.append(probe)
    assert probe.connect(), f"connection refused: {probe.connack} {probe.failure}"
    return probe


def readings_topic(gw: str) -> str:
    return f"vitalgate/v1/gw/{gw}/readings"


# -- the two high findings -------------------------------------------------------------------------


def test_gateway_using_ingests_client_id_loses_none_of_ingests_queued_readings(
    deployed: DeployedRig, probes: list[MqttProbe]
) -> None:
    """A gateway connecting under ingest's client id leaves ingest's 20 queued readings intact."""
    ingest = deployed.clinic("vitalgate-ingest")
    session = {"client_id": INGEST_CLIENT_ID, "clean_start": False, "session_expiry_s": 3600}
    first = connected(probes, deployed.probe(ingest, "clinic", **session))
    assert first.subscribe(readings_topic("+")) < REFUSED
    first.close()
    home = gateway_id()
    sender = connected(probes, deployed.probe(deployed.gateway(home), "gateway", client_id=home))
    for index in range(20):
        assert sender.publish(readings_topic(home), f"reading {index}".encode()) < REFUSED
    thief = deployed.gateway(gateway_id())
    for clean_start in (True, False):
        taker = deployed.probe(thief, "gateway", client_id=INGEST_CLIENT_ID, clean_start=clean_start)
        probes.append(taker)
        taker.connect()
        taker.close()
    again = connected(probes, deployed.probe(ingest, "clinic", **session))
    again.wait_messages(20)
    received = len(again.messages)
    again.close()
    # End the session, so the session broker queues no other test's readings for it.
    connected(probes, deployed.probe(ingest, "clinic", client_id=INGEST_CLIENT_ID)).close()
    assert received == 20, f"ingest received {received} of 20 queued readings"


def test_gateway_cannot_join_ingests_shared_subscription_and_no_reading_is_diverted(
    deployed: DeployedRig, probes: list[MqttProbe]
) -> None:
    """A gateway's SUBSCRIBE to ingest's $share group is refused; ingest gets 10 of 10 readings."""
    ingest = connected(
        probes,
        deployed.probe(deployed.clinic("vitalgate-ingest"), "clinic", client_id="vitalgate-ingest-share"),
    )
    assert ingest.subscribe(SHARED_READINGS) < REFUSED
    attacker = connected(
        probes, deployed.probe(deployed.gateway(gw := gateway_id()), "gateway", client_id=gw)
    )
    suback = attacker.subscribe(SHARED_READINGS)
    home = gateway_id()
    victim = connected(probes, deployed.probe(deployed.gateway(home), "gateway", client_id=home))
    for index in range(10):
        assert victim.publish(readings_topic(home), f"reading {index}".encode()) < REFUSED
    ingest.wait_messages(10)
    assert (suback >= REFUSED, len(ingest.messages)) == (True, 10), (
        f"SUBACK {suback:#x}; ingest received {len(ingest.messages)} of 10"
    )


# -- listeners and accounts ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vitalgate-ingest", "vitalgate-clinic", "vitalgate-broker-admin"])
@pytest.mark.parametrize("password", [None, "", "guess"])
def test_clinic_accounts_are_refused_on_the_gateway_listener(
    deployed: DeployedRig, probes: list[MqttProbe], name: str, password: str | None
) -> None:
    """Ingest, clinic and broker-admin accounts, even with their certificates, do not connect where gateways connect."""
    clinic = deployed.clinic(name)
    stolen = BrokerAccount(name, password, clinic.cert_file, clinic.key_file)
    probe = deployed.probe(stolen, "gateway", client_id=name)
    probes.append(probe)
    assert not probe.connect(), f"{name} connected on the gateway listener"


def test_gateways_are_refused_on_the_clinic_listener(deployed: DeployedRig, probes: list[MqttProbe]) -> None:
    """A gateway's credentials do not connect on the clinic's own listener."""
    gw = gateway_id()
    probe = deployed.probe(deployed.gateway(gw), "clinic", client_id=gw)
    probes.append(probe)
    assert not probe.connect(), "a gateway connected on the clinic listener"


@pytest.mark.parametrize("listener", ["gateway", "clinic"])
def test_anonymous_clients_are_refused(deployed: DeployedRig, probes: list[MqttProbe], listener: str) -> None:
    """A client without credentials is refused on either listener."""
    probe = deployed.probe(None, listener)
    probes.append(probe)
    assert not probe.connect()


def test_gateway_cannot_publish_as_another_home_or_as_the_clinic(
    deployed: DeployedRig, probes: list[MqttProbe]
) -> None:
    """A gateway's PUBLISH to another home's topics or to clinic-to-gateway topics is refused."""
    watcher = connected(
        probes,
        deployed.probe(deployed.clinic("vitalgate-ingest"), "clinic", client_id="vitalgate-ingest-watch"),
    )
    assert watcher.subscribe(readings_topic("+")) < REFUSED
    gw = gateway_id()
    attacker = connected(probes, deployed.probe(deployed.gateway(gw), "gateway", client_id=gw))
    forged = [
        readings_topic("gw-victim"),
        "vitalgate/v1/gw/gw-victim/status",
        f"vitalgate/v1/gw/{gw}/acks",
        f"vitalgate/v1/gw/{gw}/config",
        "vitalgate/v1/clinic/c1/alerts",
        "$CONTROL/dynamic-security/v1",
    ]
    codes = {topic: attacker.publish(topic, b"forged") for topic in forged}
    assert all(code >= REFUSED for code in codes.values()), codes
    assert attacker.publish(readings_topic(gw), b"own") < REFUSED
    assert watcher.wait_messages(1)
    assert [m.topic for m in watcher.messages] == [readings_topic(gw)]


def test_gateway_subscriptions_outside_its_own_topics_are_refused_at_subscribe(
    deployed: DeployedRig, probes: list[MqttProbe]
) -> None:
    """A gateway may subscribe to its own acks and config only; everything else gets a refusing SUBACK."""
    gw = gateway_id()
    probe = connected(probes, deployed.probe(deployed.gateway(gw), "gateway", client_id=gw))
    refused_filters = [
        "#",
        "$SYS/#",
        "+/#",
        "vitalgate/#",
        "vitalgate/v1/gw/+/readings",
        "vitalgate/v1/gw/+/acks",
        "vitalgate/v1/gw/gw-victim/config",
        "vitalgate/v1/gw/gw-victim/acks",
        f"vitalgate/v1/gw/{gw}/readings",
        "+/v1/gw/gw-victim/acks",
        "$share/vitalgate-ingest/vitalgate/v1/gw/+/readings",
        f"$share/g/vitalgate/v1/gw/{gw}/acks",
        "$CONTROL/dynamic-security/v1/response",
    ]
    codes = {topic_filter: probe.subscribe(topic_filter) for topic_filter in refused_filters}
    granted = {f: hex(c) for f, c in codes.items() if c < REFUSED}
    assert granted == {}, f"granted: {granted}"
    for own in (f"vitalgate/v1/gw/{gw}/acks", f"vitalgate/v1/gw/{gw}/config"):
        assert probe.subscribe(own) < REFUSED


@pytest.mark.parametrize("client_id", ["#", "+", "vitalgate/+", "gw-victim"])
def test_gateways_sharing_a_crafted_client_id_do_not_displace_each_other(
    deployed: DeployedRig, probes: list[MqttProbe], client_id: str
) -> None:
    """Two gateways connecting with the same crafted client id ('+', '#', another's id) both stay connected."""
    first_id, second_id = gateway_id(), gateway_id()
    first = connected(probes, deployed.probe(deployed.gateway(first_id), "gateway", client_id=client_id))
    second = connected(probes, deployed.probe(deployed.gateway(second_id), "gateway", client_id=client_id))
    assert first.subscribe(f"vitalgate/v1/gw/{first_id}/acks") < REFUSED, "first gateway was displaced"
    assert not first.disconnected.is_set()
    assert second.subscribe("#") >= REFUSED


# -- certificates ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """Another CA, with client certificates in the clinic's account names."""
    directory = tmp_path_factory.mktemp("rogue-ca")
    ca = make_ca(directory, "rogue-ca")
    names = ("vitalgate-broker-admin", "vitalgate-ingest", "gw-rogue")
    return ca.cert_file, {name: issue_certificate(ca, directory, name) for name in names}


@pytest.mark.parametrize("name", ["vitalgate-broker-admin", "vitalgate-ingest"])
def test_clinic_listener_refuses_a_certificate_from_another_ca(
    deployed: DeployedRig,
    probes: list[MqttProbe],
    rogue_ca: tuple[Path, dict[str, tuple[Path, Path]]],
    name: str,
) -> None:
    """A client certificate naming a clinic account but issued by another CA is refused on the clinic listener."""
    cert, key = rogue_ca[1][name]
    probe = deployed.probe(BrokerAccount(name, None, cert, key), "clinic", client_id=f"{name}-rogue")
    probes.append(probe)
    assert not probe.connect()


def test_gateway_listener_grants_nothing_for_a_certificate_from_another_ca(
    deployed: DeployedRig, probes: list[MqttProbe], rogue_ca: tuple[Path, dict[str, tuple[Path, Path]]]
) -> None:
    """On the gateway listener a certificate is no identity: another CA's certificate without a password is refused."""
    gw = gateway_id()
    deployed.gateway(gw)
    cert, key = rogue_ca[1]["gw-rogue"]
    probe = deployed.probe(BrokerAccount(gw, None, cert, key), "gateway", client_id=gw)
    probes.append(probe)
    assert not probe.connect()


async def test_gateway_refuses_a_broker_whose_certificate_comes_from_another_ca(
    deployed: DeployedRig, rogue_ca: tuple[Path, dict[str, tuple[Path, Path]]]
) -> None:
    """A gateway given its clinic's CA never talks to a broker presenting another CA's certificate."""
    gw = gateway_id()
    credentials = await deployed.accounts().provision_gateway(gw)
    uplink = MqttUplink(
        UplinkConfig(
            gateway_id=gw,
            host=deployed.broker.host,
            port=deployed.broker.gateway_port,
            username=credentials.username,
            password=credentials.password,
            client_id=credentials.client_id,
            tls_ca_pem=rogue_ca[0].read_text(encoding="ascii"),
            connect_timeout_s=2,
        )
    )
    await uplink.start()
    try:
        assert not await uplink.wait_connected(3)
    finally:
        await uplink.stop()


async def test_gateway_refuses_plain_mqtt_unless_told_the_broker_is_local() -> None:
    """Without a CA (file or PEM) a gateway will not connect in clear, unless plain MQTT is allowed explicitly."""
    plain = UplinkConfig(
        gateway_id="gw-plain", host="broker.example", port=1883, username="gw-plain", password="pw"
    )
    with pytest.raises(PlainMqttRefusedError):
        MqttUplink(plain)
    MqttUplink(UplinkConfig(gateway_id="gw-plain", host="127.0.0.1", port=1883, allow_plain_mqtt=True))

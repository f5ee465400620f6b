"""MQTT abuse against the shipped broker configuration (deploy/mosquitto/ verbatim on private ports).

A gateway's credentials are the ones an attacker holds after stealing a home's Raspberry Pi: they must
never reach another client's session or another home's readings (DESIGN.md, MQTT; reliability.md §2).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import BrokerAccount, MqttProbe
from vitalgate.mosquitto import free_port, make_test_ca

pytestmark = pytest.mark.mosquitto
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
REFUSED = 0x80  # reason codes from 0x80 up are refusals (MQTT v5 §2.4)
INGEST_CLIENT_ID = "vitalgate-ingest-1"  # IngestSettings.client_id default
SHARED_READINGS = "$share/vitalgate-ingest/vitalgate/v1/gw/+/readings"
_numbers = itertools.count(1)


class DeployedBroker:
    """deploy/mosquitto/vitalgate.conf with only its paths and listener ports substituted."""

    def __init__(self, directory: Path) -> None:
        import shutil

        self.directory = directory
        self.host = "127.0.0.1"
        self.gateway_port = free_port()
        self.clinic_port = free_port()
        tls = make_test_ca(directory / "tls")
        self.gateway_ca = tls.ca_file
        self.clinic_ca: Path | None = None
        (directory / "data").mkdir()
        self.passwd = directory / "vitalgate.passwd"
        self.passwd.write_text("", encoding="utf-8")
        os.chmod(self.passwd, 0o600)
        self._mosquitto_passwd = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
        self.accounts: dict[str, BrokerAccount] = {}
        for name in ("ingest", "clinic", "admin"):
            self._add_user(name)
        text = (DEPLOY / "vitalgate.conf").read_text(encoding="utf-8")
        paths = {
            "/etc/mosquitto/vitalgate.passwd": str(self.passwd),
            "/etc/mosquitto/vitalgate.acl": str(DEPLOY / "vitalgate.acl"),
            "/var/lib/mosquitto/": f"{directory / 'data'}/",
            "/etc/mosquitto/certs/ca.crt": str(tls.ca_file),
            "/etc/mosquitto/certs/server.crt": str(tls.cert_file),
            "/etc/mosquitto/certs/server.key": str(tls.key_file),
        }
        for shipped, here in paths.items():
            text = text.replace(shipped, here)
        text = re.sub(r"^listener 8883\b", f"listener {self.gateway_port}", text, flags=re.M)
        text = re.sub(r"^listener 1883\b", f"listener {self.clinic_port}", text, flags=re.M)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(text, encoding="utf-8")
        if os.geteuid() == 0:  # started as root, mosquitto drops to its own user before reading files
            import pwd

            mosq = pwd.getpwnam("mosquitto")
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, mosq.pw_uid, mosq.pw_gid)
        self.log = (directory / "mosquitto.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        from vitalgate.mosquitto import _wait_for_port

        _wait_for_port(self.host, self.gateway_port, 10, self.process)
        _wait_for_port(self.host, self.clinic_port, 10, self.process)

    def _add_user(self, username: str) -> BrokerAccount:
        import secrets

        password = secrets.token_urlsafe(16)
        subprocess.run(  # noqa: S603
            [self._mosquitto_passwd, "-b", str(self.passwd), username, password], check=True, timeout=30
        )
        self.accounts[username] = BrokerAccount(username, password)
        return self.accounts[username]

    def provision(self, gateway_id: str) -> BrokerAccount:
        account = self._add_user(gateway_id)
        self.process.send_signal(signal.SIGHUP)
        import time

        time.sleep(0.5)
        return account

    def clinic(self, name: str) -> BrokerAccount:
        return self.accounts[name]

    def probe(self, account: BrokerAccount | None, listener: str, **options: object) -> MqttProbe:
        if listener == "gateway":
            return MqttProbe(self.host, self.gateway_port, account, ca_file=self.gateway_ca, **options)  # type: ignore[arg-type]
        return MqttProbe(self.host, self.clinic_port, account, ca_file=self.clinic_ca, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedBroker]:
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="vitalgate-deployed-"))
    os.chmod(directory, 0o755)
    broker = DeployedBroker(directory)
    yield broker
    broker.stop()
    shutil.rmtree(directory)


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
    deployed: DeployedBroker, probes: list[MqttProbe]
) -> None:
    """A gateway connecting under ingest's client id leaves ingest's 20 queued readings intact."""
    ingest = deployed.clinic("ingest")
    session = {"client_id": INGEST_CLIENT_ID, "clean_start": False, "session_expiry_s": 3600}
    first = connected(probes, deployed.probe(ingest, "clinic", **session))
    assert first.subscribe(readings_topic("+")) < REFUSED
    first.close()
    home = gateway_id()
    sender = connected(probes, deployed.probe(deployed.provision(home), "gateway", client_id=home))
    for index in range(20):
        assert sender.publish(readings_topic(home), f"reading {index}".encode()) < REFUSED
    thief = deployed.provision(gateway_id())
    for clean_start in (True, False):
        taker = deployed.probe(thief, "gateway", client_id=INGEST_CLIENT_ID, clean_start=clean_start)
        probes.append(taker)
        taker.connect()
        taker.close()
    again = connected(probes, deployed.probe(ingest, "clinic", **session))
    again.wait_messages(20)
    assert len(again.messages) == 20, f"ingest received {len(again.messages)} of 20 queued readings"


def test_gateway_cannot_join_ingests_shared_subscription_and_no_reading_is_diverted(
    deployed: DeployedBroker, probes: list[MqttProbe]
) -> None:
    """A gateway's SUBSCRIBE to ingest's $share group is refused; ingest gets 10 of 10 readings."""
    ingest = connected(probes, deployed.probe(deployed.clinic("ingest"), "clinic", client_id="vitalgate-ingest-share"))
    assert ingest.subscribe(SHARED_READINGS) < REFUSED
    attacker = connected(probes, deployed.probe(deployed.provision(gw := gateway_id()), "gateway", client_id=gw))
    suback = attacker.subscribe(SHARED_READINGS)
    home = gateway_id()
    victim = connected(probes, deployed.probe(deployed.provision(home), "gateway", client_id=home))
    for index in range(10):
        assert victim.publish(readings_topic(home), f"reading {index}".encode()) < REFUSED
    ingest.wait_messages(10)
    assert (suback >= REFUSED, len(ingest.messages)) == (True, 10), (
        f"SUBACK {suback:#x}; ingest received {len(ingest.messages)} of 10"
    )


# -- listeners and accounts ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ingest", "clinic", "admin"])
def test_clinic_accounts_are_refused_on_the_gateway_listener(
    deployed: DeployedBroker, probes: list[MqttProbe], name: str
) -> None:
    """Ingest, clinic and broker-admin credentials do not connect where gateways connect (8883)."""
    probe = deployed.probe(deployed.clinic(name), "gateway", client_id=f"vitalgate-probe-{name}")
    probes.append(probe)
    assert not probe.connect(), f"{name} connected on the gateway listener"


def test_gateways_are_refused_on_the_clinic_listener(deployed: DeployedBroker, probes: list[MqttProbe]) -> None:
    """A gateway's credentials do not connect on the clinic's own listener."""
    gw = gateway_id()
    probe = deployed.probe(deployed.provision(gw), "clinic", client_id=gw)
    probes.append(probe)
    assert not probe.connect(), "a gateway connected on the clinic listener"


@pytest.mark.parametrize("listener", ["gateway", "clinic"])
def test_anonymous_clients_are_refused(deployed: DeployedBroker, probes: list[MqttProbe], listener: str) -> None:
    """A client without credentials is refused on either listener."""
    probe = deployed.probe(None, listener)
    probes.append(probe)
    assert not probe.connect()


def test_gateway_cannot_publish_as_another_home_or_as_the_clinic(
    deployed: DeployedBroker, probes: list[MqttProbe]
) -> None:
    """A gateway's PUBLISH to another home's topics or to clinic-to-gateway topics is refused."""
    watcher = connected(probes, deployed.probe(deployed.clinic("ingest"), "clinic", client_id="vitalgate-ingest-watch"))
    assert watcher.subscribe(readings_topic("+")) < REFUSED
    gw = gateway_id()
    attacker = connected(probes, deployed.probe(deployed.provision(gw), "gateway", client_id=gw))
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
    deployed: DeployedBroker, probes: list[MqttProbe]
) -> None:
    """A gateway may subscribe to its own acks and config only; everything else gets a refusing SUBACK."""
    gw = gateway_id()
    probe = connected(probes, deployed.probe(deployed.provision(gw), "gateway", client_id=gw))
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
    deployed: DeployedBroker, probes: list[MqttProbe], client_id: str
) -> None:
    """Two gateways connecting with the same crafted client id ('+', '#', another's id) both stay connected."""
    first_id, second_id = gateway_id(), gateway_id()
    first = connected(probes, deployed.probe(deployed.provision(first_id), "gateway", client_id=client_id))
    second = connected(probes, deployed.probe(deployed.provision(second_id), "gateway", client_id=client_id))
    assert first.subscribe(f"vitalgate/v1/gw/{first_id}/acks") < REFUSED, "first gateway was displaced"
    assert not first.disconnected.is_set()
    assert second.subscribe("#") >= REFUSED

"""vitals.mqtt_link: the one place a paho client is built, its configuration, its TLS, and a real
connection to a private Mosquitto over TLS."""

from __future__ import annotations

import ast
import dataclasses
import queue
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from vitalgate.mosquitto import (
    BrokerRole,
    MosquittoBroker,
    TlsFiles,
    issue_certificate,
    make_ca,
    make_test_ca,
)
from vitals.mqtt_link import (
    LinkConfig,
    LinkConfigError,
    LinkTlsError,
    MqttLinkError,
    TlsParameters,
    Will,
    build_client,
    connect,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("vitals", "device_drivers", "gateway", "ingest", "storage", "alerts", "api", "vitalgate")
LINK_MODULE = "vitals/mqtt_link.py"
WAIT_S = 10.0


# -- one place builds a paho client ---------------------------------------------------------------


def _paho_client_calls(path: Path) -> list[int]:
    """Lines calling paho's Client class: `mqtt.Client(` (any alias of paho.mqtt.client), the full
    dotted `paho.mqtt.client.Client(`, or `Client(` imported from paho.mqtt.client."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_aliases: set[str] = set()
    class_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            module_aliases.update(a.asname for a in node.names if a.name == "paho.mqtt.client" and a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == "paho.mqtt":
            module_aliases.update(a.asname or a.name for a in node.names if a.name == "client")
        elif isinstance(node, ast.ImportFrom) and node.module == "paho.mqtt.client":
            class_aliases.update(a.asname or a.name for a in node.names if a.name == "Client")
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in class_aliases:
            lines.append(node.lineno)
        elif isinstance(func, ast.Attribute) and func.attr == "Client":
            owner = ast.unparse(func.value)
            if owner in module_aliases or owner == "paho.mqtt.client":
                lines.append(node.lineno)
    return lines


def test_exactly_one_place_in_the_packages_builds_a_paho_client() -> None:
    """Every MQTT client of the product gets its TLS, login and socket options from vitals.mqtt_link."""
    places = [
        f"{path.relative_to(REPO)}:{line}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for line in _paho_client_calls(path)
    ]
    assert len(places) == 1, places
    assert places[0].startswith(f"{LINK_MODULE}:")


def test_the_client_check_sees_every_spelling(tmp_path: Path) -> None:
    """The one-place check would notice a client built under any import spelling."""
    source = tmp_path / "spellings.py"
    source.write_text(
        "import paho.mqtt.client as mqtt\nimport paho.mqtt.client\nfrom paho.mqtt import client as pc\n"
        "from paho.mqtt.client import Client as C\n"
        "mqtt.Client()\npaho.mqtt.client.Client()\npc.Client()\nC()\nother.Client()\n",
        encoding="utf-8",
    )
    assert _paho_client_calls(source) == [5, 6, 7, 8]


def test_the_ground_floor_imports_paho_only_in_its_link_module() -> None:
    """vitals stays free of I/O libraries apart from the MQTT link, so codecs and payloads never grow a broker dependency."""
    offenders = []
    for path in sorted((REPO / "vitals").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
        }
        if "paho" in imported and path.relative_to(REPO).as_posix() != LINK_MODULE:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders


# -- the configuration ------------------------------------------------------------------------------


def test_options_are_keyword_only() -> None:
    """Host, port and client id cannot be swapped by position."""
    with pytest.raises(TypeError):
        LinkConfig("127.0.0.1", 1883, "vitalgate-test")  # type: ignore[misc]
    with pytest.raises(TypeError):
        TlsParameters(Path("ca.pem"))  # type: ignore[misc]
    with pytest.raises(TypeError):
        Will("t", b"x")  # type: ignore[misc]


def test_configs_are_frozen() -> None:
    """A connection's description cannot change under a client that was built from it."""
    config = LinkConfig(
        host="127.0.0.1", port=1883, client_id="c", tls=TlsParameters(), will=Will(topic="t", payload=b"")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.client_id = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tls.verify = False  # type: ignore[misc, union-attr]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.will.retain = True  # type: ignore[misc, union-attr]


def test_secrets_stay_out_of_repr() -> None:
    """A logged configuration shows neither the password nor the CA text it carries."""
    config = LinkConfig(
        host="h",
        port=1,
        client_id="c",
        username="u",
        password="s3cret-pw",
        tls=TlsParameters(ca_pem="PEMTEXT"),
    )
    assert "s3cret-pw" not in repr(config)
    assert "PEMTEXT" not in repr(config)


@pytest.mark.parametrize(
    "options",
    [
        {"port": 0},
        {"port": 65_536},
        {"host": ""},
        {"keepalive_s": -1},
        {"clean_start": "sometimes"},
        {"session_expiry_s": -1},
        {"session_expiry_s": 2**32},
        {"receive_maximum": 0},
        {"receive_maximum": 65_536},
        {"connect_timeout_s": 0},
        {"reconnect_min_s": 0},
        {"reconnect_min_s": 10, "reconnect_max_s": 5},
    ],
)
def test_out_of_range_options_are_refused(options: dict[str, Any]) -> None:
    """A configuration the protocol or paho cannot carry fails where it is written, as a link error."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 1883, "client_id": "c", **options}
    with pytest.raises(LinkConfigError) as caught:
        LinkConfig(**values)
    assert isinstance(caught.value, MqttLinkError)
    assert isinstance(caught.value, ValueError)


def test_a_will_needs_a_topic_and_a_valid_qos() -> None:
    """A will the broker could not accept is refused before connecting."""
    with pytest.raises(LinkConfigError):
        Will(topic="", payload=b"offline")
    with pytest.raises(LinkConfigError):
        Will(topic="t", payload=b"offline", qos=3)


def test_a_key_without_its_certificate_is_refused() -> None:
    """A key file alone is a mistake, not a login: it is reported instead of silently ignored."""
    with pytest.raises(LinkConfigError):
        TlsParameters(key_file=Path("client.key"))


# -- TLS from files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_ca(tmp_path_factory.mktemp("link-ca"))


def test_tls_context_verifies_the_broker_against_the_ca_file(throwaway_ca: TlsFiles) -> None:
    """The context requires a certificate chain to the configured CA and a matching host name, TLS 1.2 at least."""
    context = TlsParameters(ca_file=throwaway_ca.ca_file).context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "ca"),),)]


def test_tls_context_takes_the_ca_as_pem_text(throwaway_ca: TlsFiles) -> None:
    """A gateway's provisioning file carries its CA as text; that CA is the one trusted."""
    context = TlsParameters(ca_pem=throwaway_ca.ca_file.read_text(encoding="ascii")).context()
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "ca"),),)]


def test_tls_context_loads_a_client_certificate(tmp_path: Path, throwaway_ca: TlsFiles) -> None:
    """A clinic account's certificate and key load; a key of another certificate is a TLS link error."""
    ca = make_ca(tmp_path, "clients")
    cert, key = issue_certificate(ca, tmp_path, "vitalgate-ingest")
    TlsParameters(ca_file=throwaway_ca.ca_file, cert_file=cert, key_file=key).context()
    with pytest.raises(LinkTlsError) as caught:
        TlsParameters(ca_file=throwaway_ca.ca_file, cert_file=cert, key_file=throwaway_ca.key_file).context()
    assert str(cert) in str(caught.value)


def test_unusable_ca_files_are_tls_link_errors(tmp_path: Path) -> None:
    """A missing or non-PEM CA file fails with a link error that names the file."""
    missing = tmp_path / "missing.pem"
    with pytest.raises(LinkTlsError, match=r"missing\.pem"):
        TlsParameters(ca_file=missing).context()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n", encoding="ascii")
    with pytest.raises(LinkTlsError, match=r"garbage\.pem"):
        TlsParameters(ca_file=garbage).context()
    with pytest.raises(MqttLinkError):
        build_client(LinkConfig(host="h", port=1, client_id="c", tls=TlsParameters(ca_file=missing)))


# -- a real connection --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path_factory.mktemp("link-broker"), tls=True)
    broker.add_user("link-test", "link-test-password", BrokerRole.ADMIN, reload=False)
    broker.start()
    yield broker
    broker.stop()


class _Session:
    """A built client with its network loop, recording CONNACKs and messages."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.client = build_client(config)
        self.connacks: queue.Queue[tuple[bool, ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda _c, _u, flags, reason, _p: self.connacks.put(
            (flags.session_present, reason)
        )
        self.client.on_message = lambda _c, _u, message: self.messages.put(bytes(message.payload))
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def __enter__(self) -> _Session:
        connect(self.client, self.config)
        self.client.loop_start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _link(broker: MosquittoBroker, ca_file: Path, **options: Any) -> LinkConfig:
    assert broker.tls_port is not None
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.tls_port,
        "client_id": "vitalgate-link-test",
        "username": "link-test",
        "password": "link-test-password",
        "tls": TlsParameters(ca_file=ca_file),
        "keepalive_s": 30,
        **options,
    }
    return LinkConfig(**values)


@pytest.mark.mosquitto
def test_a_persistent_session_over_tls_keeps_what_arrived_while_away(tls_broker: MosquittoBroker) -> None:
    """Over TLS with a login, a session with clean_start false and an expiry is resumed: a QoS 1
    message published while the client was away arrives when it comes back, on a socket that sends
    small packets at once."""
    assert tls_broker.tls_files is not None
    ca_file = tls_broker.tls_files.ca_file
    topic = "vitalgate/v1/gw/link-test/readings"
    durable = _link(tls_broker, ca_file, clean_start=False, session_expiry_s=300)
    with _Session(durable) as session:
        present, reason = session.connacks.get(timeout=WAIT_S)
        assert not reason.is_failure
        session.client.subscribe(topic, qos=1)
        assert session.subscribed.wait(WAIT_S)
        sock = session.client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    with _Session(
        _link(tls_broker, ca_file, client_id="vitalgate-link-publisher", tcp_nodelay=False)
    ) as publisher:
        assert not publisher.connacks.get(timeout=WAIT_S)[1].is_failure
        sock = publisher.client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        info = publisher.client.publish(topic, b"while away", qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
    with _Session(durable) as session:
        present, reason = session.connacks.get(timeout=WAIT_S)
        assert not reason.is_failure
        assert present
        assert session.messages.get(timeout=WAIT_S) == b"while away"
    # End the stored session so a rerun starts clean.
    with _Session(_link(tls_broker, ca_file, clean_start=True, session_expiry_s=0)) as session:
        assert not session.connacks.get(timeout=WAIT_S)[1].is_failure


@pytest.mark.mosquitto
def test_a_broker_certificate_from_another_ca_is_refused(
    tls_broker: MosquittoBroker, throwaway_ca: TlsFiles
) -> None:
    """The client verifies the broker: a CA that did not sign the broker's certificate fails the
    handshake before any credential is sent."""
    client = build_client(_link(tls_broker, throwaway_ca.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(client, _link(tls_broker, throwaway_ca.ca_file))
    with_verify_off = _link(
        tls_broker, throwaway_ca.ca_file, tls=TlsParameters(ca_file=throwaway_ca.ca_file, verify=False)
    )
    with _Session(with_verify_off) as session:
        assert not session.connacks.get(timeout=WAIT_S)[1].is_failure

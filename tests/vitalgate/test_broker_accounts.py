"""Gateway accounts provisioned at run time on the dynamic security plugin (deploy/mosquitto as shipped)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.broker_accounts import (
    BrokerAccountsDeniedError,
    BrokerUnavailableError,
    GatewayAlreadyProvisionedError,
    GatewayNotProvisionedError,
    InvalidGatewayIdError,
)
from gateway.uplink import MqttUplink
from tests.fixtures.mosquitto import PROBE_WAIT_S, BrokerAccount, DeployedRig, MqttProbe
from vitalgate.broker_accounts import (
    DynsecAdminConfig,
    DynsecGatewayAccounts,
    GatewayBrokerAddress,
    accounts_from_settings,
    gateway_settings_toml,
)
from vitalgate.mosquitto import free_port
from vitalgate.settings import Settings, load_settings
from vitalgate.wiring import gateway_options
from vitals.payload import GatewayStatus
from vitals.topics import acks_topic, config_topic, readings_topic, status_topic

pytestmark = pytest.mark.mosquitto
REFUSED = 0x80
_numbers = itertools.count(1)


def gateway_id() -> str:
    return f"gw-acc-{next(_numbers)}"


@pytest.fixture
def rig(deployed_broker: DeployedRig) -> DeployedRig:
    return deployed_broker


@pytest.fixture
def accounts(rig: DeployedRig) -> DynsecGatewayAccounts:
    return rig.accounts()


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def open_probe(
    probes: list[MqttProbe], rig: DeployedRig, account: BrokerAccount, listener: str, client_id: str
) -> MqttProbe:
    probe = rig.probe(account, listener, client_id=client_id)
    probes.append(probe)
    return probe


def clinic_watch(probes: list[MqttProbe], rig: DeployedRig, topic_filter: str) -> MqttProbe:
    watcher = open_probe(
        probes, rig, rig.clinic("vitalgate-clinic"), "clinic", f"vitalgate-watch-{next(_numbers)}"
    )
    assert watcher.connect()
    assert watcher.subscribe(topic_filter) < REFUSED
    return watcher


async def test_provisioned_gateway_has_its_own_topics_and_nothing_else(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe]
) -> None:
    """A new gateway account publishes readings and status and subscribes to its acks, config and commands; nothing else."""
    gw = gateway_id()
    credentials = await accounts.provision_gateway(gw)
    assert (credentials.username, credentials.client_id) == (gw, gw)
    probe = open_probe(probes, rig, BrokerAccount(credentials.username, credentials.password), "gateway", gw)
    assert probe.connect()
    own = {f"vitalgate/v1/gw/{gw}/{channel}" for channel in ("acks", "config", "commands")}
    assert {topic: probe.subscribe(topic) < REFUSED for topic in own} == dict.fromkeys(own, True)
    for other in ("vitalgate/v1/gw/gw-else/acks", "vitalgate/v1/gw/+/config", "#", f"vitalgate/v1/gw/{gw}/#"):
        assert probe.subscribe(other) >= REFUSED, other
    assert probe.publish(readings_topic(gw), b"[]") < REFUSED
    assert probe.publish(status_topic(gw), b"{}") < REFUSED
    assert probe.publish(acks_topic(gw), b"{}") >= REFUSED
    assert probe.publish(config_topic("gw-else"), b"{}") >= REFUSED


async def test_provisioning_file_is_accepted_by_vitalgate_gateway_as_is(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe], tmp_path: Path
) -> None:
    """The file provisioning returns is a settings file the gateway runs with unchanged: it connects over TLS and reports."""
    gw = gateway_id()
    credentials = await accounts.provision_gateway(gw)
    settings_file = tmp_path / "gateway.toml"
    settings_file.write_text(credentials.settings_toml, encoding="utf-8")
    settings = load_settings(settings_file)
    assert settings.gateway.gateway_id == gw
    options = gateway_options(settings)
    assert options.uplink.use_tls
    watcher = clinic_watch(probes, rig, status_topic(gw))
    uplink = MqttUplink(options.uplink)
    await uplink.start()
    try:
        assert await uplink.wait_connected(PROBE_WAIT_S), uplink.last_error
        status = GatewayStatus(gateway_id=gw, online=True, reported_at=datetime.now(UTC))
        uplink.publish(status_topic(gw), status.model_dump_json(), retain=True)
        assert watcher.wait_messages(1)
        assert GatewayStatus.model_validate_json(watcher.messages[0].payload).gateway_id == gw
    finally:
        await uplink.stop()


async def test_disabling_a_gateway_disconnects_it_and_refuses_it_until_enabled(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe]
) -> None:
    """Disable takes effect at once, without a broker restart: the connected gateway is dropped and cannot log in again."""
    gw = gateway_id()
    credentials = await accounts.provision_gateway(gw)
    account = BrokerAccount(credentials.username, credentials.password)
    connected = open_probe(probes, rig, account, "gateway", gw)
    assert connected.connect()
    await accounts.disable_gateway(gw)
    assert connected.disconnected.wait(PROBE_WAIT_S)
    assert not open_probe(probes, rig, account, "gateway", gw).connect()
    await accounts.enable_gateway(gw)
    assert open_probe(probes, rig, account, "gateway", gw).connect()


async def test_rotating_the_password_invalidates_the_old_one_at_once(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe]
) -> None:
    """After a rotation the old password neither keeps its connection nor logs in; the new one does, with a new file."""
    gw = gateway_id()
    first = await accounts.provision_gateway(gw)
    old = BrokerAccount(first.username, first.password)
    connected = open_probe(probes, rig, old, "gateway", gw)
    assert connected.connect()
    second = await accounts.rotate_password(gw)
    assert second.password != first.password
    assert second.password in second.settings_toml and first.password not in second.settings_toml
    assert connected.disconnected.wait(PROBE_WAIT_S)
    assert not open_probe(probes, rig, old, "gateway", gw).connect()
    assert open_probe(probes, rig, BrokerAccount(second.username, second.password), "gateway", gw).connect()


async def test_provisioning_an_existing_gateway_is_refused_and_changes_nothing(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe]
) -> None:
    """A second provisioning of a gateway id gives a typed error; the account, its password and the plugin's state stay as they were."""
    gw = gateway_id()
    first = await accounts.provision_gateway(gw)
    state_before = rig.broker.dynsec_state.read_bytes()
    with pytest.raises(GatewayAlreadyProvisionedError, match=gw):
        await accounts.provision_gateway(gw)
    assert rig.broker.dynsec_state.read_bytes() == state_before
    assert open_probe(probes, rig, BrokerAccount(first.username, first.password), "gateway", gw).connect()


@pytest.mark.parametrize(
    "bad_id", ["vitalgate-ingest-1", "VITALGATE-clinic", "gw/1", "gw+", "#", "", "x" * 65]
)
async def test_ids_that_are_not_gateway_ids_are_refused_before_the_broker_is_asked(bad_id: str) -> None:
    """Clinic names, MQTT wildcards and separators are never gateway ids: a typed error, nothing sent."""
    nowhere = DynsecGatewayAccounts(
        DynsecAdminConfig("127.0.0.1", free_port(), allow_plain_mqtt=True, timeout_s=1),
        GatewayBrokerAddress("broker.example"),
    )
    with pytest.raises(InvalidGatewayIdError):
        await nowhere.provision_gateway(bad_id)
    with pytest.raises(InvalidGatewayIdError):
        await nowhere.disable_gateway(bad_id)


@pytest.mark.parametrize(
    "operation", ["disable_gateway", "enable_gateway", "rotate_password", "delete_gateway"]
)
async def test_operations_on_an_unknown_gateway_are_typed_errors(
    accounts: DynsecGatewayAccounts, operation: str
) -> None:
    """Disabling, enabling, rotating or deleting a gateway that has no account says so."""
    with pytest.raises(GatewayNotProvisionedError):
        await getattr(accounts, operation)(gateway_id())


async def test_deleting_a_gateway_disconnects_it_and_its_id_can_be_provisioned_afresh(
    rig: DeployedRig, accounts: DynsecGatewayAccounts, probes: list[MqttProbe]
) -> None:
    """A deleted gateway is dropped and refused; provisioning its id again gives a new, working account."""
    gw = gateway_id()
    first = await accounts.provision_gateway(gw)
    account = BrokerAccount(first.username, first.password)
    connected = open_probe(probes, rig, account, "gateway", gw)
    assert connected.connect()
    await accounts.delete_gateway(gw)
    assert connected.disconnected.wait(PROBE_WAIT_S)
    assert not open_probe(probes, rig, account, "gateway", gw).connect()
    again = await accounts.provision_gateway(gw)
    fresh = open_probe(probes, rig, BrokerAccount(again.username, again.password), "gateway", gw)
    assert fresh.connect()
    assert fresh.subscribe(config_topic(gw)) < REFUSED


async def test_provisioned_accounts_survive_a_broker_restart(
    own_deployed_broker: DeployedRig, probes: list[MqttProbe]
) -> None:
    """The plugin keeps provisioned accounts across a broker restart (its state file)."""
    accounts = own_deployed_broker.accounts()
    gw = gateway_id()
    credentials = await accounts.provision_gateway(gw)
    own_deployed_broker.broker.restart()
    probe = open_probe(
        probes, own_deployed_broker, BrokerAccount(credentials.username, credentials.password), "gateway", gw
    )
    assert probe.connect()
    assert probe.subscribe("#") >= REFUSED


async def test_an_unreachable_broker_is_a_typed_error_within_the_timeout(rig: DeployedRig) -> None:
    """No broker listening: BrokerUnavailableError, not a hang."""
    config = rig.admin_config(timeout_s=2)
    dead = DynsecGatewayAccounts(
        DynsecAdminConfig(
            config.host, free_port(), tls_ca_file=config.tls_ca_file, tls_cert_file=config.tls_cert_file,
            tls_key_file=config.tls_key_file, timeout_s=2,
        ),
        rig.gateway_address(),
    )  # fmt: skip
    with pytest.raises(BrokerUnavailableError):
        await dead.provision_gateway(gateway_id())


async def test_a_clinic_account_without_the_admin_role_is_denied(rig: DeployedRig) -> None:
    """Ingest's certificate cannot administer accounts: BrokerAccountsDeniedError, and no account appears."""
    config = rig.admin_config()
    ingest = rig.broker.clinic_certificate("vitalgate-ingest")
    as_ingest = DynsecGatewayAccounts(
        DynsecAdminConfig(
            config.host, config.port, tls_ca_file=config.tls_ca_file, tls_cert_file=ingest.cert_file,
            tls_key_file=ingest.key_file, timeout_s=config.timeout_s,
        ),
        rig.gateway_address(),
    )  # fmt: skip
    gw = gateway_id()
    with pytest.raises(BrokerAccountsDeniedError):
        await as_ingest.provision_gateway(gw)
    with pytest.raises(GatewayNotProvisionedError):
        await rig.accounts().disable_gateway(gw)


async def test_clinic_settings_wire_the_accounts_to_the_broker(
    rig: DeployedRig, probes: list[MqttProbe]
) -> None:
    """`Settings.broker_accounts` is enough to provision: the admin certificate, the clinic listener, the gateways' address and CA."""
    admin = rig.admin_config()
    settings = Settings(
        broker_accounts={
            "host": admin.host,
            "port": admin.port,
            "tls_ca_file": admin.tls_ca_file,
            "tls_cert_file": admin.tls_cert_file,
            "tls_key_file": admin.tls_key_file,
            "gateway_host": rig.broker.host,
            "gateway_port": rig.broker.gateway_port,
            "gateway_ca_file": rig.broker.server_tls.ca_file,
        }
    )
    gw = gateway_id()
    credentials = await accounts_from_settings(settings).provision_gateway(gw)
    assert "BEGIN CERTIFICATE" in credentials.settings_toml
    assert open_probe(
        probes, rig, BrokerAccount(credentials.username, credentials.password), "gateway", gw
    ).connect()


def test_provisioning_file_without_a_ca_uses_tls_with_the_system_trust_store(tmp_path: Path) -> None:
    """With a broker certificate from a public CA, the gateway's file carries no CA and still means TLS."""
    text = gateway_settings_toml("gw-public", "secret-password", GatewayBrokerAddress("mqtt.clinic.example"))
    settings_file = tmp_path / "gateway.toml"
    settings_file.write_text(text, encoding="utf-8")
    uplink = gateway_options(load_settings(settings_file)).uplink
    assert (uplink.use_tls, uplink.tls_ca_pem, uplink.host, uplink.port) == (
        True,
        None,
        "mqtt.clinic.example",
        8883,
    )
    assert (uplink.username, uplink.client_id, uplink.password) == (
        "gw-public",
        "gw-public",
        "secret-password",
    )

"""Gateways through the administration API on a private broker running the dynamic security plugin
(deploy/mosquitto as shipped): provisioning answers the installer's file once, the gateway logs in
with it and nowhere else; deactivation and rotation take effect at the broker; configurations reach
the gateway after a binding; each change audited, refusals coded and changing nothing."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator

import pytest

from storage.clinic.administration.common import Actor
from storage.clinic.administration.gateways import register_gateway
from tests.fixtures.mosquitto import BrokerAccount, DeployedRig, MqttProbe
from vitalgate.administration import ClinicMqttAccount, GatewayConfigSender
from vitals.payload import GatewayConfig
from vitals.topics import config_topic, readings_topic

from .admin_helpers import ADMIN_1, ADMIN_2, DOCTOR_A, allowed_writes, audit_entries, refused
from .conftest import ClinicApi

pytestmark = pytest.mark.mosquitto

GATEWAYS = "/api/v1/admin/gateways"
REFUSED = 0x80
_numbers = itertools.count(1)


@pytest.fixture
def api(clinic_api: ClinicApi, deployed_broker: DeployedRig) -> ClinicApi:
    """The API with the broker's gateway accounts and a config sender on the clinic's account."""
    broker = deployed_broker.broker
    clinic_cert = broker.clinic_certificate("vitalgate-clinic")
    clinic_api.services.gateway_accounts = deployed_broker.accounts()
    clinic_api.services.gateway_configs = GatewayConfigSender(
        ClinicMqttAccount(
            host=broker.host,
            port=broker.clinic_port,
            username=None,
            password=None,
            tls_ca_file=str(broker.server_tls.ca_file),
            tls_cert_file=str(clinic_cert.cert_file),
            tls_key_file=str(clinic_cert.key_file),
        ),
        clinic_api.services.clinic_sessions,
    )
    return clinic_api


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def _gateway_id() -> str:
    return f"gw-api-{next(_numbers)}"


def _provision(api: ClinicApi, gateway_id: str) -> BrokerAccount:
    response = api.client.post(GATEWAYS, headers=api.auth(ADMIN_1), json={"gateway_id": gateway_id})
    assert response.status_code == 201, response.text
    installer = response.json()
    assert installer["file_name"] == f"vitalgate-gateway-{gateway_id}.toml"
    settings = tomllib.loads(installer["content"])
    assert settings["gateway"]["gateway_id"] == gateway_id
    return BrokerAccount(settings["mqtt"]["username"], settings["mqtt"]["password"])


def _probe(probes: list[MqttProbe], rig: DeployedRig, account: BrokerAccount, client_id: str) -> MqttProbe:
    probe = rig.probe(account, "gateway", client_id=client_id)
    probes.append(probe)
    return probe


def test_a_provisioned_gateway_logs_in_with_its_file_and_reaches_its_own_topics_only(
    api: ClinicApi, deployed_broker: DeployedRig, probes: list[MqttProbe]
) -> None:
    """The installer's file logs the gateway in; another gateway's topics are refused; audited once."""
    gateway_id = _gateway_id()
    account = _provision(api, gateway_id)
    probe = _probe(probes, deployed_broker, account, gateway_id)
    assert probe.connect()
    assert probe.publish(readings_topic(gateway_id), b"{}") < REFUSED
    assert probe.subscribe(config_topic("gw-someone-else")) >= REFUSED
    assert allowed_writes(api)[-1] == ("admin-1", "provision_gateway", gateway_id)
    listed = api.client.get(GATEWAYS, headers=api.auth(ADMIN_1)).json()
    assert [(g["gateway_id"], g["active"]) for g in listed] == [(gateway_id, True)]
    assert api.client.get(GATEWAYS, headers=api.auth(ADMIN_2)).json() == []


def test_a_gateway_id_that_exists_is_refused_and_nothing_changes(
    api: ClinicApi, deployed_broker: DeployedRig
) -> None:
    """In the clinic database (any clinic) or only at the broker: 409 `admin.gateway_exists`; a clinic
    account's name or a malformed id: 422."""
    gateway_id = _gateway_id()
    _provision(api, gateway_id)
    refused(api, "POST", GATEWAYS, ADMIN_2, 409, "admin.gateway_exists", json={"gateway_id": gateway_id})
    on_broker_only = _gateway_id()
    deployed_broker.provision(on_broker_only)
    refused(api, "POST", GATEWAYS, ADMIN_1, 409, "admin.gateway_exists", json={"gateway_id": on_broker_only})
    refused(api, "POST", GATEWAYS, ADMIN_1, 422, "admin.invalid_id", json={"gateway_id": "vitalgate-ingest"})
    refused(api, "POST", GATEWAYS, ADMIN_1, 422, "validation", json={"gateway_id": "gw/+/#"})
    refused(api, "POST", GATEWAYS, DOCTOR_A, 403, "forbidden", json={"gateway_id": _gateway_id()})
    denied = audit_entries(api, action="provision_gateway", outcome="denied")
    assert [(e.object_id, e.details["code"]) for e in denied] == [
        (gateway_id, "admin.gateway_exists"),
        (on_broker_only, "admin.gateway_exists"),
        ("vitalgate-ingest", "admin.invalid_id"),
    ]


def test_deactivation_refuses_the_gateway_at_the_broker_and_rotation_replaces_its_password(
    api: ClinicApi, deployed_broker: DeployedRig, probes: list[MqttProbe]
) -> None:
    """Deactivated: its login is refused; reactivated and rotated: the old password fails, the new file works."""
    gateway_id = _gateway_id()
    account = _provision(api, gateway_id)
    admin = api.auth(ADMIN_1)
    assert api.client.post(f"{GATEWAYS}/{gateway_id}/deactivate", headers=admin).json()["active"] is False
    assert not _probe(probes, deployed_broker, account, gateway_id).connect()
    refused(
        api, "POST", f"{GATEWAYS}/{gateway_id}/rotate-credentials", ADMIN_1, 409, "admin.gateway_inactive"
    )

    assert api.client.post(f"{GATEWAYS}/{gateway_id}/reactivate", headers=admin).json()["active"] is True
    rotated = api.client.post(f"{GATEWAYS}/{gateway_id}/rotate-credentials", headers=admin).json()
    new = tomllib.loads(rotated["content"])["mqtt"]
    assert not _probe(probes, deployed_broker, account, gateway_id).connect()
    assert _probe(
        probes, deployed_broker, BrokerAccount(new["username"], new["password"]), gateway_id
    ).connect()
    assert [w[1] for w in allowed_writes(api)[-3:]] == [
        "deactivate_gateway",
        "reactivate_gateway",
        "rotate_gateway_credentials",
    ]
    refused(api, "POST", f"{GATEWAYS}/{gateway_id}/deactivate", ADMIN_2, 404, "admin.not_found")


def test_a_binding_reaches_the_gateway_in_its_retained_config(
    api: ClinicApi, deployed_broker: DeployedRig, probes: list[MqttProbe]
) -> None:
    """Bound through the API, the gateway's config arrives with bound_at and the memory choice."""
    gateway_id = _gateway_id()
    account = _provision(api, gateway_id)
    admin = api.auth(ADMIN_1)
    meter = api.client.post(
        "/api/v1/admin/meters",
        headers=admin,
        json={"kind": "glucose", "manufacturer": "Roche", "model": "Guide", "serial_number": gateway_id},
    ).json()
    change = api.client.post(
        "/api/v1/admin/bindings",
        headers=admin,
        json={"meter_key": meter["meter_key"], "gateway_id": gateway_id, "patient_id": "p-1"},
    ).json()
    assert change["gateway_config"] == "published"
    probe = _probe(probes, deployed_broker, account, gateway_id)
    assert probe.connect()
    assert probe.subscribe(config_topic(gateway_id)) < REFUSED
    assert probe.wait_messages(1)
    config = GatewayConfig.model_validate_json(probe.messages[-1].payload)
    [binding] = config.bindings
    assert (binding.meter_key, binding.patient_id, binding.prior_memory_belongs) == (
        meter["meter_key"],
        "p-1",
        False,
    )
    assert binding.bound_at is not None and binding.bound_at.isoformat() == change["binding"][
        "bound_at"
    ].replace("Z", "+00:00")
    published = api.client.post(f"{GATEWAYS}/{gateway_id}/publish-config", headers=admin).json()
    assert published == {"gateway_id": gateway_id, "gateway_config": "published"}
    [entry] = audit_entries(api, action="bind_meter")
    assert entry.details["gateway_id"] == gateway_id


def test_without_broker_accounts_provisioning_answers_unavailable(clinic_api: ClinicApi) -> None:
    """An API process not wired to the broker refuses provisioning with 503 and records nothing."""
    refused(clinic_api, "POST", GATEWAYS, ADMIN_1, 503, "service.unavailable", json={"gateway_id": "gw-x"})
    with clinic_api.services.clinic_sessions() as session:
        register_gateway(session, Actor("admin-1", "c1"), gateway_id="gw-y", mqtt_password="p")
        session.commit()
    refused(clinic_api, "POST", f"{GATEWAYS}/gw-y/deactivate", ADMIN_1, 503, "service.unavailable")

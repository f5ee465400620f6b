"""Meters and bindings through the administration API: register, bind with the choice about the
meter's memory, refusals that change nothing (already bound, unbind before bind), move, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.clinic.administration.common import Actor
from storage.clinic.administration.gateways import register_gateway
from storage.clinic.administration.patients import enrol_patient

from .admin_helpers import ADMIN_1, ADMIN_2, allowed_writes, audit_entries, refused
from .conftest import ClinicApi

METERS = "/api/v1/admin/meters"
BINDINGS = "/api/v1/admin/bindings"
GLUCOSE_METER = {"kind": "glucose", "manufacturer": "Roche", "model": "Guide", "serial_number": "GLU-77"}


@pytest.fixture
def clinic(clinic_api: ClinicApi) -> ClinicApi:
    """c1 with a second patient and a gateway; a registered glucose meter."""
    with clinic_api.services.clinic_sessions() as session:
        actor = Actor("admin-1", "c1")
        enrol_patient(
            session, actor, patient_id="p-2", given_name="Na", family_name="Li", family_doctor_id="dr-b"
        )
        register_gateway(session, actor, gateway_id="gw-1", mqtt_password="not used here")
        session.commit()
    response = clinic_api.client.post(METERS, headers=clinic_api.auth(ADMIN_1), json=GLUCOSE_METER)
    assert response.status_code == 201, response.text
    return clinic_api


def _key(api: ClinicApi) -> str:
    key: str = api.client.get(METERS, headers=api.auth(ADMIN_1)).json()[0]["meter_key"]
    return key


def _bind(api: ClinicApi, patient_id: str = "p-1", **extra: object) -> dict[str, object]:
    response = api.client.post(
        BINDINGS,
        headers=api.auth(ADMIN_1),
        json={"meter_key": _key(api), "gateway_id": "gw-1", "patient_id": patient_id, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_binding_defaults_to_the_meter_s_memory_not_being_the_patient_s(clinic: ClinicApi) -> None:
    """Bound from now, the earlier memory not the patient's unless chosen; the choice is audited."""
    change = _bind(clinic)
    binding = change["binding"]
    assert isinstance(binding, dict)
    assert (binding["patient_id"], binding["prior_memory_belongs"], binding["active"]) == ("p-1", False, True)
    assert change["gateway_config"] == "not_configured"
    [entry] = audit_entries(clinic, action="bind_meter")
    assert (entry.actor, entry.object_id) == ("admin-1", binding["meter_key"])
    assert entry.details["prior_memory_belongs"] is False and entry.details["patient_id"] == "p-1"
    meters = clinic.client.get(METERS, headers=clinic.auth(ADMIN_1)).json()
    assert [b["binding_id"] for b in meters[0]["active_bindings"]] == [binding["binding_id"]]


def test_a_meter_bound_to_another_patient_is_refused(clinic: ClinicApi) -> None:
    """The second binding is 409 `admin.meter_already_bound`, nothing changes, the refusal audited."""
    _bind(clinic)
    body = refused(
        clinic,
        "POST",
        BINDINGS,
        ADMIN_1,
        409,
        "admin.meter_already_bound",
        json={"meter_key": _key(clinic), "gateway_id": "gw-1", "patient_id": "p-2"},
    )
    assert body["field"] == "meter_key"
    assert audit_entries(clinic, action="bind_meter")[-1].details == {"code": "admin.meter_already_bound"}


def test_an_unbind_time_before_the_bind_time_is_refused(clinic: ClinicApi) -> None:
    """The binding stays as it was; an unbind time in the future is refused too."""
    binding = _bind(clinic)["binding"]
    assert isinstance(binding, dict)
    url = f"{BINDINGS}/{binding['binding_id']}/unbind"
    bound_at = datetime.fromisoformat(str(binding["bound_at"]))
    early = (bound_at - timedelta(hours=1)).isoformat()
    refused(clinic, "POST", url, ADMIN_1, 422, "admin.unbind_before_bind", json={"unbound_at": early})
    late = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    refused(clinic, "POST", url, ADMIN_1, 422, "admin.time_in_future", json={"unbound_at": late})
    unbound = clinic.client.post(url, headers=clinic.auth(ADMIN_1), json={}).json()["binding"]
    assert unbound["active"] is False and unbound["unbound_at"] >= unbound["bound_at"]
    refused(clinic, "POST", url, ADMIN_1, 409, "admin.binding_ended", json={})


def test_moving_a_meter_ends_one_binding_and_begins_the_next(clinic: ClinicApi) -> None:
    """Move = unbind + bind at the same instant, both audited, the memory choice made again."""
    first = _bind(clinic)["binding"]
    assert isinstance(first, dict)
    moved = clinic.client.post(
        f"{BINDINGS}/{first['binding_id']}/move", headers=clinic.auth(ADMIN_1), json={"patient_id": "p-2"}
    ).json()
    assert moved["ended"]["unbound_at"] == moved["binding"]["bound_at"]
    assert (moved["ended"]["patient_id"], moved["binding"]["patient_id"]) == ("p-1", "p-2")
    assert [w[1] for w in allowed_writes(clinic)[-3:]] == ["bind_meter", "unbind_meter", "bind_meter"]
    history = clinic.client.get(f"{BINDINGS}?patient_id=p-1", headers=clinic.auth(ADMIN_1)).json()
    assert [(b["binding_id"], b["active"]) for b in history] == [(first["binding_id"], False)]


def test_another_clinic_s_meters_gateways_and_bindings_are_absent(clinic: ClinicApi) -> None:
    """c2's administrator cannot bind c1's meter, unbind or move its bindings, or see them."""
    binding = _bind(clinic)["binding"]
    assert isinstance(binding, dict)
    key = _key(clinic)
    refused(
        clinic,
        "POST",
        BINDINGS,
        ADMIN_2,
        404,
        "admin.not_found",
        json={"meter_key": key, "gateway_id": "gw-1", "patient_id": "p-1"},
    )
    refused(
        clinic, "POST", f"{BINDINGS}/{binding['binding_id']}/unbind", ADMIN_2, 404, "admin.not_found", json={}
    )
    refused(
        clinic,
        "POST",
        f"{BINDINGS}/{binding['binding_id']}/move",
        ADMIN_2,
        404,
        "admin.not_found",
        json={"patient_id": "p-1"},
    )
    assert clinic.client.get(METERS, headers=clinic.auth(ADMIN_2)).json() == []
    assert clinic.client.get(BINDINGS, headers=clinic.auth(ADMIN_2)).json() == []


def test_a_meter_registered_twice_or_without_identity_is_refused(clinic: ClinicApi) -> None:
    """Registration needs a serial number or address, once per meter."""
    refused(clinic, "POST", METERS, ADMIN_1, 409, "admin.meter_exists", json=GLUCOSE_METER)
    refused(
        clinic,
        "POST",
        METERS,
        ADMIN_1,
        422,
        "admin.invalid_meter",
        json={**GLUCOSE_METER, "serial_number": None},
    )


def test_discharge_unbinds_the_patient_s_meters(clinic: ClinicApi) -> None:
    """After discharge the meter is free to bind to someone else."""
    binding = _bind(clinic)["binding"]
    assert isinstance(binding, dict)
    discharged = clinic.client.post(
        "/api/v1/admin/patients/p-1/discharge", headers=clinic.auth(ADMIN_1)
    ).json()
    assert discharged["bindings_ended"] == [binding["binding_id"]]
    assert _bind(clinic, "p-2")["binding"]

"""Bindings: meter (and user slot) -> patient, from the clinic's config and the local file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bindings import Bindings, BindingsError, MeterProfile, PairedMeter
from vitals.payload import GatewayConfig, MeterBinding

GW = "gw-bind"
CUFF = "virtual|cuff|BP-1"
METER = "virtual|glucose|GL-1"


def config(*bindings: MeterBinding, issued_at: datetime | None = None) -> GatewayConfig:
    return GatewayConfig(gateway_id=GW, issued_at=issued_at or datetime.now(UTC), bindings=bindings)


def paired(address: str = "C4:00:00:00:00:01", meter_key: str = CUFF) -> PairedMeter:
    return PairedMeter(
        address=address, meter_key=meter_key, profile=MeterProfile.BLOOD_PRESSURE, paired_at=datetime.now(UTC)
    )


def test_user_slots_of_a_cuff_route_to_their_own_patients(tmp_path: Path) -> None:
    bindings = Bindings(tmp_path / "b.json", GW).load()
    bindings.apply_config(
        config(
            MeterBinding(meter_key=CUFF, user_id=1, patient_id="p-1"),
            MeterBinding(meter_key=CUFF, user_id=2, patient_id="p-2"),
            MeterBinding(meter_key=METER, patient_id="p-3"),
        )
    )
    assert bindings.patient_for(CUFF, 1) == "p-1"
    assert bindings.patient_for(CUFF, 2) == "p-2"
    assert bindings.patient_for(CUFF, 3) is None  # slot 3 is nobody's: kept aside
    assert bindings.patient_for(METER, None) == "p-3"
    assert bindings.patient_for("someone|else|X", None) is None


def test_the_user_slots_a_sync_must_read_are_those_bound_and_not_ended(tmp_path: Path) -> None:
    """A shared cuff's sync must read the slots bound to a patient now or later, not an ended one's."""
    now = datetime.now(UTC)
    bindings = Bindings(tmp_path / "b.json", GW).load()
    bindings.apply_config(
        config(
            MeterBinding(meter_key=CUFF, user_id=1, patient_id="p-1"),
            MeterBinding(meter_key=CUFF, user_id=2, patient_id="p-2", unbound_at=now - timedelta(days=1)),
            MeterBinding(meter_key=CUFF, user_id=3, patient_id="p-3", unbound_at=now + timedelta(days=1)),
            MeterBinding(meter_key=CUFF, patient_id="p-4"),
            MeterBinding(meter_key=METER, user_id=5, patient_id="p-5"),
        )
    )
    assert bindings.bound_user_slots(CUFF, now) == {1, 3}
    assert bindings.bound_user_slots("someone|else|X", now) == set()


def test_clinic_config_survives_restart_and_older_configs_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    now = datetime.now(UTC)
    Bindings(path, GW).load().apply_config(
        config(MeterBinding(meter_key=METER, patient_id="p-new"), issued_at=now)
    )
    reloaded = Bindings(path, GW).load()
    assert reloaded.patient_for(METER, None) == "p-new"
    stale = config(MeterBinding(meter_key=METER, patient_id="p-old"), issued_at=now - timedelta(hours=1))
    assert not reloaded.apply_config(stale)
    assert reloaded.patient_for(METER, None) == "p-new"


def test_local_pairing_binding_is_used_until_the_clinic_names_the_meter(tmp_path: Path) -> None:
    bindings = Bindings(tmp_path / "b.json", GW).load()
    bindings.add_paired_meter(paired(), MeterBinding(meter_key=CUFF, user_id=1, patient_id="p-local"))
    assert bindings.patient_for(CUFF, 1) == "p-local"
    assert bindings.meter_at("c4:00:00:00:00:01") is not None
    bindings.apply_config(config(MeterBinding(meter_key=CUFF, user_id=1, patient_id="p-clinic")))
    assert bindings.patient_for(CUFF, 1) == "p-clinic"


def test_config_for_another_gateway_is_refused(tmp_path: Path) -> None:
    bindings = Bindings(tmp_path / "b.json", GW).load()
    other = GatewayConfig(gateway_id="gw-x", issued_at=datetime.now(UTC), bindings=())
    with pytest.raises(BindingsError):
        bindings.apply_config(other)

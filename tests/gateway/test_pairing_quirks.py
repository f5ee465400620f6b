"""``vitalgate gateway pair`` connects with the quirks the meter's advertisement selects, as the
gateway's sessions do (device_drivers.procedures.connect; bumble virtual meters through bleak)."""

from __future__ import annotations

from pathlib import Path

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import Bindings, MeterProfile
from gateway.pairing import pair
from tests.gateway.test_meters_virtual import radio  # noqa: F401 - the radio fixture


async def test_pairing_waits_the_settle_delay_an_a_and_d_cuff_advertises_for(
    tmp_path: Path,
    radio: VirtualRadio,  # noqa: F811
) -> None:
    """A cuff advertising as an A&D UA-651BLE is asked nothing over GATT for 2 s after pairing
    connects (it would show "E 10" and switch off), and is paired."""
    cuff = make_meter("and-like", clock=SimulationClock(), serial_number="AD-PAIR")
    await radio.add_meter(cuff)
    bindings = Bindings(tmp_path / "bindings.json", "gw-pair").load()
    paired = await pair(bindings, cuff.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="patient-1",
                        user_id=1, client_backend=radio.client_backend,
                        scanner_backend=radio.scanner_backend)  # fmt: skip
    assert cuff.first_request_after_s and min(cuff.first_request_after_s) >= 2.0
    assert bindings.meter_at(cuff.address) == paired

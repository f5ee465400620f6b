"""Build a virtual meter from a persona name (the factory the simulator, tests and benchmarks use)."""

from __future__ import annotations

import datetime as dt

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import MeterOptions, VirtualMeter
from device_drivers.virtual.personas import MeterKind, persona


def make_meter(
    persona_key: str,
    *,
    clock: SimulationClock,
    serial_number: str,
    address: str | None = None,
    fixed_passkey: int | None = None,
    utc_offset: dt.timedelta = dt.timedelta(0),
    clock_drift: dt.timedelta = dt.timedelta(0),
    glucose_unit: str = "mg/dL",
) -> VirtualMeter:
    """A cuff or glucose meter behaving like ``persona_key`` (see :mod:`.personas`).

    ``glucose_unit``: "mg/dL" (sent as kg/L) or "mmol/L" (sent as mol/L), glucose meters only.
    """
    chosen = persona(persona_key)
    common = MeterOptions(
        clock=clock,
        serial_number=serial_number,
        address=address,
        fixed_passkey=fixed_passkey,
        utc_offset=utc_offset,
        clock_drift=clock_drift,
    )
    if chosen.kind is MeterKind.GLUCOSE:
        return VirtualGlucoseMeter(chosen, unit=glucose_unit, **common)
    if chosen.blood_pressure_service == "1.1":
        return VirtualEnhancedBloodPressureCuff(chosen, **common)
    return VirtualBloodPressureCuff(chosen, **common)

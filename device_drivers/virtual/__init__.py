"""Virtual meters on bumble, a bleak backend that reaches them, and virtual patients.

There is no radio on the development machines and in CI, and most people evaluating vitalgate have
no meters. The virtual meters are real GATT servers (bumble ``Device`` objects with Blood Pressure or
Glucose service, stored records, a working RACP, Device Information, Battery, Current Time or Date
Time), so the gateway runs the same bleak calls against them as on a Raspberry Pi next to a cuff.

Entry point: :class:`VirtualRadio` holds the link (the "air"), the gateway's central (its adapter)
and the meters, and produces the bleak backend classes::

    from bleak import BleakClient, BleakScanner
    from device_drivers.virtual import SimulationClock, VirtualRadio, make_meter

    clock = SimulationClock(speed=3600)                       # one real second = one hour
    async with VirtualRadio() as radio:
        meter = await radio.add_meter(make_meter("contour-like", clock=clock, serial_number="G-1"))
        meter.add_record(taken_at=clock.now(), glucose_mg_dl=104)
        device = await BleakScanner.find_device_by_address(
            meter.address, backend=radio.scanner_backend)
        async with BleakClient(device, backend=radio.client_backend, pair=True) as client:
            ...                                               # the gateway's procedures, unchanged

Meters in another process (``vitalgate simulate --expose tcp-server:127.0.0.1:7001``) are reached
with ``radio = await VirtualRadio.remote("tcp-client:127.0.0.1:7001")`` and the same
``radio.scanner_backend`` / ``radio.client_backend``. A meter can also run on a USB Bluetooth
controller (``await meter.attach_transport("usb:0")``; ``vitalgate simulate --hardware usb:0``) so a
real BlueZ gateway can pair with it. See docs/virtual-meters.md.

Modules: :mod:`.radio` (VirtualRadio), :mod:`.central` (the bumble central), :mod:`.backend` (bleak
``BaseBleakScanner``/``BaseBleakClient`` subclasses), :mod:`.meter` (common meter),
:mod:`.factory` (a meter from a persona name), :mod:`.glucose_meter`, :mod:`.blood_pressure_cuff`, :mod:`.racp_server`, :mod:`.personas` (quirks of
real meters as data), :mod:`.patients` and :mod:`.stories` (virtual patients, JSON stories in
``story_data/``), :mod:`.simulator` (what ``vitalgate simulate`` runs), :mod:`.clock`.
"""

from __future__ import annotations

from device_drivers.virtual.backend import VirtualBleakClient, VirtualBleakScanner
from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.patients import PatientProfile, VirtualPatient
from device_drivers.virtual.personas import PERSONAS, Persona, persona
from device_drivers.virtual.radio import VirtualRadio, fixed_passkey_agent
from device_drivers.virtual.simulator import Simulation
from device_drivers.virtual.stories import Story, available_stories, load_story

__all__ = [
    "PERSONAS",
    "PatientProfile",
    "Persona",
    "Simulation",
    "SimulationClock",
    "Story",
    "VirtualBleakClient",
    "VirtualBleakScanner",
    "VirtualBloodPressureCuff",
    "VirtualGlucoseMeter",
    "VirtualMeter",
    "VirtualPatient",
    "VirtualRadio",
    "available_stories",
    "fixed_passkey_agent",
    "load_story",
    "make_meter",
    "persona",
]

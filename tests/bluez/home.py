"""The home the BlueZ tier plays: one gateway, a passkey glucose meter, a sleepy Just Works cuff.

Shared by the host (which enrols the same patients, meters and bindings in the clinic database
before the guest boots) and the guest (which runs the meters on the virtual radio).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from vitals.readings import DeviceIdentity

#: The scenarios, in the order one boot runs them (tests/bluez/guest_runner.py).
SCENARIOS = (
    "adapter_ready",
    "pair_passkey",
    "pair_just_works",
    "first_sync",
    "sleepy_discovery",
    "bonds_across_restart",
    "adapter_power_off",
    "bluetoothd_restart",
    "impostor_refused",
)
GATEWAY_ID = "gw-bluez-1"
CLINIC_ID = "clinic-bluez"
PASSKEY = 246810


@dataclass(frozen=True, slots=True)
class MeterSpec:
    persona: str
    manufacturer: str
    model: str
    serial_number: str
    address: str  # static random address (two top bits set)
    patient_id: str
    profile: str  # "glucose" or "bp", as `vitalgate gateway pair --profile` takes it
    user_slot: int | None = None

    @property
    def meter_key(self) -> str:
        return DeviceIdentity(
            manufacturer=self.manufacturer, model=self.model, serial_number=self.serial_number
        ).meter_key


# Persona strings from device_drivers/virtual/personas.py.
GLUCOSE_METER = MeterSpec(
    persona="accu-chek-like",
    manufacturer="Rosche (virtual)",
    model="Accu-Virt Guide",
    serial_number="GL-BLUEZ-1",
    address="F1:00:00:00:00:01",
    patient_id="pt-bluez-1",
    profile="glucose",
)
CUFF = MeterSpec(
    persona="omron-like",
    manufacturer="Omrun Healthcare (virtual)",
    model="HEM-V7",
    serial_number="BP-BLUEZ-1",
    address="F1:00:00:00:00:02",
    patient_id="pt-bluez-2",
    profile="bp",
    user_slot=1,
)
METERS = (GLUCOSE_METER, CUFF)

CLINIC_DATABASE = "clinic.sqlite3"


def enrol_home(directory: Path) -> Path:
    """Create the clinic database of this home in ``directory`` (host side, before the boot)."""
    from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
    from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
    from storage.clinic.models import MeterKind
    from storage.clinic.repository import bind_meter

    path = directory / CLINIC_DATABASE
    url = f"sqlite:///{path}"
    upgrade_to_head(url)
    engine = create_clinic_engine(url)
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id=CLINIC_ID, name="BlueZ tier practice")
        register_gateway(session, gateway_id=GATEWAY_ID, clinic_id=CLINIC_ID, mqtt_password="unused")
        for n, meter in enumerate(METERS):
            enrol_patient(
                session, patient_id=meter.patient_id, clinic_id=CLINIC_ID, given_name=f"P{n}", family_name="T"
            )
            device = DeviceIdentity(
                manufacturer=meter.manufacturer, model=meter.model, serial_number=meter.serial_number
            )
            kind = MeterKind.GLUCOSE if meter.profile == "glucose" else MeterKind.BLOOD_PRESSURE
            register_meter(session, clinic_id=CLINIC_ID, device=device, kind=kind)
            bind_meter(
                session,
                gateway_id=GATEWAY_ID,
                meter_key=meter.meter_key,
                patient_id=meter.patient_id,
                device_user_id=meter.user_slot,
            )
    engine.dispose()
    # One self-contained file for the guest to copy: no write-ahead log beside it.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    return path

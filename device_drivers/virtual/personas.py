"""Personas: the documented behaviour of real meters, as data the virtual meters obey.

Each persona reproduces rows of the quirks table (reference/ble-health-profiles.md §2.7) and the
pairing facts of reference/reliability.md §5.4. The names say "-like": they behave like the
documented devices, they do not claim to be them, and the manufacturer strings are fictional
lookalikes so nothing downstream mistakes a simulator for a real device.

| persona | behaviour (source) |
|---|---|
| ``omron-like`` cuff | radio on only for a while after a measurement or in pairing mode ("-P-");
  one bonded host at a time; per-user slots; indicates the records not yet sent to its bonded host
  ("new record counter") — hass-omron README/troubleshooting, omblepy README |
| ``and-like`` cuff | sends nothing until the collector has written the time (Date Time/CTS) on this
  connection — andengineering/AndroidSampleCode BleReceivedService.java |
| ``silvercrest-like`` cuff | plain BLS: indicates every stored reading, Just Works — BLUETOOTH.md, 1technophile/OpenMQTTGateway#806 |
| ``bls11-like`` cuff | Blood Pressure Service 1.1 only: Enhanced Blood Pressure Measurement 0x2B34 and stored
  Blood Pressure Records 0x2B36 over RACP, in segments, two users; no 0x2A35 — BLS 1.1, GATT
  Specification Supplement (reference §2.1, §2.2) |
| ``accu-chek-like`` glucose | passkey pairing (meter shows the PIN), Date Time 0x2A08 inside the Glucose
  service instead of CTS — xDrip#208, xDrip#308, BluetoothGlucoseMeter.java |
| ``contour-like`` glucose | standard GLS with context and CTS; meter must already hold a reading
  to connect (advertises only once it has one) — xDrip#104, xDrip#634 |
| ``taidoc-like`` glucose | reversed sequence numbers (0 = newest), no clock access, no context —
  xDrip BluetoothGlucoseMeter.java |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MeterKind(enum.StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    GLUCOSE = "glucose"


class PairingMethod(enum.StrEnum):
    #: No pairing offered: attributes are open (bleak reads them unencrypted).
    NONE = "none"
    #: Just Works: encrypted, unauthenticated (reliability.md §5.4 Level 2).
    JUST_WORKS = "just_works"
    #: Passkey entry, the meter displays the PIN (reliability.md §5.4 Level 3/4).
    PASSKEY_DISPLAY = "passkey_display"


class AdvertisingPolicy(enum.StrEnum):
    #: Advertises whenever it is not connected.
    ALWAYS = "always"
    #: Advertises only for ``advertising_window_s`` after a measurement, or in pairing mode.
    AFTER_MEASUREMENT = "after_measurement"
    #: Advertises only once it holds at least one record.
    WHEN_HOLDING_RECORDS = "when_holding_records"


class TimeCharacteristic(enum.StrEnum):
    #: Current Time Service 0x1805 with Current Time 0x2A2B (read, write, notify).
    CURRENT_TIME = "current_time"
    #: Date Time 0x2A08 inside the measurement service (Roche, §2.7).
    DATE_TIME_IN_SERVICE = "date_time_in_service"
    #: No clock access at all (TaiDoc, §2.7).
    NONE = "none"


class SequenceOrder(enum.StrEnum):
    #: Sequence numbers count up, the newest record has the highest number (GLS).
    ASCENDING = "ascending"
    #: 0 = newest; every new record renumbers the rest (TaiDoc, §2.7).
    REVERSED = "reversed"


@dataclass(frozen=True)
class Persona:
    """How one kind of meter behaves on the air."""

    key: str
    kind: MeterKind
    manufacturer: str
    model: str
    local_name: str
    firmware_revision: str = "1.0.0"
    hardware_revision: str = "A"
    pairing: PairingMethod = PairingMethod.JUST_WORKS
    #: Measurement data (CCCDs, RACP, records) refuses a link that is not encrypted with a bond.
    require_bonding: bool = True
    #: Bonds the meter keeps; a new host replaces the oldest only in pairing mode.
    max_bonds: int | None = None
    #: New pairings are accepted only in pairing mode (Omron "-P-": hold the BT button 3–5 s).
    pairing_requires_mode: bool = False
    advertising: AdvertisingPolicy = AdvertisingPolicy.ALWAYS
    #: Simulated seconds the radio stays on after a measurement (AFTER_MEASUREMENT).
    advertising_window_s: float = 120.0
    time_characteristic: TimeCharacteristic = TimeCharacteristic.CURRENT_TIME
    #: The meter delivers nothing until the collector has written the time on this connection.
    requires_time_write: bool = False
    sequence_order: SequenceOrder = SequenceOrder.ASCENDING
    #: Glucose: sends a Measurement Context 0x2A34 after measurements that have one.
    supports_context: bool = True
    #: Blood pressure: the cuff ends the link after indicating its stored records.
    disconnect_after_transfer: bool = True
    #: Blood pressure: indicate only records not yet delivered to the bonded host (Omron counter).
    deliver_only_new: bool = True
    #: Feature bit "multiple bond supported" (GLS feature bit 10, BLS feature bit 5).
    multiple_bonds_feature: bool = False
    battery_level_percent: int = 87
    #: Blood pressure: the Blood Pressure Service version ("1.0": 0x2A35 indications; "1.1": Enhanced
    #: Blood Pressure Measurement and Blood Pressure Records over RACP only).
    blood_pressure_service: str = "1.0"
    #: BLS 1.1: bytes of the recorded value per Blood Pressure Record segment.
    record_segment_size: int = 240


OMRON_LIKE = Persona(
    key="omron-like",
    kind=MeterKind.BLOOD_PRESSURE,
    manufacturer="Omrun Healthcare (virtual)",
    model="HEM-V7",
    local_name="BLEsmart_V7",
    max_bonds=1,
    pairing_requires_mode=True,
    advertising=AdvertisingPolicy.AFTER_MEASUREMENT,
    advertising_window_s=120.0,
)

AND_LIKE = Persona(
    key="and-like",
    kind=MeterKind.BLOOD_PRESSURE,
    manufacturer="A&E Medical (virtual)",
    model="UA-V651BLE",
    local_name="A&E_UA-V651",
    requires_time_write=True,
    deliver_only_new=True,
)

SILVERCREST_LIKE = Persona(
    key="silvercrest-like",
    kind=MeterKind.BLOOD_PRESSURE,
    manufacturer="Silverpeak (virtual)",
    model="SBM-V69",
    local_name="SBM-V69",
    deliver_only_new=False,
    multiple_bonds_feature=True,
)

BLS11_LIKE = Persona(
    key="bls11-like",
    kind=MeterKind.BLOOD_PRESSURE,
    manufacturer="Bluecuff (virtual)",
    model="BC-V11",
    local_name="BC-V11",
    deliver_only_new=False,
    multiple_bonds_feature=True,
    blood_pressure_service="1.1",
    # Small segments, so every record is reassembled from several (the Enhanced BPM the cuff sends
    # is 17 bytes).
    record_segment_size=6,
)

ACCU_CHEK_LIKE = Persona(
    key="accu-chek-like",
    kind=MeterKind.GLUCOSE,
    manufacturer="Rosche (virtual)",
    model="Accu-Virt Guide",
    local_name="meter+V0001",
    pairing=PairingMethod.PASSKEY_DISPLAY,
    time_characteristic=TimeCharacteristic.DATE_TIME_IN_SERVICE,
)

CONTOUR_LIKE = Persona(
    key="contour-like",
    kind=MeterKind.GLUCOSE,
    manufacturer="Ascendia (virtual)",
    model="Contour-V Next One",
    local_name="Contour-V",
    advertising=AdvertisingPolicy.WHEN_HOLDING_RECORDS,
)

TAIDOC_LIKE = Persona(
    key="taidoc-like",
    kind=MeterKind.GLUCOSE,
    manufacturer="TaiDuck (virtual)",
    model="TD-V4277",
    local_name="TD-V4277",
    pairing=PairingMethod.NONE,
    require_bonding=False,
    time_characteristic=TimeCharacteristic.NONE,
    sequence_order=SequenceOrder.REVERSED,
    supports_context=False,
)

PERSONAS: dict[str, Persona] = {
    persona.key: persona
    for persona in (
        OMRON_LIKE,
        AND_LIKE,
        SILVERCREST_LIKE,
        BLS11_LIKE,
        ACCU_CHEK_LIKE,
        CONTOUR_LIKE,
        TAIDOC_LIKE,
    )
}


def persona(key: str) -> Persona:
    """The persona named ``key``; ValueError lists the known names."""
    try:
        return PERSONAS[key]
    except KeyError:
        raise ValueError(f"unknown persona {key!r}; known: {', '.join(sorted(PERSONAS))}") from None

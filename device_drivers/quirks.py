"""Vendor quirks, keyed on the Device Information manufacturer and model strings, and those needed
before the first GATT operation (:class:`ConnectionQuirks`), keyed on the advertisement.

Each entry names the behaviour it changes and its public source (reference/ble-health-profiles.md
§2.7). xDrip keys its quirks on the manufacturer name the same way (BluetoothGlucoseMeter.java).
The manufacturer patterns for real devices are the vendor names; the exact DIS strings have not
been verified on hardware here, so patterns are loose, case-insensitive searches.

The virtual meters (device_drivers/virtual/personas.py) reproduce these behaviours under
fictional lookalike manufacturer names; those names map to the same quirks so the procedures run
unchanged against them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass


class ClockCharacteristic(enum.Enum):
    """Which characteristic carries the meter's clock."""

    CURRENT_TIME = "current_time"  # CTS 0x2A2B
    DATE_TIME = "date_time"  # Date Time 0x2A08 (Roche, inside the Glucose service)
    NONE = "none"  # no clock access (TaiDoc)


class RecordRequest(enum.Enum):
    """How to ask a glucose meter for its records."""

    BY_SEQUENCE_NUMBER = "by_sequence_number"  # 01 01 first, then 01 03 01 <last + 1>
    FIRST_RECORD_ONLY = "first_record_only"  # 01 05 (TaiDoc: sequence 0 is the newest)


@dataclass(frozen=True, slots=True)
class MeterQuirks:
    """Behaviour a collector must adapt to. The defaults are the standard BLS/GLS behaviour."""

    name: str = "standard"
    #: Which clock to read and write (the other is tried as a fallback when this is absent).
    clock_characteristic: ClockCharacteristic = ClockCharacteristic.CURRENT_TIME
    #: Write the gateway time on every connection before enabling indications (A&D).
    write_time_before_indications: bool = False
    #: Seconds to wait around the time write (A&D sample: 40 or 100 ms by firmware group).
    time_write_delay_s: float = 0.0
    #: Sequence numbers count down (0 = newest) and renumber on every new record (TaiDoc).
    sequence_numbers_reversed: bool = False
    record_request: RecordRequest = RecordRequest.BY_SEQUENCE_NUMBER
    #: The meter sends Glucose Measurement Context (absent on TaiDoc).
    has_measurement_context: bool = True
    #: The cuff sends only the newest reading after a measurement (Omron X4 Smart, RS7/Evolv/M500).
    sends_only_latest_record: bool = False
    #: What this entry changes, in words.
    behaviour: str = "standard Bluetooth SIG profile"
    #: Public sources for the behaviour.
    sources: tuple[str, ...] = ()


STANDARD = MeterQuirks()

OMRON = MeterQuirks(
    name="omron",
    sends_only_latest_record=True,
    behaviour=(
        "one bonded host at a time; radio on only shortly after a measurement or in '-P-' pairing mode; "
        "per-user slots; standard-BLS models indicate only the newest (not yet sent) readings"
    ),
    sources=(
        "userx14/omblepy README",
        "eigger/hass-omron README, docs/troubleshooting.md",
        "derdilla/blood-pressure-monitor-fl BLUETOOTH.md (X4 Smart)",
        "https://github.com/derdilla/blood-pressure-monitor-fl/issues/744",
    ),
)

A_AND_D = MeterQuirks(
    name="a_and_d_ua651",
    write_time_before_indications=True,
    time_write_delay_s=0.1,
    behaviour=(
        "write the time (CTS or Date Time) before enabling indications; nothing is indicated until "
        "the time has been written (the 2 s wait after connecting is in A_AND_D_CONNECTION: it must "
        "come before Device Information can be read)"
    ),
    sources=(
        "andengineering/AndroidSampleCode BleReceivedService.java",
        "https://github.com/andengineering/AndroidSampleCode/issues/1",
        "https://github.com/derdilla/blood-pressure-monitor-fl/issues/724",
    ),
)

ROCHE = MeterQuirks(
    name="roche_accu_chek",
    clock_characteristic=ClockCharacteristic.DATE_TIME,
    behaviour="clock is Date Time 0x2A08 in the Glucose service, not CTS; pairing by PIN shown on the meter",
    sources=(
        "https://github.com/NightscoutFoundation/xDrip/issues/208",
        "https://github.com/NightscoutFoundation/xDrip/issues/308",
        "xDrip BluetoothGlucoseMeter.java",
    ),
)

ASCENSIA = MeterQuirks(
    name="ascensia_contour",
    behaviour=(
        "standard GLS; must already hold a reading before the first sync; full re-reads duplicate, "
        "so records are deduplicated by sequence number and base time"
    ),
    sources=(
        "https://github.com/NightscoutFoundation/xDrip/issues/104",
        "https://github.com/NightscoutFoundation/xDrip/issues/634",
        "https://github.com/NightscoutFoundation/xDrip/issues/762",
    ),
)

TAIDOC = MeterQuirks(
    name="taidoc",
    clock_characteristic=ClockCharacteristic.NONE,
    sequence_numbers_reversed=True,
    record_request=RecordRequest.FIRST_RECORD_ONLY,
    has_measurement_context=False,
    behaviour=(
        "sequence numbers reversed (0 = newest), no clock access, no context; request the first "
        "record only; records are keyed on base time, not sequence number"
    ),
    sources=("xDrip BluetoothGlucoseMeter.java (Diamond Mobile Mini DM30b fw 1.2.4)",),
)


@dataclass(frozen=True, slots=True)
class QuirkEntry:
    """One row: a manufacturer pattern, an optional model pattern, and the quirks they select."""

    manufacturer: re.Pattern[str]
    model: re.Pattern[str] | None
    quirks: MeterQuirks


def _entry(manufacturer: str, model: str | None, quirks: MeterQuirks) -> QuirkEntry:
    return QuirkEntry(
        re.compile(manufacturer, re.IGNORECASE),
        None if model is None else re.compile(model, re.IGNORECASE),
        quirks,
    )


QUIRKS: tuple[QuirkEntry, ...] = (
    _entry(r"\bA\s*&\s*D\b|A&D Medical|A and D", r"UA-?651", A_AND_D),
    _entry(r"\bomron\b", None, OMRON),
    _entry(r"\broche\b|accu-?chek", None, ROCHE),
    _entry(r"\bascensia\b|\bbayer\b", None, ASCENSIA),
    _entry(r"\btai\s*doc\b", None, TAIDOC),
    # Virtual lookalikes (device_drivers/virtual/personas.py): fictional names, same behaviour.
    _entry(r"^A&E Medical \(virtual\)$", r"UA-V651", A_AND_D),
    _entry(r"^Omrun Healthcare \(virtual\)$", None, OMRON),
    _entry(r"^Rosche \(virtual\)$", None, ROCHE),
    _entry(r"^Ascendia \(virtual\)$", None, ASCENSIA),
    _entry(r"^TaiDuck \(virtual\)$", None, TAIDOC),
)
"""Checked in order; the first row whose patterns both match wins."""


def quirks_for(manufacturer: str | None, model: str | None) -> MeterQuirks:
    """The quirks for a meter identified by its DIS manufacturer and model (STANDARD if none match)."""
    for entry in QUIRKS:
        if manufacturer is None or not entry.manufacturer.search(manufacturer):
            continue
        if entry.model is not None and (model is None or not entry.model.search(model)):
            continue
        return entry.quirks
    return STANDARD


# --- Known before the first GATT operation: the advertisement --------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionQuirks:
    """Behaviour that must be applied before the first GATT operation of a connection, so it cannot
    wait for Device Information: it is selected from what the meter advertises."""

    name: str = "standard"
    #: Seconds between the link coming up and the first ATT request (MTU exchange, discovery).
    settle_delay_after_connect_s: float = 0.0
    behaviour: str = "standard: GATT operations start as soon as the link is up"
    sources: tuple[str, ...] = ()


STANDARD_CONNECTION = ConnectionQuirks()

A_AND_D_CONNECTION = ConnectionQuirks(
    name=A_AND_D.name,
    settle_delay_after_connect_s=2.0,
    behaviour="wait 2 s after the link is up before any GATT operation (else the cuff shows 'E 10' and switches off)",
    sources=(
        "andengineering/AndroidSampleCode BleReceivedService.java (waits 2 s before discoverServices)",
        "https://github.com/andengineering/AndroidSampleCode/issues/1 ('E 10' when discovery comes too early)",
        "obniz parts UA651BLE isDevice (the cuff advertises the local name 'A&D_UA-651BLE_' + 6 hex digits)",
        "Bluetooth SIG assigned numbers, company identifiers: 0x0069 A&D Engineering, Inc.",
    ),
)

#: Bluetooth SIG company identifier of A&D Engineering, Inc. (assigned numbers, company identifiers).
A_AND_D_COMPANY_ID = 0x0069


@dataclass(frozen=True, slots=True)
class AdvertisedQuirkEntry:
    """One row: a local-name pattern and/or a manufacturer-data company identifier (every one given
    must match), and the connection quirks they select."""

    local_name: re.Pattern[str] | None
    company_id: int | None
    quirks: ConnectionQuirks


def _advertised(
    local_name: str | None, company_id: int | None, quirks: ConnectionQuirks
) -> AdvertisedQuirkEntry:
    return AdvertisedQuirkEntry(None if local_name is None else re.compile(local_name), company_id, quirks)


ADVERTISED_QUIRKS: tuple[AdvertisedQuirkEntry, ...] = (
    _advertised(r"^A&D_UA-?651", None, A_AND_D_CONNECTION),
    _advertised(None, A_AND_D_COMPANY_ID, A_AND_D_CONNECTION),
    # Virtual lookalike (device_drivers/virtual/personas.py and-like): fictional name, same behaviour.
    _advertised(r"^A&E_UA-V651", None, A_AND_D_CONNECTION),
)
"""Checked in order; the first row whose given keys all match wins."""


def connection_quirks_for(local_name: str | None, manufacturer_data: Mapping[int, bytes]) -> ConnectionQuirks:
    """The quirks for a meter from its advertisement: local name and manufacturer-specific data
    (keyed by company identifier, as bleak's ``AdvertisementData.manufacturer_data``)."""
    for entry in ADVERTISED_QUIRKS:
        if entry.local_name is not None and (local_name is None or not entry.local_name.search(local_name)):
            continue
        if entry.company_id is not None and entry.company_id not in manufacturer_data:
            continue
        if entry.local_name is None and entry.company_id is None:
            continue
        return entry.quirks
    return STANDARD_CONNECTION

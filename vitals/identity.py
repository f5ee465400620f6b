"""Deterministic reading identity (DESIGN.md, Delivery).

`reading_id` is a hash of the device identity, the profile and the record key, so the same reading
gets the same id on every retransmission and at every stage, and each stage can be idempotent on it.
Record keys:
- glucose: sequence number plus base time (a meter that resets its sequence numbers gives new ids);
- blood pressure: the cuff's own timestamp plus user slot; where a cuff sends no time, the values.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from vitals.readings import DeviceIdentity, ReadingKind

_ID_SCHEME = "vitalgate-reading-v1"
READING_ID_HEX_CHARS = 32  # 128 bits: collisions negligible at any clinic's scale


def _digest(*parts: str) -> str:
    text = "\x1f".join((_ID_SCHEME, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:READING_ID_HEX_CHARS]


def _time_key(value: datetime | None) -> str:
    return "-" if value is None else value.replace(microsecond=0).isoformat()


def glucose_reading_id(device: DeviceIdentity, sequence_number: int, base_time: datetime | None) -> str:
    """Id of a glucose record: meter, sequence number and the meter's base time."""
    return _digest(device.meter_key, ReadingKind.GLUCOSE.value, str(sequence_number), _time_key(base_time))


def blood_pressure_reading_id(
    device: DeviceIdentity,
    device_time: datetime | None,
    user_id: int | None,
    *,
    systolic: float | None,
    diastolic: float | None,
    mean_arterial: float | None,
    pulse_bpm: float | None,
) -> str:
    """Id of a cuff record: cuff, its timestamp and user slot; the values when the cuff sends no time."""
    slot = "-" if user_id is None else str(user_id)
    key: tuple[str, ...]
    if device_time is not None:
        key = ("t", _time_key(device_time), slot)
    else:
        values = (systolic, diastolic, mean_arterial, pulse_bpm)
        key = ("v", slot, *(f"{v:g}" if v is not None else "nan" for v in values))
    return _digest(device.meter_key, ReadingKind.BLOOD_PRESSURE.value, *key)

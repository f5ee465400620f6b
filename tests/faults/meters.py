"""The readings a fault scenario's meters hold: deterministic, so every process computes the same ids.

One glucose meter per patient of a home (gateway). The meters measure in turn, one reading every
`step` seconds; meter k (but the last) stops after (k + 1) / patients of the run, and its last
reading is abnormal (40 mg/dL, below the urgent hypoglycaemia threshold of 54 mg/dL: GLU-HYPO-2 in
alerts.reading_rules). So the abnormal readings fall before, during and after a fault, each is its
patient's newest reading when it reaches the alert engine, and the last meter's patient, whose
readings are all in range, must get no alert at all. (Readings after an abnormal one are a case of
their own: test_messages.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from vitals.identity import glucose_reading_id
from vitals.readings import DeviceIdentity, GlucoseReading

ABNORMAL_MG_DL = 40.0
ABNORMAL_RULE = "GLU-HYPO-2"


@dataclass(frozen=True, slots=True)
class Home:
    """A gateway, its patients (one meter each) and the readings its meters will have measured."""

    gateway_id: str
    patients: int
    count: int
    t0: float  # epoch seconds of reading 0
    step: float = 0.05  # seconds between readings

    def patient_id(self, k: int) -> str:
        return f"{self.gateway_id}-p{k}"

    def device(self, k: int) -> DeviceIdentity:
        return DeviceIdentity(
            manufacturer="Faults Medical", model="GL-F", serial_number=f"{self.gateway_id}-m{k}"
        )

    def abnormal_index(self, k: int) -> int | None:
        """The home-wide index of meter k's abnormal reading (its last), None for the last meter."""
        if k == self.patients - 1:
            return None
        return _schedule(self.patients, self.count)[1][k]

    def reading(self, g: int) -> GlucoseReading:
        k, record = _schedule(self.patients, self.count)[0][g]
        device = self.device(k)
        measured_at = datetime.fromtimestamp(self.t0, UTC) + timedelta(seconds=g * self.step)
        base_time = measured_at.replace(tzinfo=None)
        value = ABNORMAL_MG_DL if g == self.abnormal_index(k) else 95.0 + (g % 40)
        return GlucoseReading(
            reading_id=glucose_reading_id(device, record % 0x10000, base_time),
            device=device,
            patient_id=self.patient_id(k),
            measured_at=measured_at,
            device_time=base_time,
            sequence_number=record % 0x10000,
            unit="mg/dL",
            glucose=value,
        )

    def reading_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [self.reading(g).reading_id for g in range(start, self.count if stop is None else stop)]

    def abnormal(self) -> dict[str, str]:
        """patient id -> reading id of that patient's abnormal reading."""
        return {
            self.patient_id(k): self.reading(g).reading_id
            for k in range(self.patients)
            if (g := self.abnormal_index(k)) is not None
        }

    def patient_ids(self) -> set[str]:
        return {self.patient_id(k) for k in range(self.patients)}


@lru_cache(maxsize=64)
def _schedule(patients: int, count: int) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """(meter, record) of each reading, and each meter's last reading index."""
    ends = [count * (k + 1) // patients for k in range(patients)]
    records = [0] * patients
    last = [0] * patients
    out = []
    for g in range(count):
        active = [k for k in range(patients) if g < ends[k]]
        k = active[g % len(active)]
        out.append((k, records[k]))
        records[k] += 1
        last[k] = g
    return tuple(out), tuple(last)

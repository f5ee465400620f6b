"""The readings a fault scenario's meters hold: deterministic, so every process computes the same ids.

One glucose meter per patient of a home (gateway). Reading `g` of a home (0 <= g < count) is taken
by meter `g % patients` as that meter's record `g // patients`, `step` seconds after reading `g - 1`.
Each meter holds exactly one abnormal reading (40 mg/dL, below the urgent hypoglycaemia threshold
of 54 mg/dL in alerts.singles), at a point of the run that differs per meter, so the
abnormal readings fall before, during and after a fault; every other reading is in range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vitals.identity import glucose_reading_id
from vitals.readings import DeviceIdentity, GlucoseReading

ABNORMAL_MG_DL = 40.0


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
        return DeviceIdentity(manufacturer="Faults Medical", model="GL-F", serial_number=f"{self.gateway_id}-m{k}")

    def per_patient(self) -> int:
        return -(-self.count // self.patients)

    def abnormal_index(self, k: int) -> int:
        """The home-wide index of meter k's abnormal reading: spread over the run."""
        record = (k * self.per_patient()) // self.patients + self.per_patient() // (2 * self.patients)
        g = record * self.patients + k
        return g if g < self.count else k

    def reading(self, g: int) -> GlucoseReading:
        k, record = g % self.patients, g // self.patients
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
        return {self.patient_id(k): self.reading(self.abnormal_index(k)).reading_id for k in range(self.patients)}

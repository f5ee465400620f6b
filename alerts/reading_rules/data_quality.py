"""DQ-02, the data-quality rule on single readings."""

from __future__ import annotations

from alerts.reading_rules.state import NewReading, PatientReadings
from vitals.payload import AlertSeverity


def dq_02(patient: PatientReadings, new: NewReading) -> None:
    """DQ-02: an invalid or flagged reading, left out of averages and of every other rule ([27][61])."""
    reading, rule = new.reading, patient.episodes["DQ-02"]
    if not reading.excluded_from_averages:
        rule.in_range()
        return
    rule.trigger(
        reading.measured_at,
        AlertSeverity.INFO,
        {"kind": reading.kind.value, "reasons": list(reading.exclusion_reasons)},
        [reading.reading_id],
    )

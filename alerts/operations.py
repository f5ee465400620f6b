"""Operational rules: the equipment a patient measures with, watched from the fleet's state.

- OPS-GW-OFFLINE: a gateway through which an active patient is expected to measure (an active
  binding) has not been heard from for `gateway_offline_after` (default 12 h): no status report, or
  its last will (or final status) said offline that long ago.
- OPS-METER-BATTERY: a meter bound to the patient reports a battery level at or below
  `battery_low_percent` (default 20 %).

Pure: the state comes from storage.clinic.fleet.fleet_watches (written by the clinic's status
consumer, which lives in the composition root: alerts never consume MQTT). The outcomes go through
`AlertEngine.apply_outcomes`: one alert per patient and rule while unresolved, resolved when the
condition clears (alerts.lifecycle), routed to the clinic staff only (alerts.routing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.catalogue import RULES
from alerts.model import Outcome, OutcomeStatus
from storage.clinic.fleet import GatewayWatch

GATEWAY_OFFLINE = "OPS-GW-OFFLINE"
METER_BATTERY_LOW = "OPS-METER-BATTERY"
OPERATIONAL_RULES = (GATEWAY_OFFLINE, METER_BATTERY_LOW)


@dataclass(frozen=True, slots=True)
class OperationalParameters:
    gateway_offline_after: timedelta = timedelta(hours=12)
    battery_low_percent: int = 20


def _firing(rule_id: str, patient_id: str, episode: str, values: dict[str, object]) -> Outcome:
    return Outcome(
        rule_id=rule_id,
        patient_id=patient_id,
        status=OutcomeStatus.FIRING,
        severity=RULES[rule_id].severity,
        values=values,
        episode_key=episode,
    )


def operational_outcomes(
    watches: Sequence[GatewayWatch],
    params: OperationalParameters,
    now: datetime,
    unresolved: AbstractSet[tuple[str, str]] = frozenset(),
) -> dict[str, list[Outcome]]:
    """Per patient: FIRING or CLEAR for each operational rule the fleet's state decides, and CLEAR
    for an open operational alert of a patient no longer watched (unbound, gateway deactivated)."""
    silent: dict[str, list[GatewayWatch]] = defaultdict(list)
    watched: set[str] = set()
    batteries: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for watch in watches:
        quiet = watch.silent_since is not None and now - watch.silent_since >= params.gateway_offline_after
        for patient_id in watch.patient_ids:
            watched.add(patient_id)
            if quiet:
                silent[patient_id].append(watch)
        for meter in watch.meters:
            if meter.battery_percent is None:
                continue
            for patient_id in meter.patient_ids:
                batteries[patient_id].append((meter.meter_key, meter.battery_percent))
    out: dict[str, list[Outcome]] = defaultdict(list)
    for patient_id in sorted(watched):
        gone = sorted(silent.get(patient_id, []), key=lambda w: w.gateway_id)
        if gone:
            since = min(w.silent_since for w in gone if w.silent_since is not None)
            ids = [w.gateway_id for w in gone]
            out[patient_id].append(
                _firing(
                    GATEWAY_OFFLINE,
                    patient_id,
                    f"{'|'.join(ids)}|{since.isoformat()}",
                    {"gateway_ids": ids, "silent_since": since.isoformat()},
                )
            )
        else:
            out[patient_id].append(
                Outcome(rule_id=GATEWAY_OFFLINE, patient_id=patient_id, status=OutcomeStatus.CLEAR)
            )
        levels = sorted(batteries.get(patient_id, []))
        low = [(key, level) for key, level in levels if level <= params.battery_low_percent]
        if low:
            out[patient_id].append(
                _firing(
                    METER_BATTERY_LOW,
                    patient_id,
                    "|".join(key for key, _level in low),
                    {"meters": [{"meter_key": key, "battery_percent": level} for key, level in low]},
                )
            )
        elif levels:
            out[patient_id].append(
                Outcome(rule_id=METER_BATTERY_LOW, patient_id=patient_id, status=OutcomeStatus.CLEAR)
            )
    for patient_id, rule_id in sorted(unresolved):
        if rule_id in OPERATIONAL_RULES and patient_id not in watched:
            out[patient_id].append(
                Outcome(rule_id=rule_id, patient_id=patient_id, status=OutcomeStatus.CLEAR)
            )
    return dict(out)

"""Who a patient is to the alert engine: clinic, guideline profile, targets and care team.

The clinic server looks patients up in the clinic database (alerts.repository.SqlPatientDirectory);
tests, replay and benches hand in a fixed directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerts.channels.base import Recipient
from alerts.profiles import PatientTargets, Profile, RuleParameters, parameters


@dataclass(frozen=True, slots=True)
class PatientContext:
    patient_id: str
    clinic_id: str
    profile: Profile
    targets: PatientTargets
    care_team: tuple[Recipient, ...]  # family doctor first, then staff on duty

    def parameters(self) -> RuleParameters:
        return parameters(self.profile, self.targets)


@dataclass(frozen=True, slots=True)
class PatientRules:
    """What the sweep needs of a patient: the clinic, and the rules' parameters (profile, targets,
    time zone). The care team is looked up only for patients whose alerts change."""

    patient_id: str
    clinic_id: str
    parameters: RuleParameters


class PatientDirectory(Protocol):
    def context(self, patient_id: str) -> PatientContext | None: ...
    def active_patient_ids(self) -> list[str]: ...
    def rules(self, patient_ids: Sequence[str]) -> dict[str, PatientRules]:
        """Active patients' `PatientRules`, for many patients in few queries (unknown or discharged
        ids are left out)."""
        ...


@dataclass
class StaticDirectory:
    """A fixed directory (tests, replay, the demo before the clinic DB is wired)."""

    patients: dict[str, PatientContext] = field(default_factory=dict)

    def context(self, patient_id: str) -> PatientContext | None:
        return self.patients.get(patient_id)

    def active_patient_ids(self) -> list[str]:
        return list(self.patients)

    def rules(self, patient_ids: Sequence[str]) -> dict[str, PatientRules]:
        return {
            pid: PatientRules(pid, ctx.clinic_id, ctx.parameters())
            for pid in patient_ids
            if (ctx := self.patients.get(pid)) is not None
        }

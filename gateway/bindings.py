"""Device bindings: which patient a meter (and user slot) measures, and which meters are paired here.

Two sources, one file:
- the clinic's retained ``config`` topic (:class:`vitals.payload.GatewayConfig`), authoritative for
  every meter it names; the last one received is saved so the gateway works after a restart with
  the broker out of reach;
- bindings made on site by ``vitalgate gateway pair``, used for meters the clinic config does not
  name (yet).

The same file holds the registry of meters paired (bonded) with this gateway: BLE address, meter
identity (:attr:`vitals.readings.DeviceIdentity.meter_key`), profile, and the security level of
the bond made at pairing (gateway.bond_security). The gateway connects only to meters in this
registry; a device that claims a registered meter's identity from another address is refused
(reliability.md §5.4: accept readings only from bonded device addresses).

Attribution (:meth:`Bindings.attribute`): a reading belongs to a binding's patient only when its
clock-corrected measurement time lies inside the binding's interval (``bound_at`` up to
``unbound_at``; before ``bound_at`` too when the administrator said the meter's earlier memory is the
patient's). A loaner meter's memory is therefore never attributed to its new patient. A reading
whose time cannot be trusted (no timestamp, the meter's clock not read, a glucose time fault) is
attributed only by a binding that holds at every time; otherwise it is kept aside for a person to
decide, never guessed.

Patients appear as opaque ids only; the file holds no personal data.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.bond_security import BondSecurity
from vitals.payload import GatewayConfig, MeterBinding, UnboundReason
from vitals.readings import BloodPressureReading, GlucoseReading, Reading, SensorStatus

logger = logging.getLogger(__name__)

STATE_FILE_VERSION = 1


class MeterProfile(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"  # Blood Pressure service 0x1810
    GLUCOSE = "glucose"  # Glucose service 0x1808


class PairedMeter(BaseModel):
    """A meter bonded with this gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(pattern=r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
    meter_key: str = Field(min_length=1)
    profile: MeterProfile
    paired_at: datetime
    #: The bond's security level when it was paired (gateway.bond_security); sessions refuse a link
    #: whose bond is weaker. None: not recorded (paired before the level was kept): not checked.
    security: BondSecurity | None = None


def time_trusted(reading: Reading) -> bool:
    """Whether ``measured_at`` is the meter's timestamp corrected by a clock read at sync time.

    Not trusted: no device timestamp (``measured_at`` is the time the gateway received it), a meter
    clock that was not read (its wall clock was taken as the gateway's local time, whatever it
    showed; device_drivers.readings), a record stamped before the meter's clock was reset (battery
    change; the clock read at sync does not apply to it, gateway.collect), or a glucose record
    flagged with a time fault (0x2A18 bit 11).
    """
    if reading.device_time is None or reading.clock_offset_s is None:
        return False
    return not (isinstance(reading, GlucoseReading) and SensorStatus.TIME_FAULT in reading.sensor_status)


def _holds_at(binding: MeterBinding, measured_at: datetime) -> bool:
    """Inside the interval proper (the prior-memory extension aside)."""
    started = binding.bound_at is None or binding.bound_at <= measured_at
    return started and (binding.unbound_at is None or measured_at < binding.unbound_at)


def _holds_always(binding: MeterBinding) -> bool:
    return (binding.bound_at is None or binding.prior_memory_belongs) and binding.unbound_at is None


def _attribute_within(
    group: Sequence[MeterBinding], measured_at: datetime, trusted: bool
) -> str | UnboundReason:
    if not trusted:
        # Only a lone binding that holds at every time makes the time irrelevant.
        if len(group) == 1 and _holds_always(group[0]):
            return group[0].patient_id
        return UnboundReason.CLOCK_UNTRUSTED
    inside = [b for b in group if _holds_at(b, measured_at)]
    if inside:
        # The most recent start wins (a local any-time binding yields to a dated clinic one).
        return max(
            inside, key=lambda b: b.bound_at or datetime.min.replace(tzinfo=measured_at.tzinfo)
        ).patient_id
    # Measured before a binding began: its patient's only if the administrator said the meter's
    # memory is theirs, and nobody else held the meter in between.
    later = sorted((b for b in group if b.bound_at is not None and measured_at < b.bound_at),
                   key=lambda b: b.bound_at or measured_at)  # fmt: skip
    if later and later[0].prior_memory_belongs:
        return later[0].patient_id
    return UnboundReason.OUTSIDE_BINDING


def attribute(
    bindings: Sequence[MeterBinding],
    meter_key: str,
    user_id: int | None,
    measured_at: datetime,
    trusted: bool,
) -> str | UnboundReason:
    """The patient a reading of ``meter_key`` (user slot ``user_id``) measured at ``measured_at``
    belongs to, or why it belongs to nobody. Bindings of the exact slot first, then the meter's
    any-slot bindings."""
    exact = [b for b in bindings if b.meter_key == meter_key and user_id is not None and b.user_id == user_id]
    any_slot = [b for b in bindings if b.meter_key == meter_key and b.user_id is None]
    reason: UnboundReason | None = None
    for group in (exact, any_slot):
        if not group:
            continue
        found = _attribute_within(group, measured_at, trusted)
        if not isinstance(found, UnboundReason):
            return found
        reason = reason or found
    return reason or UnboundReason.NO_BINDING


class BindingsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = STATE_FILE_VERSION
    meters: list[PairedMeter] = Field(default_factory=list)
    local_bindings: list[MeterBinding] = Field(default_factory=list)
    clinic_config: GatewayConfig | None = None


class BindingsError(Exception):
    """The bindings file cannot be read or written."""


class Bindings:
    """Lookups for routing readings, backed by a JSON file written atomically."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self._lock = threading.Lock()
        self._state = BindingsFile()

    def load(self) -> Bindings:
        if self.path.exists():
            try:
                self._state = BindingsFile.model_validate_json(self.path.read_bytes())
            except (ValidationError, OSError) as exc:
                raise BindingsError(f"bindings file {self.path} unreadable: {exc}") from exc
        return self

    def _save_locked(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        data = self._state.model_dump_json(indent=2).encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        # The rename is durable only once the directory entry is on disk (a power cut on a home box
        # must not bring back the old bindings).
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- clinic config ---------------------------------------------------------------------------

    def apply_config(self, config: GatewayConfig) -> bool:
        """Take the clinic's bindings; older configs than the one held are ignored. True if applied."""
        if config.gateway_id != self.gateway_id:
            raise BindingsError("config addressed to another gateway")
        with self._lock:
            held = self._state.clinic_config
            if held is not None and config.issued_at < held.issued_at:
                logger.warning(
                    "older gateway config ignored",
                    extra={"issued_at": config.issued_at.isoformat(), "held": held.issued_at.isoformat()},
                )
                return False
            self._state.clinic_config = config
            self._save_locked()
        logger.info("gateway config applied", extra={"bindings": len(config.bindings)})
        return True

    # -- local pairing ---------------------------------------------------------------------------

    def add_paired_meter(self, meter: PairedMeter, binding: MeterBinding | None = None) -> None:
        with self._lock:
            self._state.meters = [m for m in self._state.meters if m.address != meter.address]
            self._state.meters.append(meter)
            if binding is not None:
                if binding.meter_key != meter.meter_key:
                    raise BindingsError("binding names another meter")
                self._state.local_bindings = [
                    b
                    for b in self._state.local_bindings
                    if (b.meter_key, b.user_id) != (binding.meter_key, binding.user_id)
                ]
                self._state.local_bindings.append(binding)
            self._save_locked()

    def remove_meter(self, address: str) -> PairedMeter | None:
        with self._lock:
            found = next((m for m in self._state.meters if m.address == address.upper()), None)
            if found is not None:
                self._state.meters.remove(found)
                self._save_locked()
            return found

    # -- lookups ---------------------------------------------------------------------------------

    @property
    def meters(self) -> tuple[PairedMeter, ...]:
        with self._lock:
            return tuple(self._state.meters)

    def meter_at(self, address: str) -> PairedMeter | None:
        with self._lock:
            return next((m for m in self._state.meters if m.address == address.upper()), None)

    def meter_with_key(self, meter_key: str) -> PairedMeter | None:
        with self._lock:
            return next((m for m in self._state.meters if m.meter_key == meter_key), None)

    def effective_bindings(self) -> tuple[MeterBinding, ...]:
        with self._lock:
            clinic = self._state.clinic_config.bindings if self._state.clinic_config else ()
            named = {b.meter_key for b in clinic}
            local = tuple(b for b in self._state.local_bindings if b.meter_key not in named)
            return (*clinic, *local)

    def attribute(self, reading: Reading) -> str | UnboundReason:
        """The patient ``reading`` belongs to, or why it belongs to nobody (module docstring)."""
        user_id = reading.user_id if isinstance(reading, BloodPressureReading) else None
        return attribute(
            self.effective_bindings(),
            reading.device.meter_key,
            user_id,
            reading.measured_at,
            time_trusted(reading),
        )

    def patient_for(self, meter_key: str, user_id: int | None) -> str | None:
        """The patient a reading belongs to: exact (meter, slot) first, then the meter's any-slot binding."""
        any_slot: str | None = None
        for binding in self.effective_bindings():
            if binding.meter_key != meter_key:
                continue
            if binding.user_id == user_id and user_id is not None:
                return binding.patient_id
            if binding.user_id is None:
                any_slot = binding.patient_id
        return any_slot

    def bound_user_slots(self, meter_key: str, now: datetime | None = None) -> frozenset[int]:
        """The user slots of ``meter_key`` named by a binding that has not ended at ``now`` (a shared
        cuff's users with a patient); a binding without a slot names none."""
        now = now or datetime.now(UTC)
        return frozenset(
            b.user_id
            for b in self.effective_bindings()
            if b.meter_key == meter_key
            and b.user_id is not None
            and (b.unbound_at is None or b.unbound_at > now)
        )

    def describe(self) -> str:
        """The state as indented JSON (for ``vitalgate gateway devices``)."""
        with self._lock:
            return json.dumps(json.loads(self._state.model_dump_json()), indent=2)

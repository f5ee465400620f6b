"""Run virtual patients with their meters on an accelerated clock.

A :class:`Simulation` puts each patient's meters (the personas named by the patient's story) on a
:class:`~device_drivers.virtual.radio.VirtualRadio`'s link, loads ``history_days`` of past readings
into them at once, then takes each later reading at its simulated time. The gateway reaches the
meters through ``radio.scanner_backend`` / ``radio.client_backend`` in-process, or through a
controller the simulation serves (``serve_controller("tcp-server:127.0.0.1:7001")``) from another
process. This is what ``vitalgate simulate`` and the demo run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from dataclasses import dataclass, field

from device_drivers.profiles import blood_pressure as bp_codec
from device_drivers.profiles import glucose as glucose_codec
from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.patients import BloodPressureSample, GlucoseSample, PatientProfile, VirtualPatient
from device_drivers.virtual.personas import PairingMethod
from device_drivers.virtual.radio import VirtualRadio
from device_drivers.virtual.stories import Story

logger = logging.getLogger(__name__)

#: Top two bits of a static random address are 1 (Core Vol 6 Part B 1.3.2.1).
STATIC_RANDOM_ADDRESS_MARK = 0xC0
ADDRESS_LENGTH = 6
#: A gateway scans in real time: on a fast clock, keep "advertises for a while" windows this long.
MINIMUM_ADVERTISING_WINDOW_REAL_S = 20.0

MEAL_CODES = {
    "fasting": glucose_codec.MealCode.FASTING,
    "postprandial": glucose_codec.MealCode.POSTPRANDIAL,
    "bedtime": glucose_codec.MealCode.BEDTIME,
    "casual": glucose_codec.MealCode.CASUAL,
    "preprandial": glucose_codec.MealCode.PREPRANDIAL,
}


def static_random_address(seed: int, patient_index: int, meter_index: int) -> str:
    """A stable static random address for a simulated meter (same seed, same address)."""
    rng = random.Random(f"address:{seed}:{patient_index}:{meter_index}")
    octets = [rng.randrange(256) for _ in range(ADDRESS_LENGTH)]
    octets[0] |= STATIC_RANDOM_ADDRESS_MARK
    return ":".join(f"{octet:02X}" for octet in octets)


@dataclass
class SimulatedPatient:
    patient: VirtualPatient
    meters: list[VirtualMeter] = field(default_factory=list)

    def cuffs(self) -> list[VirtualBloodPressureCuff]:
        return [meter for meter in self.meters if isinstance(meter, VirtualBloodPressureCuff)]

    def glucose_meters(self) -> list[VirtualGlucoseMeter]:
        return [meter for meter in self.meters if isinstance(meter, VirtualGlucoseMeter)]


class Simulation:
    """Virtual patients, their meters and the schedule of their readings."""

    def __init__(
        self,
        radio: VirtualRadio,
        clock: SimulationClock,
        stories: list[Story],
        *,
        patients: int,
        seed: int = 0,
        history_days: int = 7,
        fixed_passkey: int | None = None,
    ) -> None:
        if not stories:
            raise ValueError("at least one story is needed")
        self.radio = radio
        self.clock = clock
        self.seed = seed
        self.history_days = history_days
        self.fixed_passkey = fixed_passkey
        now = clock.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.story_start = midnight - dt.timedelta(days=history_days)
        self.patients: list[SimulatedPatient] = []
        for index in range(patients):
            story = stories[index % len(stories)]
            patient = VirtualPatient(
                patient_id=f"vp-{index + 1:04d}",
                story=story,
                profile=PatientProfile.from_dict(story.patient),
                seed=seed * 10_000 + index,
                start=self.story_start,
            )
            self.patients.append(SimulatedPatient(patient))
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self, *, hardware_transport: str | None = None) -> None:
        """Create every meter, load its history, switch it on (first meter on ``hardware_transport``)."""
        now = self.clock.now()
        for patient_index, simulated in enumerate(self.patients):
            for meter_index, persona_key in enumerate(simulated.patient.story.meters):
                meter = make_meter(
                    persona_key,
                    clock=self.clock,
                    serial_number=f"{persona_key.split('-')[0].upper()}-{patient_index + 1:04d}{meter_index}",
                    address=static_random_address(self.seed, patient_index, meter_index),
                    fixed_passkey=self.fixed_passkey,
                )
                meter.minimum_advertising_window_real_s = MINIMUM_ADVERTISING_WINDOW_REAL_S
                simulated.meters.append(meter)
            self._load_history(simulated, until=now)
            for meter in simulated.meters:
                if hardware_transport is not None and patient_index == 0 and meter is simulated.meters[0]:
                    await meter.attach_transport(hardware_transport)
                    await meter.start()
                    self.radio.meters.append(meter)
                else:
                    await self.radio.add_meter(meter)
                if meter.persona.pairing_requires_mode:
                    # First-time set-up: the patient holds the BT button so the gateway can bond.
                    await meter.enter_pairing_mode()

    def _load_history(self, simulated: SimulatedPatient, *, until: dt.datetime) -> None:
        patient = simulated.patient
        for day in range(0, patient.day_of(until) + 1):
            for bp in patient.blood_pressure_readings(day):
                if bp.taken_at <= until:
                    for cuff in simulated.cuffs():
                        _store_blood_pressure(cuff, bp)
            for glucose in patient.glucose_readings(day):
                if glucose.taken_at <= until:
                    for meter in simulated.glucose_meters():
                        _store_glucose(meter, glucose)

    def start(self) -> None:
        """Take the future readings at their simulated times (background tasks)."""
        for simulated in self.patients:
            task = asyncio.get_running_loop().create_task(self._live(simulated))
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _live(self, simulated: SimulatedPatient) -> None:
        patient = simulated.patient
        day = patient.day_of(self.clock.now())
        while day < patient.story.days:
            events: list[BloodPressureSample | GlucoseSample] = [
                *patient.blood_pressure_readings(day),
                *patient.glucose_readings(day),
            ]
            for event in sorted(events, key=lambda sample: sample.taken_at):
                wait_s = (event.taken_at - self.clock.now()).total_seconds()
                if wait_s < 0:
                    continue
                await self.clock.sleep(wait_s)
                if isinstance(event, BloodPressureSample):
                    for cuff in simulated.cuffs():
                        _store_blood_pressure(cuff, event)
                        await cuff.measurement_taken()
                else:
                    for meter in simulated.glucose_meters():
                        _store_glucose(meter, event)
                        await meter.measurement_taken()
            day += 1

    def describe(self) -> str:
        """What each meter holds, patient by patient (opaque ids, no personal data)."""
        lines: list[str] = []
        for simulated in self.patients:
            story = simulated.patient.story
            lines.append(f"patient {simulated.patient.patient_id}  story={story.name}: {story.description}")
            for meter in simulated.meters:
                pin = ""
                if meter.persona.pairing is PairingMethod.PASSKEY_DISPLAY and meter.fixed_passkey is not None:
                    pin = f"  PIN {meter.fixed_passkey:06d}"
                records = _describe(meter)
                lines.append(
                    f"  {meter.persona.key:<17} {meter.address}  name={meter.name}  "
                    f"serial={meter.serial_number}  records={len(records)}{pin}"
                )
                for line in records[-5:]:
                    lines.append(f"      {line}")
                if len(records) > 5:
                    lines.append(f"      ... {len(records) - 5} earlier")
        return "\n".join(lines)


def _describe(meter: VirtualMeter) -> list[str]:
    if isinstance(meter, (VirtualBloodPressureCuff, VirtualGlucoseMeter)):
        return meter.describe_records()
    return []


#: Measurement Status of an "Err" reading: the cuff was too loose (reference §2.2 status bits).
ERROR_READING_STATUS = bp_codec.MeasurementStatus.of(bp_codec.MeasurementStatusFlag.CUFF_TOO_LOOSE)


def _store_blood_pressure(cuff: VirtualBloodPressureCuff, sample: BloodPressureSample) -> None:
    cuff.add_record(
        taken_at=sample.taken_at,
        systolic_mmhg=sample.systolic_mmhg,
        diastolic_mmhg=sample.diastolic_mmhg,
        pulse_bpm=sample.pulse_bpm,
        status=ERROR_READING_STATUS if sample.error else None,
    )


def _store_glucose(meter: VirtualGlucoseMeter, sample: GlucoseSample) -> None:
    carbohydrate_id = glucose_codec.CarbohydrateCode.LUNCH if sample.carbohydrate_grams is not None else None
    meter.add_record(
        taken_at=sample.taken_at,
        glucose_mg_dl=sample.glucose_mg_dl,
        meal=MEAL_CODES.get(sample.meal),
        carbohydrate_id=carbohydrate_id,
        carbohydrate_grams=sample.carbohydrate_grams,
    )

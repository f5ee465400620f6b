"""A virtual BLS 1.1 blood-pressure cuff: Enhanced Blood Pressure Measurement and stored records.

GATT layout (reference/ble-health-profiles.md §2.1, §2.2; GATT Specification Supplement,
org.bluetooth.characteristic.enhanced_blood_pressure_measurement and .blood_pressure_record):

    Blood Pressure 0x1810
      Enhanced Blood Pressure Measurement 0x2B34   indicate  (a measurement taken while connected)
      Blood Pressure Record 0x2B36                  indicate  (stored records, over RACP)
      Record Access Control Point 0x2A52            write + indicate
      Blood Pressure Feature 0x2A49                 read

It has no Blood Pressure Measurement 0x2A35: a collector that knows only BLS 1.0 finds nothing to
subscribe to. Stored records are reported through RACP like a glucose meter's (same operators on the
sequence number, same response codes, racp_server); each goes out as Blood Pressure Records wrapping
the Enhanced Blood Pressure Measurement, split into segments of at most ``segment_size`` bytes of the
recorded value (segmentation header: bit 0 first, bit 1 last, bits 2..7 a rolling counter). Sequence
numbers count up from 0, across the cuff's users, or per user with ``numbering_per_user`` as the GSS
allows ("starts at 0 and loops back to 0 after 65536 records (per user)", Blood Pressure Record,
Sequence Number field): the records of each user then count from 0 on their own, and a report filtered
on the sequence number holds the records of every user that pass it. Each measurement carries the
cuff's user index (User ID field), its UTC time stamp (seconds since 2000-01-01, on the cuff's clock)
and its user facing time (local).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Unpack

from bumble import att
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from device_drivers.profiles import blood_pressure as bp_codec
from device_drivers.virtual import racp_server
from device_drivers.virtual.blood_pressure_cuff import (
    BLOOD_PRESSURE_FEATURE_UUID,
    BLOOD_PRESSURE_SERVICE_UUID,
    CCCD_INDICATION_BIT,
    cuff_values,
)
from device_drivers.virtual.glucose_meter import (
    ATT_ERROR_CCCD_IMPROPERLY_CONFIGURED,
    ATT_ERROR_PROCEDURE_ALREADY_IN_PROGRESS,
    RECORD_ACCESS_CONTROL_POINT_UUID,
)
from device_drivers.virtual.meter import MeterOptions, VirtualMeter, _log_task_error
from device_drivers.virtual.meter_services import sig_uuid
from device_drivers.virtual.personas import MeterKind, Persona

logger = logging.getLogger(__name__)

ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID = 0x2B34
BLOOD_PRESSURE_RECORD_UUID = 0x2B36
SEGMENT_COUNTER_MODULUS = 64
SEQUENCE_NUMBER_MODULUS = 65536


@dataclass(frozen=True)
class StoredEnhancedRecord:
    """A stored measurement and the sequence number it is reported under."""

    sequence_number: int
    measurement: bp_codec.EnhancedBloodPressureMeasurement


class VirtualEnhancedBloodPressureCuff(VirtualMeter):
    """A BLS 1.1 cuff persona on bumble (``persona.blood_pressure_service`` == "1.1")."""

    def __init__(self, persona: Persona, **options: Unpack[MeterOptions]) -> None:
        if persona.kind is not MeterKind.BLOOD_PRESSURE:
            raise ValueError(f"persona {persona.key} is not a blood-pressure cuff")
        super().__init__(persona, **options)
        self.records: list[StoredEnhancedRecord] = []
        self.segment_size = persona.record_segment_size
        self.segments_sent = 0
        #: Records sent in RACP reports (a record sent again in a later report counts again).
        self.records_sent = 0
        #: Sequence numbers of records sent cut short (a firmware fault): the collector cannot decode them.
        self.garbled: set[int] = set()
        #: Number each user's records from 0 on their own instead of across the cuff's users.
        self.numbering_per_user = False
        self._segment_counter = 0
        self._transfers: dict[int, asyncio.Task[None]] = {}
        self._answered: set[int] = set()

    # -- records -----------------------------------------------------------------------------------

    def add_record(
        self,
        *,
        taken_at: dt.datetime,
        systolic_mmhg: int | None,
        diastolic_mmhg: int | None,
        pulse_bpm: int | None,
        user_id: int | None = 1,
        sequence_number: int | None = None,
    ) -> StoredEnhancedRecord:
        """Store a reading taken at ``taken_at`` (aware UTC) as the cuff's clock stamps it.

        ``sequence_number`` defaults to one more than the last record's (0 for the first, and 0 again
        after 65535), the last record of the same user with ``numbering_per_user``.
        """
        if taken_at.tzinfo is None:
            raise ValueError("taken_at must be timezone-aware")
        systolic, diastolic, mean, pulse = cuff_values(systolic_mmhg, diastolic_mmhg, pulse_bpm)
        local = self.clock.wall_clock_of(taken_at)
        utc = local - self.clock.utc_offset
        measurement = bp_codec.EnhancedBloodPressureMeasurement(
            unit=bp_codec.MeasurementPressureUnit.MMHG,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial_pressure=mean,
            time_stamp_seconds=int((utc - bp_codec.EPOCH_2000).total_seconds()),
            pulse_rate_bpm=pulse,
            user_id=user_id,
            user_facing_time_seconds=int((local - bp_codec.EPOCH_2000).total_seconds()),
            epoch_start_year=2000,
        )
        if sequence_number is None:
            numbered_with = [
                r for r in self.records if not self.numbering_per_user or r.measurement.user_id == user_id
            ]
            # GSS Blood Pressure Record, Sequence Number: "loops back to 0 after 65536 records".
            after = numbered_with[-1].sequence_number + 1 if numbered_with else 0
            sequence_number = after % SEQUENCE_NUMBER_MODULUS
        record = StoredEnhancedRecord(sequence_number, measurement)
        self.records.append(record)
        return record

    def holds_records(self) -> bool:
        return bool(self.records)

    # -- GATT --------------------------------------------------------------------------------------

    def advertised_service_uuid(self) -> int:
        return BLOOD_PRESSURE_SERVICE_UUID

    def feature(self) -> bp_codec.BloodPressureFeature:
        feature = bp_codec.BloodPressureFeature.IRREGULAR_PULSE_DETECTION
        if self.persona.multiple_bonds_feature:
            feature |= bp_codec.BloodPressureFeature.MULTIPLE_BOND
        return feature

    def measurement_services(self, device: Device) -> list[Service]:
        self.enhanced_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID),
            Characteristic.Properties.INDICATE,
            self.protected_permissions(),
        )
        self.protect_cccd(device, self.enhanced_characteristic)
        self.record_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(BLOOD_PRESSURE_RECORD_UUID),
            Characteristic.Properties.INDICATE,
            self.protected_permissions(),
        )
        self.protect_cccd(device, self.record_characteristic)
        self.racp_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(RECORD_ACCESS_CONTROL_POINT_UUID),
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            self.protected_permissions(write=True),
            CharacteristicValue(write=self._on_racp_write),
        )
        self.protect_cccd(device, self.racp_characteristic)
        feature: Characteristic[bytes] = Characteristic(
            sig_uuid(BLOOD_PRESSURE_FEATURE_UUID),
            Characteristic.Properties.READ,
            self.protected_permissions(),
            CharacteristicValue(
                read=lambda _connection: bp_codec.encode_blood_pressure_feature(self.feature())
            ),
        )
        characteristics = [
            self.enhanced_characteristic,
            self.record_characteristic,
            self.racp_characteristic,
            feature,
        ]
        return [Service(sig_uuid(BLOOD_PRESSURE_SERVICE_UUID), characteristics)]

    def _indications_on(self, connection: Connection, characteristic: Characteristic[bytes]) -> bool:
        device = self._require_device()
        cccd = device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return bool(cccd) and bool(cccd[0] & CCCD_INDICATION_BIT)  # type: ignore[index]

    # -- RACP --------------------------------------------------------------------------------------

    def _on_racp_write(self, connection: Connection, value: bytes) -> None:
        if not self._indications_on(connection, self.racp_characteristic):
            raise att.ATT_Error(ATT_ERROR_CCCD_IMPROPERLY_CONFIGURED)
        running = self._transfers.get(connection.handle)
        if running is not None and not running.done() and connection.handle not in self._answered:
            raise att.ATT_Error(ATT_ERROR_PROCEDURE_ALREADY_IN_PROGRESS)
        self._answered.discard(connection.handle)
        decision = racp_server.plan(bytes(value), [record.sequence_number for record in self.records])
        self._transfers[connection.handle] = self._schedule(self._run(connection, decision))

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(_log_task_error)
        return task

    async def _answer(self, connection: Connection, value: bytes) -> None:
        device = self._require_device()
        if connection.handle not in device.connections:
            return
        self._answered.add(connection.handle)
        await device.indicate_subscriber(connection, self.racp_characteristic, value)

    async def _run(self, connection: Connection, decision: racp_server.RacpPlan) -> None:
        if decision.response_code is not None:
            await self._answer(
                connection, racp_server.encode_response_code(decision.opcode, decision.response_code)
            )
            return
        if decision.count is not None:
            await self._answer(connection, racp_server.encode_count_response(decision.count))
            return
        if decision.delete:
            doomed = set(decision.delete)
            self.records = [record for index, record in enumerate(self.records) if index not in doomed]
        elif not decision.abort:
            device = self._require_device()
            for index in decision.send:
                if connection.handle not in device.connections:
                    return
                await self._send_record(device, connection, self.records[index])
            self._emit("transfer_done")
        await self._answer(
            connection,
            racp_server.encode_response_code(decision.opcode, racp_server.RacpResponseCode.SUCCESS),
        )

    async def _send_record(
        self, device: Device, connection: Connection, record: StoredEnhancedRecord
    ) -> None:
        value = bp_codec.encode_enhanced_blood_pressure_measurement(record.measurement)
        if record.sequence_number in self.garbled:
            value = value[:3]  # flags and part of the systolic: no complete measurement
        chunks = [
            value[start : start + self.segment_size] for start in range(0, len(value), self.segment_size)
        ]
        for position, chunk in enumerate(chunks):
            segment = bp_codec.BloodPressureRecord(
                first_segment=position == 0,
                last_segment=position == len(chunks) - 1,
                segment_counter=self._segment_counter,
                sequence_number=record.sequence_number,
                recorded_uuid=ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID,
                recorded_value=chunk,
            )
            self._segment_counter = (self._segment_counter + 1) % SEGMENT_COUNTER_MODULUS
            await device.indicate_subscriber(
                connection, self.record_characteristic, bp_codec.encode_blood_pressure_record(segment)
            )
            self.segments_sent += 1
        self.records_sent += 1

    # -- live measurements -------------------------------------------------------------------------

    async def take_measurement(
        self,
        *,
        taken_at: dt.datetime,
        systolic_mmhg: int | None,
        diastolic_mmhg: int | None,
        pulse_bpm: int | None,
        user_id: int | None = 1,
    ) -> StoredEnhancedRecord:
        """Store a reading and indicate it on 0x2B34 to every connected collector subscribed to it."""
        record = self.add_record(
            taken_at=taken_at,
            systolic_mmhg=systolic_mmhg,
            diastolic_mmhg=diastolic_mmhg,
            pulse_bpm=pulse_bpm,
            user_id=user_id,
        )
        device = self._require_device()
        value = bp_codec.encode_enhanced_blood_pressure_measurement(record.measurement)
        for connection in list(device.connections.values()):
            if self.link_allowed(connection) and self._indications_on(
                connection, self.enhanced_characteristic
            ):
                await device.indicate_subscriber(connection, self.enhanced_characteristic, value)
        await self.measurement_taken()
        return record

    def measurement_subscribers(self) -> int:
        """Connected collectors with indications on Enhanced Blood Pressure Measurement."""
        device = self._require_device()
        return sum(
            1
            for connection in device.connections.values()
            if self._indications_on(connection, self.enhanced_characteristic)
        )

    def on_disconnected(self, connection: Connection) -> None:
        task = self._transfers.pop(connection.handle, None)
        if task is not None and not task.done() and not self.ending_link(connection):
            task.cancel()
        self._answered.discard(connection.handle)

    def describe_records(self) -> list[str]:
        """One line per stored reading (for ``vitalgate simulate``)."""
        lines = []
        for record in self.records:
            measurement = record.measurement
            when = (
                "unknown time"
                if measurement.user_facing_time is None
                else measurement.user_facing_time.isoformat()
            )
            text = f"{measurement.systolic.describe()}/{measurement.diastolic.describe()} mmHg"
            lines.append(f"#{record.sequence_number:<5} {when}  user {measurement.user_id}  {text}")
        return lines

"""A virtual glucose meter: Glucose service 0x1808 with stored records and a working RACP.

GATT layout (reference/ble-health-profiles.md §2.1, §2.3):

    Glucose 0x1808
      Glucose Measurement 0x2A18            notify         (CCCD needs encryption if bonding required)
      Glucose Measurement Context 0x2A34    notify         (personas with context)
      Glucose Feature 0x2A51                read
      Record Access Control Point 0x2A52    write, indicate
      [Date Time 0x2A08                     read, write]   (Accu-Chek-like, §2.7)

RACP behaviour: a write needs the RACP CCCD set for indications on this link, else ATT error 0xFD
"CCCD improperly configured"; a second request while one runs gets 0xFE "procedure already in
progress" (newer codes, bleak BleakGATTProtocolErrorCode; GLS 1.0 used 0x80/0x81). Records go out as
Glucose Measurement notifications, each followed by its Context when flagged, then one RACP
indication ``06 00 01 01``. Abort ``03 00`` stops a running report.

Bytes on the air come from the codec encoders in :mod:`device_drivers.profiles.glucose`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Unpack

from bumble import att
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from device_drivers.profiles import glucose as glucose_codec
from device_drivers.profiles.ieee11073 import MderFloat
from device_drivers.profiles.time import DateTime
from device_drivers.virtual import racp_server
from device_drivers.virtual.meter import MeterOptions, VirtualMeter, _log_task_error
from device_drivers.virtual.meter_services import sig_uuid
from device_drivers.virtual.personas import MeterKind, Persona, SequenceOrder, TimeCharacteristic

logger = logging.getLogger(__name__)

GLUCOSE_SERVICE_UUID = 0x1808
GLUCOSE_MEASUREMENT_UUID = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT_UUID = 0x2A34
GLUCOSE_FEATURE_UUID = 0x2A51
RECORD_ACCESS_CONTROL_POINT_UUID = 0x2A52

#: ATT application errors on an RACP write (bleak BleakGATTProtocolErrorCode; reference §2.3).
ATT_ERROR_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_ERROR_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
CCCD_NOTIFICATION_BIT = 0x01
CCCD_INDICATION_BIT = 0x02
SEQUENCE_NUMBER_MODULUS = 1 << 16
#: mg/dL = kg/L x 10^5 (reference Part 3): a mg/dL integer is sent as mantissa x 10^-5 kg/L.
KG_PER_L_EXPONENT_FOR_MG_DL = -5
#: mmol/L = mol/L x 10^3: a mmol/L value with one decimal is mantissa x 10^-4 mol/L.
MOL_PER_L_EXPONENT_FOR_MMOL_L_TENTHS = -4
#: Records sent between two yields to the event loop, so a long report does not starve the link.
RECORDS_PER_YIELD = 8


@dataclass(frozen=True)
class StoredGlucoseRecord:
    """A record as the meter keeps it (internal sequence number ascending from 0)."""

    measurement: glucose_codec.GlucoseMeasurement
    context: glucose_codec.GlucoseMeasurementContext | None = None


class VirtualGlucoseMeter(VirtualMeter):
    """A glucose meter persona on bumble."""

    def __init__(self, persona: Persona, *, unit: str = "mg/dL", **options: Unpack[MeterOptions]) -> None:
        if persona.kind is not MeterKind.GLUCOSE:
            raise ValueError(f"persona {persona.key} is not a glucose meter")
        super().__init__(persona, **options)
        if unit not in ("mg/dL", "mmol/L"):
            raise ValueError("unit must be 'mg/dL' or 'mmol/L'")
        self.unit = unit
        self.records: list[StoredGlucoseRecord] = []
        self._next_sequence_number = 0
        self._transfers: dict[int, asyncio.Task[None]] = {}
        self._abort_requested: set[int] = set()
        # Links whose procedure has indicated its final RACP response: the procedure is over for the
        # collector, which may write the next request as soon as it confirms the indication, before
        # the task that sent it runs again (bumble handles an incoming request at once).
        self._answered: set[int] = set()
        #: Fault injection: end the link after this many records of the next report (one shot).
        self.disconnect_after_records: int | None = None
        self.records_sent_total = 0

    # -- records -----------------------------------------------------------------------------------

    def add_record(
        self,
        *,
        taken_at: dt.datetime,
        glucose_mg_dl: float | None = None,
        glucose_mmol_l: float | None = None,
        sample_type: glucose_codec.GlucoseSampleType = glucose_codec.GlucoseSampleType.CAPILLARY_PLASMA,
        sample_location: glucose_codec.GlucoseSampleLocation = glucose_codec.GlucoseSampleLocation.FINGER,
        sensor_status: glucose_codec.SensorStatusFlag | None = None,
        meal: glucose_codec.MealCode | None = None,
        carbohydrate_id: glucose_codec.CarbohydrateCode | None = None,
        carbohydrate_grams: float | None = None,
    ) -> StoredGlucoseRecord:
        """Store a measurement taken at ``taken_at`` (aware UTC), stamped by the meter's own clock."""
        if taken_at.tzinfo is None:
            raise ValueError("taken_at must be timezone-aware")
        concentration, unit = self._concentration(glucose_mg_dl, glucose_mmol_l)
        sequence_number = self._next_sequence_number % SEQUENCE_NUMBER_MODULUS
        self._next_sequence_number += 1
        has_context = self.persona.supports_context and (meal is not None or carbohydrate_id is not None)
        measurement = glucose_codec.GlucoseMeasurement(
            sequence_number=sequence_number,
            base_time=DateTime.from_datetime(self.clock.wall_clock_of(taken_at)),
            time_offset_minutes=0,
            concentration=concentration,
            unit=unit,
            sample_type=sample_type,
            sample_location=sample_location,
            sensor_status=sensor_status,
            context_follows=has_context,
        )
        context = None
        if has_context:
            carbohydrate_kg = (
                None
                if carbohydrate_grams is None
                else MderFloat(round(carbohydrate_grams), -3)  # grams = kg x 10^-3 (GSS units: kg)
            )
            context = glucose_codec.GlucoseMeasurementContext(
                sequence_number=sequence_number,
                carbohydrate_id=carbohydrate_id if carbohydrate_kg is not None else None,
                carbohydrate_kg=carbohydrate_kg if carbohydrate_id is not None else None,
                meal=meal,
            )
        record = StoredGlucoseRecord(measurement, context)
        self.records.append(record)
        return record

    async def take_measurement(
        self,
        *,
        taken_at: dt.datetime,
        glucose_mg_dl: float | None = None,
        glucose_mmol_l: float | None = None,
        meal: glucose_codec.MealCode | None = None,
    ) -> StoredGlucoseRecord:
        """Store a record and let the radio react (personas that advertise after a measurement)."""
        record = self.add_record(
            taken_at=taken_at, glucose_mg_dl=glucose_mg_dl, glucose_mmol_l=glucose_mmol_l, meal=meal
        )
        await self.measurement_taken()
        return record

    def _concentration(
        self, mg_dl: float | None, mmol_l: float | None
    ) -> tuple[MderFloat | None, glucose_codec.GlucoseConcentrationUnit | None]:
        if mg_dl is None and mmol_l is None:
            return None, None
        if self.unit == "mg/dL":
            value = mg_dl if mg_dl is not None else float(Decimal(str(mmol_l)) * Decimal("18.01559"))
            return MderFloat(
                round(value), KG_PER_L_EXPONENT_FOR_MG_DL
            ), glucose_codec.GlucoseConcentrationUnit.KG_PER_L
        value = mmol_l if mmol_l is not None else float(Decimal(str(mg_dl)) / Decimal("18.01559"))
        return (
            MderFloat(round(value * 10), MOL_PER_L_EXPONENT_FOR_MMOL_L_TENTHS),
            glucose_codec.GlucoseConcentrationUnit.MOL_PER_L,
        )

    def holds_records(self) -> bool:
        return bool(self.records)

    def on_air_sequence_numbers(self) -> list[int]:
        """Sequence numbers as the meter reports them (TaiDoc-like: 0 = newest, §2.7)."""
        if self.persona.sequence_order is SequenceOrder.REVERSED:
            count = len(self.records)
            return [count - 1 - index for index in range(count)]
        return [record.measurement.sequence_number for record in self.records]

    def on_air_record(self, index: int) -> StoredGlucoseRecord:
        record = self.records[index]
        if self.persona.sequence_order is not SequenceOrder.REVERSED:
            return record
        sequence_number = len(self.records) - 1 - index
        return StoredGlucoseRecord(
            dataclasses.replace(record.measurement, sequence_number=sequence_number),
            None
            if record.context is None
            else dataclasses.replace(record.context, sequence_number=sequence_number),
        )

    # -- GATT --------------------------------------------------------------------------------------

    def advertised_service_uuid(self) -> int:
        return GLUCOSE_SERVICE_UUID

    def feature(self) -> glucose_codec.GlucoseFeature:
        feature = (
            glucose_codec.GlucoseFeature.LOW_BATTERY_DETECTION
            | glucose_codec.GlucoseFeature.SENSOR_MALFUNCTION_DETECTION
            | glucose_codec.GlucoseFeature.SENSOR_STRIP_INSERTION_ERROR_DETECTION
            | glucose_codec.GlucoseFeature.SENSOR_RESULT_HIGH_LOW_DETECTION
        )
        if self.persona.multiple_bonds_feature:
            feature |= glucose_codec.GlucoseFeature.MULTIPLE_BOND
        return feature

    def measurement_services(self, device: Device) -> list[Service]:
        self.measurement_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(GLUCOSE_MEASUREMENT_UUID),
            Characteristic.Properties.NOTIFY,
            self.protected_permissions(),
        )
        self.protect_cccd(device, self.measurement_characteristic)
        characteristics: list[Characteristic[bytes]] = [self.measurement_characteristic]
        self.context_characteristic: Characteristic[bytes] | None = None
        if self.persona.supports_context:
            self.context_characteristic = Characteristic(
                sig_uuid(GLUCOSE_MEASUREMENT_CONTEXT_UUID),
                Characteristic.Properties.NOTIFY,
                self.protected_permissions(),
            )
            self.protect_cccd(device, self.context_characteristic)
            characteristics.append(self.context_characteristic)
        characteristics.append(
            Characteristic(
                sig_uuid(GLUCOSE_FEATURE_UUID),
                Characteristic.Properties.READ,
                self.protected_permissions(),
                CharacteristicValue(
                    read=lambda _connection: glucose_codec.encode_glucose_feature(self.feature())
                ),
            )
        )
        self.racp_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(RECORD_ACCESS_CONTROL_POINT_UUID),
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            self.protected_permissions(write=True),
            CharacteristicValue(write=self._on_racp_write),
        )
        self.protect_cccd(device, self.racp_characteristic)
        characteristics.append(self.racp_characteristic)
        if self.persona.time_characteristic is TimeCharacteristic.DATE_TIME_IN_SERVICE:
            characteristics.append(self.date_time_characteristic())
        return [Service(sig_uuid(GLUCOSE_SERVICE_UUID), characteristics)]

    def _cccd_bits(self, connection: Connection, characteristic: Characteristic[bytes]) -> int:
        device = self._require_device()
        cccd = device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return 0 if not cccd else cccd[0]

    # -- RACP --------------------------------------------------------------------------------------

    def _on_racp_write(self, connection: Connection, value: bytes) -> None:
        if not self._cccd_bits(connection, self.racp_characteristic) & CCCD_INDICATION_BIT:
            raise att.ATT_Error(ATT_ERROR_CCCD_IMPROPERLY_CONFIGURED)
        request = bytes(value)
        decision = racp_server.plan(request, self.on_air_sequence_numbers())
        running = self._transfers.get(connection.handle)
        if decision.abort:
            self._abort_requested.add(connection.handle)
            if running is None or running.done() or connection.handle in self._answered:
                self._schedule(
                    self._respond(connection, decision.opcode, racp_server.RacpResponseCode.SUCCESS)
                )
            return
        if running is not None and not running.done() and connection.handle not in self._answered:
            raise att.ATT_Error(ATT_ERROR_PROCEDURE_ALREADY_IN_PROGRESS)
        self._answered.discard(connection.handle)
        logger.debug(
            "racp request",
            extra={
                "meter_serial": self.serial_number,
                "racp_opcode": decision.opcode,
                "records": len(decision.send),
            },
        )
        task = self._schedule(self._run(connection, decision))
        self._transfers[connection.handle] = task

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(_log_task_error)
        return task

    async def _respond(self, connection: Connection, opcode: int, code: racp_server.RacpResponseCode) -> None:
        await self._indicate_racp(connection, racp_server.encode_response_code(opcode, code))

    async def _indicate_racp(self, connection: Connection, value: bytes) -> None:
        """A procedure's final response: the Record Access Control Point answers each request with one
        indication, and indicates nothing else (docs/references.md#ref-bt-gls)."""
        device = self._require_device()
        if connection.handle not in device.connections:
            return
        self._answered.add(connection.handle)
        await device.indicate_subscriber(connection, self.racp_characteristic, value)

    async def _run(self, connection: Connection, decision: racp_server.RacpPlan) -> None:
        self._abort_requested.discard(connection.handle)
        if decision.response_code is not None:
            await self._respond(connection, decision.opcode, decision.response_code)
            return
        if decision.count is not None:
            await self._indicate_racp(connection, racp_server.encode_count_response(decision.count))
            return
        if decision.delete:
            doomed = set(decision.delete)
            self.records = [record for index, record in enumerate(self.records) if index not in doomed]
            await self._respond(connection, decision.opcode, racp_server.RacpResponseCode.SUCCESS)
            return
        await self._send_records(connection, decision)

    async def _send_records(self, connection: Connection, decision: racp_server.RacpPlan) -> None:
        device = self._require_device()
        limit, self.disconnect_after_records = self.disconnect_after_records, None
        # Snapshot the records to send (new measurements during a transfer do not join it).
        outgoing = [self.on_air_record(index) for index in decision.send]
        for sent, record in enumerate(outgoing):
            if connection.handle not in device.connections:
                return
            if connection.handle in self._abort_requested:
                self._abort_requested.discard(connection.handle)
                await self._respond(
                    connection, racp_server.RacpOpcode.ABORT_OPERATION, racp_server.RacpResponseCode.SUCCESS
                )
                return
            if limit is not None and sent >= limit:
                logger.info(
                    "fault injection: link dropped mid-transfer", extra={"meter_serial": self.serial_number}
                )
                await self.end_link(connection)
                return
            await self._notify_record(device, connection, record)
            self.records_sent_total += 1
            if sent % RECORDS_PER_YIELD == RECORDS_PER_YIELD - 1:
                await asyncio.sleep(0)
        await self._respond(connection, decision.opcode, racp_server.RacpResponseCode.SUCCESS)
        self._emit("transfer_done")

    async def _notify_record(
        self, device: Device, connection: Connection, record: StoredGlucoseRecord
    ) -> None:
        if self._cccd_bits(connection, self.measurement_characteristic) & CCCD_NOTIFICATION_BIT:
            await device.notify_subscriber(
                connection,
                self.measurement_characteristic,
                glucose_codec.encode_glucose_measurement(record.measurement),
            )
        context_characteristic = self.context_characteristic
        if (
            record.context is not None
            and context_characteristic is not None
            and self._cccd_bits(connection, context_characteristic) & CCCD_NOTIFICATION_BIT
        ):
            await device.notify_subscriber(
                connection,
                context_characteristic,
                glucose_codec.encode_glucose_measurement_context(record.context),
            )

    def on_disconnected(self, connection: Connection) -> None:
        task = self._transfers.pop(connection.handle, None)
        if task is not None and not task.done() and not self.ending_link(connection):
            task.cancel()
        self._abort_requested.discard(connection.handle)
        self._answered.discard(connection.handle)

    def describe_records(self) -> list[str]:
        """One line per record as the meter holds it (for ``vitalgate simulate``)."""
        lines = []
        for index, sequence_number in enumerate(self.on_air_sequence_numbers()):
            record = self.records[index]
            measurement = record.measurement
            when = measurement.base_time.isoformat() or "unknown time"
            if measurement.glucose_mg_dl is not None:
                value = f"{measurement.glucose_mg_dl.normalize():f} mg/dL"
            elif measurement.glucose_mmol_l is not None:
                value = f"{measurement.glucose_mmol_l.normalize():f} mmol/L"
            else:
                value = "-"
            meal = (
                ""
                if record.context is None or record.context.meal is None
                else f" {record.context.meal.name.lower()}"
            )
            lines.append(f"#{sequence_number:<5} {when}  {value}{meal}")
        return lines

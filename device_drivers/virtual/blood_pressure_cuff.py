"""A virtual blood-pressure cuff: Blood Pressure service 0x1810 (BLS 1.0 transfer).

GATT layout (reference/ble-health-profiles.md §2.1, §2.2):

    Blood Pressure 0x1810
      Blood Pressure Measurement 0x2A35     indicate   (CCCD needs encryption if bonding required)
      Intermediate Cuff Pressure 0x2A36     notify
      Blood Pressure Feature 0x2A49         read

Transfer: BLS 1.0 has no RACP. Once a collector enables indications on 0x2A35, the cuff indicates
its stored readings, oldest first, each one confirmed before the next (ATT indications), then ends
the link (``disconnect_after_transfer``), as cuffs do after a sync. Which readings:

* ``deliver_only_new`` personas (Omron-like "new record counter", §2.7) send the readings this
  bonded host has not confirmed yet; a reading counts as delivered only once its indication is
  confirmed, so a link lost mid-transfer resends the rest next time;
* the others send every stored reading on every sync (Silvercrest-like, §2.7).

A&D-like cuffs (``requires_time_write``) hold everything back until the collector has written the
time on this connection (andengineering/AndroidSampleCode BleReceivedService.java).

Error readings ("Err" on the display) go out as NaN values, like the capture in
derdilla/blood-pressure-monitor-fl#80 (reference §2.2).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Unpack

from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from device_drivers.profiles import blood_pressure as bp_codec
from device_drivers.profiles.ieee11073 import MderFloat, SpecialValue
from device_drivers.profiles.time import DateTime
from device_drivers.virtual.meter import MeterOptions, VirtualMeter, _log_task_error
from device_drivers.virtual.meter_services import sig_uuid
from device_drivers.virtual.personas import MeterKind, Persona, TimeCharacteristic

logger = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE_UUID = 0x1810
BLOOD_PRESSURE_MEASUREMENT_UUID = 0x2A35
INTERMEDIATE_CUFF_PRESSURE_UUID = 0x2A36
BLOOD_PRESSURE_FEATURE_UUID = 0x2A49
CCCD_INDICATION_BIT = 0x02
#: Simulated seconds the cuff stays connected after its last indication before it ends the link.
LINGER_AFTER_TRANSFER_S = 2.0


def cuff_values(
    systolic_mmhg: int | None, diastolic_mmhg: int | None, pulse_bpm: int | None
) -> tuple[MderFloat, MderFloat, MderFloat, MderFloat]:
    """Systolic, diastolic, mean arterial pressure and pulse as the cuff sends them; all NaN for an
    "Err" reading (no pressures)."""
    nan = MderFloat.of(SpecialValue.NAN)
    if systolic_mmhg is None or diastolic_mmhg is None:
        return nan, nan, nan, nan
    # Mean arterial pressure ~ diastolic + (systolic - diastolic) / 3.
    mean = round(diastolic_mmhg + (systolic_mmhg - diastolic_mmhg) / 3)
    pulse = nan if pulse_bpm is None else MderFloat(pulse_bpm, 0)
    return MderFloat(systolic_mmhg, 0), MderFloat(diastolic_mmhg, 0), MderFloat(mean, 0), pulse


@dataclass(frozen=True)
class StoredBloodPressureRecord:
    """A reading as the cuff keeps it; ``index`` counts up from 0 in the order taken."""

    index: int
    measurement: bp_codec.BloodPressureMeasurement


class VirtualBloodPressureCuff(VirtualMeter):
    """A blood-pressure cuff persona on bumble."""

    def __init__(self, persona: Persona, **options: Unpack[MeterOptions]) -> None:
        if persona.kind is not MeterKind.BLOOD_PRESSURE:
            raise ValueError(f"persona {persona.key} is not a blood-pressure cuff")
        super().__init__(persona, **options)
        self.records: list[StoredBloodPressureRecord] = []
        #: Per bonded host: how many records (by index) it has confirmed.
        self.delivered_to: dict[str, int] = {}
        self._transfers: dict[int, asyncio.Task[None]] = {}
        #: Fault injection: end the link after this many indications of the next transfer (one shot).
        self.disconnect_after_records: int | None = None

    # -- records -----------------------------------------------------------------------------------

    def add_record(
        self,
        *,
        taken_at: dt.datetime,
        systolic_mmhg: int | None,
        diastolic_mmhg: int | None,
        pulse_bpm: int | None,
        user_id: int | None = 1,
        status: bp_codec.MeasurementStatus | None = None,
    ) -> StoredBloodPressureRecord:
        """Store a reading taken at ``taken_at`` (aware UTC); ``None`` pressures make an "Err" reading."""
        if taken_at.tzinfo is None:
            raise ValueError("taken_at must be timezone-aware")
        systolic, diastolic, mean, pulse = cuff_values(systolic_mmhg, diastolic_mmhg, pulse_bpm)
        if systolic_mmhg is None or diastolic_mmhg is None:
            status = status or bp_codec.MeasurementStatus.of()
        measurement = bp_codec.BloodPressureMeasurement(
            unit=bp_codec.MeasurementPressureUnit.MMHG,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial_pressure=mean,
            timestamp=DateTime.from_datetime(self.clock.wall_clock_of(taken_at)),
            pulse_rate_bpm=pulse,
            user_id=user_id,
            measurement_status=status,
        )
        record = StoredBloodPressureRecord(len(self.records), measurement)
        self.records.append(record)
        return record

    async def take_measurement(
        self,
        *,
        taken_at: dt.datetime,
        systolic_mmhg: int | None,
        diastolic_mmhg: int | None,
        pulse_bpm: int | None,
        user_id: int | None = 1,
    ) -> StoredBloodPressureRecord:
        """Store a reading and let the radio react (Omron-like cuffs advertise for a while)."""
        record = self.add_record(
            taken_at=taken_at,
            systolic_mmhg=systolic_mmhg,
            diastolic_mmhg=diastolic_mmhg,
            pulse_bpm=pulse_bpm,
            user_id=user_id,
        )
        await self.measurement_taken()
        return record

    def holds_records(self) -> bool:
        return bool(self.records)

    def on_bond_removed(self, host: str) -> None:
        self.delivered_to.pop(host, None)

    # -- GATT --------------------------------------------------------------------------------------

    def advertised_service_uuid(self) -> int:
        return BLOOD_PRESSURE_SERVICE_UUID

    def feature(self) -> bp_codec.BloodPressureFeature:
        feature = (
            bp_codec.BloodPressureFeature.BODY_MOVEMENT_DETECTION
            | bp_codec.BloodPressureFeature.CUFF_FIT_DETECTION
            | bp_codec.BloodPressureFeature.IRREGULAR_PULSE_DETECTION
        )
        if self.persona.multiple_bonds_feature:
            feature |= bp_codec.BloodPressureFeature.MULTIPLE_BOND
        return feature

    def measurement_services(self, device: Device) -> list[Service]:
        self.measurement_characteristic: Characteristic[bytes] = Characteristic(
            sig_uuid(BLOOD_PRESSURE_MEASUREMENT_UUID),
            Characteristic.Properties.INDICATE,
            self.protected_permissions(),
        )
        self.protect_cccd(device, self.measurement_characteristic)
        self.measurement_characteristic.on(Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        intermediate: Characteristic[bytes] = Characteristic(
            sig_uuid(INTERMEDIATE_CUFF_PRESSURE_UUID),
            Characteristic.Properties.NOTIFY,
            self.protected_permissions(),
        )
        self.protect_cccd(device, intermediate)
        feature: Characteristic[bytes] = Characteristic(
            sig_uuid(BLOOD_PRESSURE_FEATURE_UUID),
            Characteristic.Properties.READ,
            self.protected_permissions(),
            CharacteristicValue(
                read=lambda _connection: bp_codec.encode_blood_pressure_feature(self.feature())
            ),
        )
        characteristics = [self.measurement_characteristic, intermediate, feature]
        if self.persona.time_characteristic is TimeCharacteristic.DATE_TIME_IN_SERVICE:
            characteristics.append(self.date_time_characteristic())
        return [Service(sig_uuid(BLOOD_PRESSURE_SERVICE_UUID), characteristics)]

    # -- transfer ----------------------------------------------------------------------------------

    def _on_subscription(self, bearer: object, notify_enabled: bool, indicate_enabled: bool) -> None:
        if not isinstance(bearer, Connection) or not indicate_enabled:
            return
        self._maybe_start_transfer(bearer)

    def on_time_written(self, connection: Connection) -> None:
        self._maybe_start_transfer(connection)

    def _indications_enabled(self, connection: Connection) -> bool:
        device = self._require_device()
        cccd = device.gatt_server.subscribers.get(connection, {}).get(self.measurement_characteristic.handle)
        return cccd is not None and len(cccd) > 0 and bool(cccd[0] & CCCD_INDICATION_BIT)

    def _maybe_start_transfer(self, connection: Connection) -> None:
        if not self._indications_enabled(connection) or not self.link_allowed(connection):
            return
        if self.persona.requires_time_write and not self.time_written_on(connection):
            logger.info("cuff waits for the time to be written", extra={"meter_serial": self.serial_number})
            return
        running = self._transfers.get(connection.handle)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(self._transfer(connection))
        task.add_done_callback(_log_task_error)
        self._transfers[connection.handle] = task

    def _host_key(self, connection: Connection) -> str:
        return str(connection.peer_address)

    def pending_for(self, host: str) -> list[StoredBloodPressureRecord]:
        if not self.persona.deliver_only_new:
            return list(self.records)
        start = self.delivered_to.get(host, 0)
        return self.records[start:]

    async def _transfer(self, connection: Connection) -> None:
        device = self._require_device()
        host = self._host_key(connection)
        limit, self.disconnect_after_records = self.disconnect_after_records, None
        for sent, record in enumerate(self.pending_for(host)):
            if connection.handle not in device.connections:
                return
            if limit is not None and sent >= limit:
                logger.info(
                    "fault injection: link dropped mid-transfer", extra={"meter_serial": self.serial_number}
                )
                await self.end_link(connection)
                return
            await device.indicate_subscriber(
                connection,
                self.measurement_characteristic,
                bp_codec.encode_blood_pressure_measurement(record.measurement),
            )
            # Confirmed: the host has it (Omron-like "new record counter" moves on).
            self.delivered_to[host] = max(self.delivered_to.get(host, 0), record.index + 1)
        self._emit("transfer_done")
        if self.persona.disconnect_after_transfer and connection.handle in device.connections:
            await self.simulation_clock.sleep(LINGER_AFTER_TRANSFER_S)
            if connection.handle in device.connections:
                await self.end_link(connection)

    def on_disconnected(self, connection: Connection) -> None:
        task = self._transfers.pop(connection.handle, None)
        if task is not None and not task.done() and not self.ending_link(connection):
            task.cancel()

    def describe_records(self) -> list[str]:
        """One line per stored reading (for ``vitalgate simulate``)."""
        lines = []
        for record in self.records:
            measurement = record.measurement
            when = "unknown time" if measurement.timestamp is None else measurement.timestamp.isoformat()
            if measurement.valid:
                pulse = "-" if measurement.pulse_rate_bpm is None else measurement.pulse_rate_bpm.describe()
                text = (
                    f"{measurement.systolic.describe()}/{measurement.diastolic.describe()} mmHg pulse {pulse}"
                )
            else:
                text = "Err (" + ", ".join(measurement.invalid_reasons[:1]) + ")"
            lines.append(f"#{record.index:<5} {when}  {text}")
        return lines

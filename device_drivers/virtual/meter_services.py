"""What every virtual meter serves besides its measurement service: Device Information, Battery, and
a clock the collector can read and set (reference/ble-health-profiles.md §2.1, §2.6).

* Device Information 0x180A: manufacturer, model, serial, hardware and firmware revision;
* Battery 0x180F: Battery Level 0x2A19 (read, notify);
* Current Time Service 0x1805 (Current Time 0x2A2B read, write, notify; Local Time Information
  0x2A0F read), or Date Time 0x2A08 inside the measurement service (Roche), per persona.

:class:`StandardServices` is the part of :class:`device_drivers.virtual.meter.VirtualMeter` that
builds them; :class:`MeterClock` is the meter's wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging

from bumble import att
from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from device_drivers.profiles import time as time_codec
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.personas import Persona

logger = logging.getLogger("device_drivers.virtual.meter")

# 16-bit UUIDs (reference/ble-health-profiles.md §2.1).
DEVICE_INFORMATION_SERVICE_UUID = 0x180A
MANUFACTURER_NAME_UUID = 0x2A29
MODEL_NUMBER_UUID = 0x2A24
SERIAL_NUMBER_UUID = 0x2A25
HARDWARE_REVISION_UUID = 0x2A27
FIRMWARE_REVISION_UUID = 0x2A26
BATTERY_SERVICE_UUID = 0x180F
BATTERY_LEVEL_UUID = 0x2A19
CURRENT_TIME_SERVICE_UUID = 0x1805
CURRENT_TIME_UUID = 0x2A2B
LOCAL_TIME_INFORMATION_UUID = 0x2A0F
DATE_TIME_UUID = 0x2A08

ATT_ERROR_VALUE_NOT_ALLOWED = 0x13
ATT_ERROR_OUT_OF_RANGE = 0xFF


def sig_uuid(uuid_16: int) -> UUID:
    return UUID.from_16_bits(uuid_16)


class MeterClock:
    """The meter's wall clock: simulated UTC + the meter's local offset + its drift."""

    def __init__(self, clock: SimulationClock, *, utc_offset: dt.timedelta, drift: dt.timedelta) -> None:
        self._clock = clock
        self.utc_offset = utc_offset
        self.drift = drift

    def now(self) -> dt.datetime:
        """Naive local wall-clock time as the meter shows it."""
        return (self._clock.now() + self.utc_offset + self.drift).replace(tzinfo=None, microsecond=0)

    def wall_clock_of(self, true_utc: dt.datetime) -> dt.datetime:
        """What this clock showed at ``true_utc`` (used to stamp a measurement)."""
        return (true_utc + self.utc_offset + self.drift).replace(tzinfo=None, microsecond=0)

    def set(self, local_wall_clock: dt.datetime) -> None:
        """The collector wrote the time: from now on the meter shows ``local_wall_clock``."""
        true_local = (self._clock.now() + self.utc_offset).replace(tzinfo=None)
        self.drift = local_wall_clock - true_local


class StandardServices:
    """Device Information, Battery and the clock services of a meter (mixed into VirtualMeter)."""

    persona: Persona
    serial_number: str
    clock: MeterClock
    battery_level_percent: int
    _time_written: set[int]

    def _device_information_service(self) -> Service:
        def text(uuid_16: int, value: str) -> Characteristic[bytes]:
            return Characteristic(
                sig_uuid(uuid_16), Characteristic.Properties.READ, Characteristic.READABLE, value.encode()
            )

        return Service(
            sig_uuid(DEVICE_INFORMATION_SERVICE_UUID),
            [
                text(MANUFACTURER_NAME_UUID, self.persona.manufacturer),
                text(MODEL_NUMBER_UUID, self.persona.model),
                text(SERIAL_NUMBER_UUID, self.serial_number),
                text(HARDWARE_REVISION_UUID, self.persona.hardware_revision),
                text(FIRMWARE_REVISION_UUID, self.persona.firmware_revision),
            ],
        )

    def _battery_service(self, device: Device) -> Service:
        self.battery_level: Characteristic[bytes] = Characteristic(
            sig_uuid(BATTERY_LEVEL_UUID),
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            CharacteristicValue(read=lambda _connection: bytes([self.battery_level_percent])),
        )
        return Service(sig_uuid(BATTERY_SERVICE_UUID), [self.battery_level])

    def _current_time_service(self, device: Device) -> Service:
        current_time: Characteristic[bytes] = Characteristic(
            sig_uuid(CURRENT_TIME_UUID),
            Characteristic.Properties.READ
            | Characteristic.Properties.WRITE
            | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=self._read_current_time, write=self._write_current_time),
        )
        local_time: Characteristic[bytes] = Characteristic(
            sig_uuid(LOCAL_TIME_INFORMATION_UUID),
            Characteristic.Properties.READ,
            Characteristic.READABLE,
            CharacteristicValue(read=self._read_local_time_information),
        )
        return Service(sig_uuid(CURRENT_TIME_SERVICE_UUID), [current_time, local_time])

    def date_time_characteristic(self) -> Characteristic[bytes]:
        """Date Time 0x2A08 (read, write) for personas that keep it in the measurement service."""
        return Characteristic(
            sig_uuid(DATE_TIME_UUID),
            Characteristic.Properties.READ | Characteristic.Properties.WRITE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=self._read_date_time, write=self._write_date_time),
        )

    def _read_current_time(self, connection: Connection) -> bytes:
        now = self.clock.now()
        value = time_codec.CurrentTime(
            time_codec.DateTime.from_datetime(now),
            time_codec.DayOfWeek(now.isoweekday()),
            0,
            time_codec.AdjustReason(0),
        )
        return time_codec.encode_current_time(value)

    def _write_current_time(self, connection: Connection, value: bytes) -> None:
        try:
            decoded = time_codec.decode_current_time(value)
        except Exception as error:
            raise att.ATT_Error(ATT_ERROR_VALUE_NOT_ALLOWED) from error
        self._set_time(connection, decoded.date_time)

    def _read_local_time_information(self, connection: Connection) -> bytes:
        quarter_hours = int(self.clock.utc_offset.total_seconds()) // (time_codec.TIME_ZONE_STEP_MINUTES * 60)
        info = time_codec.LocalTimeInformation(quarter_hours, time_codec.DstOffset.STANDARD_TIME)
        return time_codec.encode_local_time_information(info)

    def _read_date_time(self, connection: Connection) -> bytes:
        return time_codec.encode_date_time(time_codec.DateTime.from_datetime(self.clock.now()))

    def _write_date_time(self, connection: Connection, value: bytes) -> None:
        try:
            decoded = time_codec.decode_date_time(value)
        except Exception as error:
            raise att.ATT_Error(ATT_ERROR_VALUE_NOT_ALLOWED) from error
        self._set_time(connection, decoded)

    def _set_time(self, connection: Connection, value: time_codec.DateTime) -> None:
        wall = value.to_datetime()
        if wall is None:
            raise att.ATT_Error(ATT_ERROR_OUT_OF_RANGE)
        self.clock.set(wall)
        self._time_written.add(connection.handle)
        logger.info("meter clock set", extra={"meter_serial": self.serial_number})
        self.on_time_written(connection)

    def time_written_on(self, connection: Connection) -> bool:
        return connection.handle in self._time_written

    def on_time_written(self, connection: Connection) -> None:
        """Hook: the collector set the clock on ``connection`` (A&D-like cuffs start sending)."""

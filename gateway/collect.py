"""The default collector: device_drivers' procedures, turned into vitals readings, committed.

A collector gets a connected ``BleakClient`` and a :class:`gateway.meter_session.MeterSession`; it reads
the meter and commits what it read through the session: outbox first, then (in the same
transaction) the glucose cursor. The cursor from :func:`sync_glucose_records` is persisted only
after its records are durably stored (reference §2.3 step 8, device_drivers/procedures/glucose.py).

When a glucose transfer ends early (meter silent, RACP error, link lost), the records that did
arrive are committed with the partial cursor before the error is re-raised for the backoff: a
record the meter already sent is not fetched again, and nothing received is dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence

from bleak import BleakClient

from device_drivers.procedures.blood_pressure import collect_blood_pressure
from device_drivers.procedures.blood_pressure_records import (
    OTHER_USERS,
    CuffMeasurement,
    RecordCursors,
    StoredCuffRecord,
    sync_blood_pressure_records,
)
from device_drivers.procedures.clock import ClockReading, Now, stamped_before_clock_reset, system_now
from device_drivers.procedures.device_info import (
    MeterIdentity,
    read_blood_pressure_feature,
    read_glucose_feature,
    read_meter_identity,
)
from device_drivers.procedures.errors import (
    MeterDisconnected,
    MissingCharacteristic,
    ProcedureError,
    RacpError,
    SyncTimeout,
)
from device_drivers.procedures.glucose import sync_glucose_records
from device_drivers.procedures.results import GlucoseSyncResult, UndecodedValue
from device_drivers.procedures.session import check_clock
from device_drivers.profiles.blood_pressure import BloodPressureFeature
from device_drivers.readings import blood_pressure_reading, cuff_device_time, device_identity, glucose_reading
from gateway.bindings import MeterProfile
from gateway.meter_session import Collector, MeterSession
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading

logger = logging.getLogger(__name__)


def local_timezone() -> dt.tzinfo:
    tz = dt.datetime.now().astimezone().tzinfo
    return tz if tz is not None else dt.UTC


def _log_undecodable(session: MeterSession, items: Sequence[UndecodedValue]) -> None:
    for item in items:
        logger.warning(
            "meter value could not be decoded; kept out of the readings",
            extra={
                "meter_key": session.meter.meter_key,
                "characteristic": item.characteristic,
                "length": len(item.raw),
                "reason": str(item.error),
            },
        )


def default_collector(gateway_timezone: dt.tzinfo | None = None, *, now: Now = system_now) -> Collector:
    """The collector for bound meters. `now` is the gateway's clock: the system clock on a real
    gateway, the simulation clock when virtual meters run faster than real time (the demo)."""
    tz = gateway_timezone or local_timezone()

    async def collect(client: BleakClient, session: MeterSession) -> None:
        identity = await read_meter_identity(client)
        if identity.battery_level_percent is not None:
            session.report_battery(identity.battery_level_percent)
        device = device_identity(identity.device_information, address=session.meter.address)
        if session.meter.profile is MeterProfile.GLUCOSE:
            await _glucose(client, session, identity, device, tz, now)
        else:
            await _blood_pressure(client, session, identity, device, tz, now)

    return collect


async def _clock(
    client: BleakClient, identity: MeterIdentity, tz: dt.tzinfo, now: Now
) -> ClockReading | None:
    check = await check_clock(client, identity.quirks, gateway_timezone=tz, now=now)
    return check.reading if isinstance(check.reading, ClockReading) else None


async def _glucose(
    client: BleakClient,
    session: MeterSession,
    identity: MeterIdentity,
    device: DeviceIdentity,
    tz: dt.tzinfo,
    now: Now,
) -> None:
    await read_glucose_feature(client)
    clock = await _clock(client, identity, tz, now)

    async def commit(result: GlucoseSyncResult) -> None:
        received_at = now()
        device_times = [record.measurement.user_facing_time for record in result.records]
        if identity.quirks.sequence_numbers_reversed:
            reset = [False] * len(device_times)  # no clock, records keyed on base time alone
        else:
            reset = _clock_reset(session, device_times, clock)
        readings: list[GlucoseReading] = [
            glucose_reading(
                record,
                device=device,
                clock=None if before_reset else clock,
                gateway_timezone=tz,
                received_at=received_at,
                quirks=identity.quirks,
            )
            for record, before_reset in zip(result.records, reset, strict=True)
        ]
        _log_undecodable(session, result.undecodable)
        if readings or result.highest_sequence_number != session.since_sequence_number:
            await session.commit(readings, last_sequence_number=result.highest_sequence_number)

    try:
        result = await sync_glucose_records(
            client,
            last_sequence_number=session.since_sequence_number,
            quirks=identity.quirks,
            disconnected=session.disconnected,
        )
    except (SyncTimeout, RacpError) as error:
        await commit(error.partial)
        raise
    except MeterDisconnected as error:
        if error.partial is not None:
            await commit(error.partial)
        raise
    await commit(result)


async def _blood_pressure(
    client: BleakClient,
    session: MeterSession,
    identity: MeterIdentity,
    device: DeviceIdentity,
    tz: dt.tzinfo,
    now: Now,
) -> None:
    """A cuff with stored records (BLS 1.1) is read over RACP; any other cuff's indications are
    committed as the procedure decodes them, each once.

    Cuffs that send only records "not yet delivered" (Omron's new-record counter, A&D; peers.md §1.5)
    count a record as delivered once its ATT indication is confirmed, which the Bluetooth stack does
    before our code sees it. Committing at the end of the collection would lose every record
    confirmed to a gateway killed mid-transfer; committing as they arrive (everything queued during
    one fsync goes into the next commit) shrinks that window to the records of one fsync.
    """
    feature = await read_blood_pressure_feature(client)
    e2e_crc_present = isinstance(feature, BloodPressureFeature) and BloodPressureFeature.E2E_CRC in feature
    clock = await _clock(client, identity, tz, now)

    def reading(measurement: CuffMeasurement, before_reset: bool) -> BloodPressureReading:
        return blood_pressure_reading(
            measurement,
            device=device,
            clock=None if before_reset else clock,
            gateway_timezone=tz,
            received_at=now(),
        )

    try:
        await _blood_pressure_records(client, session, clock, reading, e2e_crc_present=e2e_crc_present)
        return
    except MissingCharacteristic:
        pass  # no stored records: the cuff indicates its measurements (BLS 1.0, or BLS 1.1 enhanced only)

    def on_measurement(measurement: CuffMeasurement) -> None:
        # Oldest first, committed one by one: only a time stamp ahead of the meter's clock shows a reset.
        (before_reset,) = _clock_reset(session, [cuff_device_time(measurement)], clock)
        committer.put(reading(measurement, before_reset))

    committer = _Committer(session)
    try:
        collection = await collect_blood_pressure(
            client,
            quirks=identity.quirks,
            on_measurement=on_measurement,
            disconnected=session.disconnected,
        )
    finally:
        await committer.close()  # an OutboxFullError here propagates: the cuff is not read further
    _log_undecodable(session, collection.undecodable)


async def _blood_pressure_records(
    client: BleakClient,
    session: MeterSession,
    clock: ClockReading | None,
    reading: Callable[[CuffMeasurement, bool], BloodPressureReading],
    *,
    e2e_crc_present: bool,
) -> None:
    """BLS 1.1 stored records over RACP, committed with the cursor once the report ends (the records
    stay on the cuff, so a transfer cut short loses nothing: what arrived is committed, also when the
    session's deadline or a stop ends it, and the rest is fetched next time). The cursor keeps a
    position per user (RecordCursors: a cuff may number each user's records on their own) and never
    passes a record that could not be decoded: the next sync asks for it again, and the records after
    it come again as duplicates. A user slot bound to a patient is never left out: while it has no
    position the report starts at the beginning. A position kept as one number for the whole cuff
    (an outbox from before positions per user) stays every other user's starting point, committed
    as OTHER_USERS beside the users' own, so a user with nothing new in the first sync after the
    upgrade is not collected again from 0. Raises MissingCharacteristic for a cuff without
    records."""
    since = session.since
    users = {} if since is None else dict(since.by_user)
    if since is not None and not users:
        meter: int | None = since.last_sequence_number
    else:
        meter = users.pop(OTHER_USERS, None)
    cursors = RecordCursors(users, meter=meter, bound_users=session.bound_users)
    received: list[StoredCuffRecord] = []

    async def commit() -> None:
        if not received:
            return
        reset = _clock_reset(session, [cuff_device_time(r.measurement) for r in received], clock)
        await session.commit(
            [reading(r.measurement, before) for r, before in zip(received, reset, strict=True)],
            last_sequence_number=cursors.highest,
            by_user=cursors.positions,
        )
        received.clear()

    try:
        result = await sync_blood_pressure_records(
            client,
            cursors=cursors,
            disconnected=session.disconnected,
            on_record=received.append,
            e2e_crc_present=e2e_crc_present,
        )
    except (ProcedureError, asyncio.CancelledError):  # what arrived is committed (nothing when no records)
        await commit()
        raise
    await commit()
    _log_undecodable(session, result.undecodable)


def _clock_reset(
    session: MeterSession, device_times: Sequence[dt.datetime | None], clock: ClockReading | None
) -> list[bool]:
    """Which records were stamped before a reset of the meter's clock: their time is taken as the
    meter stamped it, without this sync's clock offset, and is not trusted (``clock_offset_s`` is
    None, as for a meter whose clock could not be read; gateway.bindings.time_trusted)."""
    reset = stamped_before_clock_reset(device_times, clock)
    if any(reset):
        logger.warning(
            "meter clock was reset between records; their times are held as untrusted",
            extra={"meter_key": session.meter.meter_key, "records": sum(reset), "of": len(reset)},
        )
    return reset


class _Committer:
    """Commits readings as they are put, in batches of whatever queued during the previous commit."""

    def __init__(self, session: MeterSession) -> None:
        self._session = session
        self._pending: asyncio.Queue[BloodPressureReading | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    def put(self, reading: BloodPressureReading) -> None:
        self._pending.put_nowait(reading)

    async def close(self) -> None:
        self._pending.put_nowait(None)
        await self._task

    async def _run(self) -> None:
        done = False
        while not done:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            done = batch[-1] is None
            readings = [reading for reading in batch if reading is not None]
            if readings:
                await self._session.commit(readings)

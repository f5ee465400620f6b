"""Collector procedures against the replay stand-in (recorded GATT exchanges in exchanges/)."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from bleak import BleakClient

from device_drivers import quirks
from device_drivers.procedures.blood_pressure import CollectionEnd, collect_blood_pressure
from device_drivers.procedures.client import GattClient, ProcedureTimeouts
from device_drivers.procedures.clock import ClockReading, ClockSource, read_device_clock, set_device_clock
from device_drivers.procedures.errors import GattTimeout, MeterDisconnected, RacpError, SyncTimeout
from device_drivers.procedures.glucose import sync_glucose_records
from device_drivers.procedures.results import SequenceEvent
from device_drivers.procedures.session import run_blood_pressure_session, run_glucose_session
from device_drivers.profiles import uuids
from device_drivers.profiles.blood_pressure import IntermediateCuffPressure
from device_drivers.profiles.glucose import GlucoseFeature, MealCode
from device_drivers.profiles.racp import RacpResponseCode
from device_drivers.profiles.time import decode_current_time, decode_date_time

from .replay import ReplayClient, Response

BERLIN = ZoneInfo("Europe/Berlin")
FAST = ProcedureTimeouts(
    gatt_operation_s=2.0,
    record_silence_s=0.3,
    racp_procedure_s=5.0,
    abort_response_s=0.5,
    first_indication_s=0.3,
    quiet_after_records_s=0.2,
)
GM, GMC, RACP = (
    uuids.GLUCOSE_MEASUREMENT,
    uuids.GLUCOSE_MEASUREMENT_CONTEXT,
    uuids.RECORD_ACCESS_CONTROL_POINT,
)
BASE = "E8 07 03 01 08 1E 00"  # 2024-03-01 08:30:00 (reference §2.3 worked example)


def _bleak_client_is_a_gatt_client(client: BleakClient) -> GattClient:
    """mypy checks that the real BleakClient satisfies the procedures' Protocol."""
    return client


def _replay_client_is_a_gatt_client(client: ReplayClient) -> GattClient:
    return client


def measurement(sequence_number: int, *, context: bool = False) -> bytes:
    """A Glucose Measurement like the §2.3 worked example (105 mg/dL) with another sequence number."""
    flags = 0x12 if context else 0x02
    return bytes((flags,)) + sequence_number.to_bytes(2, "little") + bytes.fromhex(BASE + " 69 B0 11")


def success(opcode: int = 0x01) -> bytes:
    return bytes((0x06, 0x00, opcode, 0x01))


def glucose_meter(*responses: Response, disconnected: asyncio.Event | None = None) -> ReplayClient:
    return ReplayClient(
        subscribable={GM, GMC, RACP}, writable={RACP}, responses=list(responses), disconnected=disconnected
    )


def racp_write(data: str, *emit: tuple[str, bytes], disconnect: bool = False) -> Response:
    return Response("write", RACP, bytes.fromhex(data), list(emit), disconnect)


def fixed_now(value: dt.datetime) -> dt.datetime:
    return value


# --- glucose --------------------------------------------------------------------------------------


async def test_first_glucose_sync_reads_identity_clock_and_joins_context() -> None:
    """First sync: DIS, battery, feature, clock; notify before RACP indicate; all records; context joined."""
    client = ReplayClient.from_exchange("glucose-first-sync")
    gateway_utc = dt.datetime(2024, 3, 1, 7, 25, tzinfo=dt.UTC)  # 08:25 in Berlin: meter runs 5 min fast
    session = await run_glucose_session(
        client, last_sequence_number=None, gateway_timezone=BERLIN, now=lambda: gateway_utc, timeouts=FAST
    )
    assert session.identity.device_information.manufacturer_name == "Ascensia Diabetes Care"
    assert session.identity.quirks is quirks.ASCENSIA
    assert session.identity.battery_level_percent == 87
    assert isinstance(session.feature, GlucoseFeature)
    assert GlucoseFeature.MULTIPLE_BOND in session.feature

    subscriptions = [uuid for op, uuid, _ in client.calls if op == "start_notify"]
    assert subscriptions == [GM, GMC, RACP]
    first_racp_write = client.calls.index(("write", RACP, bytes.fromhex("01 01")))
    assert first_racp_write > max(i for i, call in enumerate(client.calls) if call[0] == "start_notify")

    sync = session.sync
    assert [r.measurement.sequence_number for r in sync.records] == [5, 6, 10]
    assert [r.measurement.glucose_mg_dl for r in sync.records] == [105, 120, 105]
    assert sync.records[2].context is not None
    assert sync.records[2].context.meal is MealCode.FASTING
    assert sync.records[0].context is None
    assert sync.response_code is RacpResponseCode.SUCCESS
    assert sync.highest_sequence_number == 10
    assert sync.missing_contexts == ()

    clock = session.clock.reading
    assert isinstance(clock, ClockReading)
    assert clock.offset == dt.timedelta(minutes=5)
    original = sync.records[0].measurement.user_facing_time
    assert original == dt.datetime(2024, 3, 1, 8, 30)
    assert clock.correct(original) == dt.datetime(2024, 3, 1, 7, 25, tzinfo=dt.UTC)
    # Off by more than a minute and CTS is writable: the gateway's wall clock was written.
    assert session.clock.write is not None
    assert session.clock.write.written
    written = decode_current_time(dict(client.writes)[uuids.CURRENT_TIME])
    assert written.date_time.to_datetime() == dt.datetime(2024, 3, 1, 8, 25)
    assert written.day_of_week.name == "FRIDAY"


async def test_nothing_new_keeps_cursor_after_probe() -> None:
    """Incremental sync asks for >= last + 1; no records and an unchanged last record is not a reset."""
    client = ReplayClient.from_exchange("glucose-nothing-new")
    sync = await sync_glucose_records(client, last_sequence_number=10, timeouts=FAST)
    assert [data for op, uuid, data in client.calls if op == "write"] == [
        bytes.fromhex("01 03 01 0B 00"),
        bytes.fromhex("01 06"),
    ]
    assert sync.records == ()
    assert sync.response_code is RacpResponseCode.NO_RECORDS_FOUND
    assert sync.highest_sequence_number == 10
    assert sync.sequence_event is SequenceEvent.NONE
    assert sync.unmatched_contexts == ()  # the probe's record and context are not re-delivered


async def test_sequence_reset_fetches_everything_again() -> None:
    """After a battery change the meter counts from 0 again: all records fetched, cursor restarts."""
    client = glucose_meter(
        racp_write("01 03 01 65 00", (RACP, bytes.fromhex("06 00 01 06"))),
        racp_write("01 06", (GM, measurement(2)), (RACP, success())),
        racp_write(
            "01 01", (GM, measurement(0)), (GM, measurement(1)), (GM, measurement(2)), (RACP, success())
        ),
    )
    sync = await sync_glucose_records(client, last_sequence_number=100, timeouts=FAST)
    assert sync.sequence_event is SequenceEvent.RESET
    assert [r.measurement.sequence_number for r in sync.records] == [0, 1, 2]
    assert sync.highest_sequence_number == 2


async def test_wraparound_when_cursor_is_65535() -> None:
    """last = 65535: all records are requested and only those after the wrap are kept."""
    client = glucose_meter(
        racp_write(
            "01 01",
            (GM, measurement(65534)),
            (GM, measurement(65535)),
            (GM, measurement(0)),
            (GM, measurement(1)),
            (RACP, success()),
        )
    )
    sync = await sync_glucose_records(client, last_sequence_number=65535, timeouts=FAST)
    assert sync.sequence_event is SequenceEvent.WRAPAROUND
    assert [r.measurement.sequence_number for r in sync.records] == [0, 1]
    assert sync.highest_sequence_number == 1


async def test_wraparound_during_the_gap_between_syncs() -> None:
    """A >= transfer ending at 65535 is followed by a fetch of the records numbered after the wrap."""
    client = glucose_meter(
        racp_write("01 03 01 FE FF", (GM, measurement(65534)), (GM, measurement(65535)), (RACP, success())),
        racp_write(
            "01 01",
            (GM, measurement(65533)),
            (GM, measurement(65534)),
            (GM, measurement(65535)),
            (GM, measurement(0)),
            (GM, measurement(1)),
            (RACP, success()),
        ),
    )
    sync = await sync_glucose_records(client, last_sequence_number=65533, timeouts=FAST)
    assert [r.measurement.sequence_number for r in sync.records] == [65534, 65535, 0, 1]
    assert sync.highest_sequence_number == 1
    assert sync.sequence_event is SequenceEvent.WRAPAROUND


@pytest.mark.parametrize("code", [0x02, 0x03, 0x04, 0x05, 0x07, 0x08, 0x09])
async def test_error_response_codes_raise_with_partial_records(code: int) -> None:
    """Every RACP response code other than success / no records found is a RacpError keeping what arrived."""
    client = glucose_meter(racp_write("01 01", (GM, measurement(5)), (RACP, bytes((0x06, 0x00, 0x01, code)))))
    with pytest.raises(RacpError) as caught:
        await sync_glucose_records(client, last_sequence_number=None, timeouts=FAST)
    assert int(caught.value.response_code) == code
    assert [r.measurement.sequence_number for r in caught.value.partial.records] == [5]


async def test_silent_meter_is_aborted_and_reported() -> None:
    """A meter that stops mid-transfer gets `03 00`; SyncTimeout carries the records received so far."""
    client = glucose_meter(
        racp_write("01 01", (GM, measurement(5))),
        racp_write("03 00", (RACP, success(0x03))),
    )
    with pytest.raises(SyncTimeout) as caught:
        await sync_glucose_records(client, last_sequence_number=None, timeouts=FAST)
    assert caught.value.abort_acknowledged
    assert [r.measurement.sequence_number for r in caught.value.partial.records] == [5]
    assert caught.value.partial.highest_sequence_number == 5
    assert client.writes[-1] == (RACP, bytes.fromhex("03 00"))


async def test_disconnect_mid_transfer_keeps_partial_records() -> None:
    """The link dropping before the RACP response raises MeterDisconnected with the records received."""
    lost = asyncio.Event()
    client = glucose_meter(racp_write("01 01", (GM, measurement(5)), disconnect=True), disconnected=lost)
    with pytest.raises(MeterDisconnected) as caught:
        await sync_glucose_records(client, last_sequence_number=None, timeouts=FAST, disconnected=lost)
    assert caught.value.partial is not None
    assert [r.measurement.sequence_number for r in caught.value.partial.records] == [5]


async def test_undecodable_value_is_kept_and_transfer_continues() -> None:
    """A malformed notification is kept with its reason; the other records still arrive."""
    truncated = measurement(6)[:-1]
    client = glucose_meter(
        racp_write(
            "01 01",
            (GM, measurement(5)),
            (GM, truncated),
            (GM, measurement(7, context=True)),
            (RACP, success()),
        )
    )
    sync = await sync_glucose_records(client, last_sequence_number=None, timeouts=FAST)
    assert [r.measurement.sequence_number for r in sync.records] == [5, 7]
    assert len(sync.undecodable) == 1
    assert sync.undecodable[0].raw == truncated
    assert sync.undecodable[0].error.offset == 12
    assert sync.missing_contexts == (7,)


async def test_taidoc_first_record_only_without_clock_or_cursor() -> None:
    """TaiDoc: no context subscription needed, no clock, `01 05` only, and no sequence cursor."""
    client = ReplayClient.from_exchange("glucose-taidoc")
    session = await run_glucose_session(
        client, last_sequence_number=3, gateway_timezone=BERLIN, timeouts=FAST
    )
    assert session.identity.quirks is quirks.TAIDOC
    assert session.clock.reading is None
    assert [data for op, _uuid, data in client.calls if op == "write"] == [bytes.fromhex("01 05")]
    assert [r.measurement.sequence_number for r in session.sync.records] == [0]
    assert session.sync.highest_sequence_number is None
    assert not any(
        op == "read" and uuid in (uuids.CURRENT_TIME, uuids.DATE_TIME) for op, uuid, _ in client.calls
    )


# --- blood pressure -------------------------------------------------------------------------------


async def test_a_and_d_cuff_time_written_before_indications() -> None:
    """A&D: time written before indications are enabled; records collected until the cuff disconnects."""
    lost = asyncio.Event()
    client = ReplayClient.from_exchange("bp-a-and-d", disconnected=lost)
    progress: list[IntermediateCuffPressure] = []
    gateway_utc = dt.datetime(2024, 3, 1, 7, 30, 10, tzinfo=dt.UTC)  # meter 10 s behind: within tolerance
    session = await run_blood_pressure_session(
        client,
        gateway_timezone=BERLIN,
        now=lambda: gateway_utc,
        timeouts=FAST,
        on_cuff_pressure=progress.append,
        disconnected=lost,
    )
    assert session.identity.quirks is quirks.A_AND_D
    time_write = client.calls.index(("write", uuids.CURRENT_TIME, client.writes[0][1]))
    indications = client.calls.index(("start_notify", uuids.BLOOD_PRESSURE_MEASUREMENT, None))
    assert time_write < indications
    assert session.clock.write is not None
    assert session.clock.write.written

    collection = session.collection
    assert collection.ended_by is CollectionEnd.DISCONNECTED
    assert [m.valid for m in collection.measurements] == [True, False]
    assert float(collection.measurements[0].systolic) == 120.0
    assert [float(p.cuff_pressure) for p in progress] == [45.0]
    assert collection.cuff_pressure_updates == 1


async def test_cuff_that_goes_quiet_ends_collection() -> None:
    """A cuff that stays connected ends the collection after the quiet period."""
    client = ReplayClient(
        subscribable={uuids.BLOOD_PRESSURE_MEASUREMENT},
        responses=[
            Response(
                "subscribe",
                uuids.BLOOD_PRESSURE_MEASUREMENT,
                emit=[
                    (
                        uuids.BLOOD_PRESSURE_MEASUREMENT,
                        bytes.fromhex("06 78 00 50 00 5D 00 E8 07 03 01 08 1E 00 48 00"),
                    ),
                ],
            )
        ],
    )
    collection = await collect_blood_pressure(client, timeouts=FAST)
    assert collection.ended_by is CollectionEnd.QUIET
    assert len(collection.measurements) == 1
    assert ("stop_notify", uuids.BLOOD_PRESSURE_MEASUREMENT, None) in client.calls


async def test_cuff_with_nothing_stored() -> None:
    """No indication within the first-indication wait: an empty, normal result."""
    client = ReplayClient(subscribable={uuids.BLOOD_PRESSURE_MEASUREMENT})
    collection = await collect_blood_pressure(client, timeouts=FAST)
    assert collection.measurements == ()
    assert collection.ended_by is CollectionEnd.QUIET


# --- clock ----------------------------------------------------------------------------------------


async def test_roche_clock_is_date_time() -> None:
    """Roche meters keep Date Time 0x2A08, not CTS: read it, and write Date Time back."""
    client = ReplayClient(reads={uuids.DATE_TIME: bytes.fromhex(BASE)}, writable={uuids.DATE_TIME})
    now = dt.datetime(2024, 3, 1, 7, 0, tzinfo=dt.UTC)
    reading = await read_device_clock(client, quirks.ROCHE, gateway_timezone=BERLIN, now=lambda: now)
    assert isinstance(reading, ClockReading)
    assert reading.source is ClockSource.DATE_TIME
    assert reading.offset == dt.timedelta(minutes=30)
    write = await set_device_clock(client, quirks.ROCHE, gateway_timezone=BERLIN, now=lambda: now)
    assert write is not None
    assert write.written
    assert decode_date_time(client.writes[0][1]).to_datetime() == dt.datetime(2024, 3, 1, 8, 0)


async def test_refused_clock_write_is_reported() -> None:
    """CTS write support is optional: a refusal comes back as ClockWrite.refused, not an exception."""
    client = ReplayClient(reads={uuids.CURRENT_TIME: bytes.fromhex(BASE + " 05 00 00")})
    write = await set_device_clock(client, quirks.STANDARD, gateway_timezone=BERLIN, timeouts=FAST)
    assert write is not None
    assert not write.written
    assert write.refused is not None
    assert "Write Not Permitted" in write.refused


async def test_hanging_gatt_read_times_out() -> None:
    """Every GATT call has a timeout: a read that never completes raises GattTimeout."""

    class Hanging(ReplayClient):
        async def read_gatt_char(self, char_specifier: str, **kwargs: object) -> bytearray:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    with pytest.raises(GattTimeout):
        await read_device_clock(
            Hanging(),
            quirks.STANDARD,
            gateway_timezone=BERLIN,
            timeouts=ProcedureTimeouts(gatt_operation_s=0.1),
        )


# --- quirks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manufacturer", "model", "expected"),
    [
        ("A&D Medical", "UA-651BLE", quirks.A_AND_D),
        ("A&D Medical", "UA-767PBT-Ci", quirks.STANDARD),
        ("OMRON HEALTHCARE", "HEM-7155T", quirks.OMRON),
        ("Roche", "Accu-Chek Guide", quirks.ROCHE),
        ("Ascensia Diabetes Care", "Contour Next One", quirks.ASCENSIA),
        ("TaiDoc", "TD-4277", quirks.TAIDOC),
        ("Silvercrest", "SBM69", quirks.STANDARD),
        (None, None, quirks.STANDARD),
    ],
)
def test_quirk_lookup(manufacturer: str | None, model: str | None, expected: quirks.MeterQuirks) -> None:
    """Quirks are chosen by DIS manufacturer (and model where the quirk is model-specific)."""
    assert quirks.quirks_for(manufacturer, model) is expected


def test_every_quirk_names_its_behaviour_and_source() -> None:
    """No quirk without a stated behaviour and a public source."""
    for entry in quirks.QUIRKS:
        assert entry.quirks.behaviour
        assert entry.quirks.sources

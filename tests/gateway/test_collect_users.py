"""A BLS 1.1 cuff shared by two users that numbers its stored records per user, as the GATT
Specification Supplement allows (Blood Pressure Record, Sequence Number field: "starts at 0 and loops
back to 0 after 65536 records (per user)"), synced through the default collector into a real outbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import Bindings
from gateway.outbox import SyncPosition
from tests.gateway.test_collect import GW, CountingOutbox, collect_once, pair_cuff
from vitals.payload import MeterBinding
from vitals.readings import BloodPressureReading


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


def shared_cuff(serial: str) -> VirtualEnhancedBloodPressureCuff:
    cuff = make_meter("bls11-like", clock=SimulationClock(), serial_number=serial)
    assert isinstance(cuff, VirtualEnhancedBloodPressureCuff)
    cuff.numbering_per_user = True
    return cuff


def measure(cuff: VirtualEnhancedBloodPressureCuff, start: dt.datetime, users: list[int]) -> None:
    """One record per entry of ``users``, an hour apart after the cuff's last; systolic 100 + index."""
    for user in users:
        index = len(cuff.records)
        cuff.add_record(
            taken_at=start + dt.timedelta(hours=index), systolic_mmhg=100 + index, diastolic_mmhg=70,
            pulse_bpm=60, user_id=user,
        )  # fmt: skip


def collected(sink: CountingOutbox) -> list[tuple[int | None, float | None]]:
    return sorted((r.user_id, r.systolic) for r in sink.readings if isinstance(r, BloodPressureReading))


def stored(cuff: VirtualEnhancedBloodPressureCuff) -> list[tuple[int | None, float | None]]:
    return sorted((r.measurement.user_id, float(r.measurement.systolic)) for r in cuff.records)


async def test_two_users_numbered_per_user_lose_and_repeat_no_record_across_syncs(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """Both users of a cuff that numbers per user get every record collected once over two syncs,
    each stored reading under its own user slot, though user 2's new records are numbered below
    user 1's last."""
    cuff = shared_cuff("BP-USERS")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    measure(cuff, start, [1, 1, 2, 1, 2, 1])  # user 1: 0..3, user 2: 0..1
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    first = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (first.committed, first.duplicates) == (6, 0)

    measure(cuff, start, [2, 2, 1, 2])  # user 2: 2..4 (below user 1's 3 and 4), user 1: 4
    second = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (second.committed, second.duplicates) == (4, 0)
    assert sink.handed_over == 10  # nothing handed over twice
    assert collected(sink) == stored(cuff)
    assert sink.outbox.unbound_summary() == {(paired.meter_key, 1): 5, (paired.meter_key, 2): 5}


async def test_a_second_user_who_starts_after_the_first_sync_has_all_records_collected(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A user who first measures after the cuff was synced has all of their records collected, the
    ones numbered below the other user's last record included, and nobody's twice."""
    cuff = shared_cuff("BP-NEWUSER")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    measure(cuff, start, [1, 1, 1])  # user 1: 0..2
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    await collect_once(tmp_path, radio, cuff, sink, paired)

    measure(cuff, start, [2, 2, 2, 2, 1])  # user 2: 0..3, user 1: 3
    second = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (second.committed, second.duplicates) == (5, 0)
    assert sink.handed_over == 8
    assert collected(sink) == stored(cuff)


async def test_a_user_bound_after_the_first_sync_has_records_numbered_below_the_others_collected(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """User 2's slot, bound to a patient once user 1's records 0..9 were synced, has all of user 2's
    records 0..2 collected, though no report after user 1's position ever holds them; the sync after
    that starts after user 2's own position, not at the beginning again."""
    cuff = shared_cuff("BP-BOUNDLATE")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    measure(cuff, start, [1] * 10)  # user 1: 0..9
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    await collect_once(tmp_path, radio, cuff, sink, paired)

    measure(cuff, start, [2, 2, 2])  # user 2: 0..2
    bindings = Bindings(tmp_path / "bindings.json", GW).load()
    bindings.add_paired_meter(paired, MeterBinding(meter_key=paired.meter_key, user_id=2, patient_id="p-2"))
    second = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (second.committed, second.duplicates) == (3, 0)
    assert collected(sink) == stored(cuff)
    assert sink.handed_over == 13

    measure(cuff, start, [1, 2])  # user 1: 10, user 2: 3
    sent_before = cuff.records_sent
    third = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (third.committed, third.duplicates) == (2, 0)
    assert collected(sink) == stored(cuff)
    assert cuff.records_sent - sent_before == 9  # those numbered 3 and up: user 1's 3..10, user 2's 3


async def test_users_with_nothing_new_keep_the_cuff_wide_position_of_an_outbox_from_before(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """On an outbox that kept one position for the whole cuff (user 1's 0..9 and user 2's 0..5
    synced by an earlier release), user 2, bound and with nothing new, has none of their old records
    collected again after a sync that moved only user 1, while user 1's new records are collected."""
    cuff = shared_cuff("BP-UPGRADE")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    measure(cuff, start, [1] * 10 + [2] * 6)  # user 1: 0..9, user 2: 0..5
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    sink.outbox.commit([], sync_position=SyncPosition(paired.meter_key, 9))  # as the earlier release kept it
    bindings = Bindings(tmp_path / "bindings.json", GW).load()
    bindings.add_paired_meter(paired, MeterBinding(meter_key=paired.meter_key, user_id=2, patient_id="p-2"))

    measure(cuff, start, [1])  # user 1: 10
    first = await collect_once(tmp_path, radio, cuff, sink, paired)
    second = await collect_once(tmp_path, radio, cuff, sink, paired)
    measure(cuff, start, [1])  # user 1: 11
    third = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert [s.committed + s.duplicates for s in (first, second, third)] == [1, 0, 1]
    assert sink.handed_over == 2


async def test_a_users_numbering_that_loops_past_65535_back_to_0_is_still_collected(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A user whose record numbers loop from 65535 back to 0 (GSS: after 65536 records per user) has
    the records after the wrap collected, and the records before it, still on the cuff, not again."""
    cuff = shared_cuff("BP-WRAP")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    cuff.add_record(
        taken_at=start, systolic_mmhg=120, diastolic_mmhg=70, pulse_bpm=60, user_id=1, sequence_number=65533
    )
    measure(cuff, start, [1, 1, 2])  # user 1: 65534, 65535; user 2: 0
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    first = await collect_once(tmp_path, radio, cuff, sink, paired)

    measure(cuff, start, [1, 1, 1])  # user 1: 0, 1, 2 after the wrap
    second = await collect_once(tmp_path, radio, cuff, sink, paired)
    measure(cuff, start, [1, 2])  # user 1: 3, user 2: 1
    third = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert [(s.committed, s.duplicates) for s in (first, second, third)] == [(4, 0), (3, 0), (2, 0)]
    assert sink.handed_over == 9
    assert collected(sink) == stored(cuff)
    numbered = [r.sequence_number for r in cuff.records if r.measurement.user_id == 1]
    assert numbered == [65533, 65534, 65535, 0, 1, 2, 3]

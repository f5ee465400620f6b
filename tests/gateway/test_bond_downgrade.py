"""A meter enrolled with a passkey bond is synced only over a bond at least as strong (bumble virtual
meters through bleak): a Just Works bond made at its address afterwards, outside ``vitalgate gateway
pair``, is refused before any measurement is read (gateway.bond_security)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from bleak import BleakClient

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.personas import ACCU_CHEK_LIKE, PairingMethod
from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import MeterProfile
from gateway.bond_security import BondSecurity, bluez_bond_security
from gateway.collect import default_collector
from gateway.pairing import pair
from tests.gateway.helpers import wait_until
from tests.gateway.test_meters_virtual import Rig, radio  # noqa: F401 - the radio fixture

ADDRESS = "C4:22:33:44:55:66"
SERIAL = "GL-ACCU-1"


@dataclasses.dataclass
class Enrolled:
    rig: Rig
    clock: SimulationClock


@pytest.fixture
async def enrolled(tmp_path: Path, radio: VirtualRadio) -> Enrolled:  # noqa: F811
    """An accu-chek-like meter (passkey display) paired and bound; the rig that pairs it."""
    clock = SimulationClock()
    meter = make_meter("accu-chek-like", clock=clock, serial_number=SERIAL, address=ADDRESS)
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=104)  # type: ignore[attr-defined]
    await radio.add_meter(meter)
    rig = Rig(tmp_path, radio, collector=default_collector(dt.UTC, now=clock.now))
    paired = await pair(rig.bindings, ADDRESS, profile=MeterProfile.GLUCOSE, patient_id="p-1",
                        client_backend=radio.client_backend)  # fmt: skip
    assert paired.security is not None and paired.security.authenticated
    return Enrolled(rig, clock)


async def run_until(rig: Rig, done: Callable[[], bool], what: str) -> None:
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(done, 60, what)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def impostor_bonded_with_just_works(radio: VirtualRadio, clock: SimulationClock) -> VirtualGlucoseMeter:  # noqa: F811
    """The enrolled meter gone; at its address a device with its identity that pairs with Just Works,
    and a bond made with it at the radio level, outside ``vitalgate gateway pair`` (as BlueZ makes
    one for a device that asks to pair where no agent is in the way)."""
    genuine = radio.meter_at(ADDRESS)
    assert genuine is not None
    await genuine.stop()
    impostor = VirtualGlucoseMeter(
        dataclasses.replace(ACCU_CHEK_LIKE, pairing=PairingMethod.JUST_WORKS),
        clock=clock,
        serial_number=SERIAL,
        address=ADDRESS,
    )
    impostor.add_record(taken_at=clock.now(), glucose_mg_dl=300)
    impostor.attach(radio.link)  # type: ignore[arg-type]
    await impostor.start()
    await radio.central.forget(ADDRESS)
    client = BleakClient(ADDRESS, backend=radio.client_backend)
    await client.connect()
    await client.pair()
    await client.disconnect()
    return impostor


def session_ended(rig: Rig) -> Callable[[], bool]:
    def ended() -> bool:
        return rig.manager.sessions_ok >= 1 or any(m.failures >= 1 for m in rig.health.meters.values())

    return ended


async def test_a_passkey_meter_rebonded_with_just_works_is_refused_and_nothing_reaches_the_outbox(
    radio: VirtualRadio,  # noqa: F811
    enrolled: Enrolled,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device at a passkey meter's address, with its identity and a Just Works bond made after
    enrolment, is refused ('downgraded' in the health report, logged as an error) and none of its
    readings reach the outbox."""
    rig = enrolled.rig
    impostor = await impostor_bonded_with_just_works(radio, enrolled.clock)
    try:
        await run_until(rig, session_ended(rig), "the session's end")
    finally:
        await impostor.stop()
    assert rig.outbox.stats().unbound == 0 and rig.outbox.stats().depth == 0
    key = rig.bindings.meter_at(ADDRESS).meter_key  # type: ignore[union-attr]
    assert rig.health.meters[key].last_error == "downgraded: DowngradedBondError"
    assert rig.manager.sessions_ok == 0
    refusals = [r for r in caplog.records if getattr(r, "error_kind", "") == "downgraded"]
    assert refusals and all(r.levelname == "ERROR" for r in refusals)
    assert all(getattr(r, "meter_key", key) == key for r in refusals)


async def test_a_meter_paired_without_a_recorded_level_is_not_checked(
    radio: VirtualRadio,  # noqa: F811
    enrolled: Enrolled,
) -> None:
    """A binding from before levels were recorded (no level) keeps syncing whatever bond the link has."""
    rig = enrolled.rig
    meter = rig.bindings.meter_at(ADDRESS)
    assert meter is not None
    rig.bindings.add_paired_meter(meter.model_copy(update={"security": None}))
    impostor = await impostor_bonded_with_just_works(radio, enrolled.clock)
    try:
        await run_until(rig, session_ended(rig), "the session's end")
    finally:
        await impostor.stop()
    assert rig.manager.sessions_ok == 1 and rig.outbox.stats().unbound == 1


async def test_a_passkey_meter_at_its_enrolled_level_syncs(enrolled: Enrolled) -> None:
    """The same passkey meter, still bonded as it was enrolled, syncs its reading."""
    rig = enrolled.rig
    await run_until(rig, session_ended(rig), "the session's end")
    assert rig.manager.sessions_ok == 1
    assert rig.outbox.stats().unbound == 1


# A bond file as BlueZ writes it (src/adapter.c store_ltk_group; Authenticated is the mgmt LTK type).
BLUEZ_INFO = """[General]
Name=meter+V0001
AddressType=static
SupportedTechnologies=LE;
Trusted=false
Blocked=false

[LongTermKey]
Key=5A8E2C1F0D3B47A6918E7C2B4D6F0A13
Authenticated={kind}
EncSize=16
EDiv=0
Rand=0
"""


def test_the_level_of_a_bluez_bond_is_read_from_its_bond_file(tmp_path: Path) -> None:
    """On BlueZ, a passkey Secure Connections bond reads as authenticated and a Just Works one made
    at the same address later as weaker; an adapter with a static address is found under static-."""
    meter_dir = tmp_path / "static-00:AA:01:02:03:04" / ADDRESS
    meter_dir.mkdir(parents=True)
    (meter_dir / "info").write_text(BLUEZ_INFO.format(kind=3))
    enrolled = bluez_bond_security("00:aa:01:02:03:04", ADDRESS, tmp_path)
    assert enrolled == BondSecurity(authenticated=True, secure_connections=True, key_size=16)
    (meter_dir / "info").write_text(BLUEZ_INFO.format(kind=2))
    rebonded = bluez_bond_security("00:AA:01:02:03:04", ADDRESS, tmp_path)
    assert rebonded == BondSecurity(authenticated=False, secure_connections=True, key_size=16)
    assert enrolled.shortfalls(rebonded) == ["not authenticated (Just Works)"]
    assert bluez_bond_security("00:AA:01:02:03:04", "C4:00:00:00:00:01", tmp_path) is None


async def test_a_recorded_bond_level_that_cannot_be_read_now_is_reported_as_not_checked(
    tmp_path: Path,
    radio: VirtualRadio,  # noqa: F811
    enrolled: Enrolled,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A passkey meter whose bond level cannot be read now (no bond file the gateway can read, as
    the service account finds BlueZ's) syncs, but its health report says the check was not made and
    one ERROR names its meter key only, over two sessions; once the level reads, the note goes."""
    rig = enrolled.rig
    key = rig.bindings.meter_at(ADDRESS).meter_key  # type: ignore[union-attr]
    meter = radio.meter_at(ADDRESS)
    assert isinstance(meter, VirtualGlucoseMeter)

    async def unreadable(client: BleakClient) -> BondSecurity | None:
        return await asyncio.to_thread(bluez_bond_security, "00:AA:01:02:03:04", client.address, tmp_path)

    def synced(sessions: int) -> Callable[[], bool]:
        return lambda: rig.manager.sessions_ok >= sessions

    rig.manager.read_bond = unreadable
    rig.manager.config = dataclasses.replace(rig.manager.config, resync_after_s=0.1)  # next advert syncs
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(synced(1), 60, "the first session")
        assert rig.health.meters[key].to_health().last_error == "bond level unreadable: check not made"
        await meter.take_measurement(taken_at=enrolled.clock.now(), glucose_mg_dl=110)
        await wait_until(synced(2), 60, "the second session")
        assert rig.health.meters[key].to_health().last_error == "bond level unreadable: check not made"
        notes = [r for r in caplog.records if r.getMessage().startswith("bond level unreadable")]
        assert [(r.levelname, getattr(r, "meter_key", None)) for r in notes] == [("ERROR", key)]

        rig.manager.read_bond = rig.manager._read_bond  # the virtual link's level: readable
        await meter.take_measurement(taken_at=enrolled.clock.now(), glucose_mg_dl=115)
        await wait_until(synced(3), 60, "the third session")
        assert rig.health.meters[key].to_health().last_error is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

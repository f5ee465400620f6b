"""Bindings with a validity interval on the gateway: attribution by measurement time, readings kept
aside with their reason, and the clinic's decisions on them (adopt, discard); the loaner meter end
to end through the gateway process, Mosquitto, ingest, the fleet service and the administration API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.deps import ApiServices
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from gateway.app import Gateway, GatewayOptions
from gateway.bindings import MeterProfile, PairedMeter, attribute, time_trusted
from gateway.outbox import Outbox, SyncPosition, UnboundReading
from gateway.uplink import UplinkConfig
from ingest import IngestConfig, IngestConsumer
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user, enrol_patient, register_gateway, register_meter
from storage.clinic.models import AuditLogEntry, MeterKind, UnboundReleaseRecord, UserRole
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings import SqliteReadingStore
from testbed.factories import cuff, glucose, glucose_meter
from testbed.process_rig import GatewayProcess, MeterHost, gateway_env, run_cli
from tests.api.session_tokens import bearer_headers
from tests.gateway.helpers import wait_until
from vitalgate.administration import publish_gateway_config
from vitalgate.fleet import FleetConfig, FleetService
from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import (
    GatewayConfig,
    MeterBinding,
    UnboundAction,
    UnboundReason,
    UnboundRelease,
)
from vitals.readings import DeviceIdentity, GlucoseReading, Reading, SensorStatus

UTC = dt.UTC
T = dt.datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
METER = glucose_meter().meter_key
CUFF = cuff().meter_key


def binding(patient: str, *, start: dt.datetime | None, end: dt.datetime | None = None, memory: bool = False,
            slot: int | None = None, meter: str = METER) -> MeterBinding:  # fmt: skip
    return MeterBinding(meter_key=meter, user_id=slot, patient_id=patient, bound_at=start, unbound_at=end,
                        prior_memory_belongs=memory)  # fmt: skip


def trusted(reading: Reading) -> Reading:
    """The reading as the collector makes it when the meter's clock was read at sync time."""
    return reading.model_copy(update={"clock_offset_s": 0.0})


# -- attribution by measurement time ------------------------------------------------------------


def test_a_reading_measured_before_bound_at_belongs_to_nobody_and_one_after_to_the_patient() -> None:
    """A loaner meter's earlier memory is never attributed to the patient it is bound to now."""
    bindings = [binding("p-new", start=T)]
    assert attribute(bindings, METER, None, T - dt.timedelta(days=3), True) is UnboundReason.OUTSIDE_BINDING
    assert attribute(bindings, METER, None, T + dt.timedelta(minutes=5), True) == "p-new"


def test_an_ended_binding_keeps_its_readings_and_the_next_binding_takes_over() -> None:
    """A meter moved from one patient to another: each reading goes to whoever held it when taken."""
    move = T + dt.timedelta(days=10)
    bindings = [binding("p-old", start=T, end=move), binding("p-new", start=move)]
    assert attribute(bindings, METER, None, move - dt.timedelta(hours=1), True) == "p-old"
    assert attribute(bindings, METER, None, move + dt.timedelta(hours=1), True) == "p-new"
    ended = [binding("p-old", start=T, end=move)]
    assert attribute(ended, METER, None, move + dt.timedelta(hours=1), True) is UnboundReason.OUTSIDE_BINDING


def test_the_meters_memory_goes_to_the_patient_only_when_the_administrator_said_so() -> None:
    """Prior memory is attributed on the administrator's word, and never across another patient's turn."""
    earlier = T - dt.timedelta(days=5)
    assert attribute([binding("p-own", start=T, memory=True)], METER, None, earlier, True) == "p-own"
    held_between = [
        binding("p-a", start=T - dt.timedelta(days=2), end=T),
        binding("p-b", start=T, memory=True),
    ]
    assert attribute(held_between, METER, None, earlier, True) is UnboundReason.OUTSIDE_BINDING


def test_a_reading_whose_meter_clock_was_not_trusted_is_held_unless_the_time_cannot_matter() -> None:
    """No guessing: an uncorrected time is attributed only by a lone binding that holds at every time."""
    assert attribute([binding("p1", start=T)], METER, None, T + dt.timedelta(hours=1), False) is (
        UnboundReason.CLOCK_UNTRUSTED
    )
    assert attribute([binding("p1", start=T, memory=True)], METER, None, T, False) == "p1"
    assert attribute([binding("p1", start=None)], METER, None, T, False) == "p1"  # paired on site
    assert attribute([], METER, None, T, False) is UnboundReason.NO_BINDING


def test_which_readings_have_a_trusted_time() -> None:
    """Corrected by a clock read at sync: trusted; no clock read, no timestamp or a time fault: not."""
    reading = glucose(1)
    assert not time_trusted(reading)  # the meter's clock was not read
    assert time_trusted(trusted(reading))
    assert not time_trusted(trusted(reading).model_copy(update={"device_time": None}))
    faulted = trusted(reading).model_copy(update={"sensor_status": frozenset({SensorStatus.TIME_FAULT})})
    assert isinstance(faulted, GlucoseReading) and not time_trusted(faulted)


def test_a_cuff_user_slot_binding_wins_over_a_whole_meter_binding() -> None:
    """User slot 2 of a shared cuff goes to its own patient, other slots to the whole-cuff binding."""
    bindings = [binding("p-all", start=T, meter=CUFF), binding("p-two", start=T, slot=2, meter=CUFF)]
    later = T + dt.timedelta(hours=1)
    assert attribute(bindings, CUFF, 2, later, True) == "p-two"
    assert attribute(bindings, CUFF, 1, later, True) == "p-all"


# -- the gateway keeps readings aside with their reason, and the clinic's decisions -------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3").open()
    yield box
    box.close()


def _aside(
    readings: list[Reading], reason: UnboundReason = UnboundReason.OUTSIDE_BINDING
) -> list[UnboundReading]:
    return [
        UnboundReading(r.model_copy(update={"patient_id": None}), r.device.meter_key, None, reason)
        for r in readings
    ]


def _release(action: UnboundAction, command_id: str, start: dt.datetime, end: dt.datetime,
             patient: str | None = None) -> UnboundRelease:  # fmt: skip
    return UnboundRelease(command_id=command_id, action=action, meter_key=METER, measured_from=start,
                          measured_to=end, patient_id=patient)  # fmt: skip


def test_unbound_readings_are_reported_per_meter_and_reason_with_their_time_span(outbox: Outbox) -> None:
    """The status says how many readings wait, of which meter, why, and when measured: no values."""
    readings = [trusted(glucose(i, patient_id=None)) for i in range(5)]
    outbox.commit([], unbound=_aside(readings[:3]) + _aside(readings[3:], UnboundReason.CLOCK_UNTRUSTED))
    groups = {g.reason: g for g in outbox.unbound_groups()}
    assert groups[UnboundReason.OUTSIDE_BINDING].count == 3
    assert groups[UnboundReason.OUTSIDE_BINDING].first_measured_at == readings[0].measured_at
    assert groups[UnboundReason.OUTSIDE_BINDING].last_measured_at == readings[2].measured_at
    assert groups[UnboundReason.CLOCK_UNTRUSTED].count == 2
    assert set(groups[UnboundReason.CLOCK_UNTRUSTED].model_dump()) == {
        "meter_key", "user_id", "reason", "count", "first_measured_at", "last_measured_at",
    }  # fmt: skip


def test_adopting_moves_the_span_to_the_outbox_under_the_chosen_patient_once(outbox: Outbox) -> None:
    """Adopted readings are sent as the chosen patient's; the same command again changes nothing."""
    readings = [trusted(glucose(i, patient_id=None)) for i in range(6)]
    outbox.commit([], unbound=_aside(readings))
    command = _release(
        UnboundAction.ADOPT, "cmd-1", readings[0].measured_at, readings[3].measured_at, "p-old"
    )

    first = outbox.release(command)
    again = outbox.release(command)

    assert (first.readings, again.already_applied) == (4, True)
    pending = outbox.due(ack_timeout_s=30, limit=100)
    assert {p.reading_id for p in pending} == {r.reading_id for r in readings[:4]}
    assert {p.reading().patient_id for p in pending} == {"p-old"}
    assert outbox.stats().unbound == 2
    assert [(c.command_id, c.readings) for c in outbox.applied_commands(10)] == [("cmd-1", 4)]


def test_discarding_deletes_the_span_for_good_even_when_the_meter_sends_it_again(outbox: Outbox) -> None:
    """Discarded readings leave the gateway, and a meter re-sending its memory does not bring them back."""
    readings = [trusted(glucose(i, patient_id=None)) for i in range(3)]
    outbox.commit([], unbound=_aside(readings))
    outbox.release(
        _release(UnboundAction.DISCARD, "cmd-2", readings[0].measured_at, readings[-1].measured_at)
    )
    assert outbox.stats().unbound == 0

    again = outbox.commit([], unbound=_aside(readings))

    assert (again.added_unbound, again.already_delivered) == (0, 3)
    assert outbox.stats().unbound == 0


def test_an_older_outbox_gains_the_reason_and_measurement_time_of_what_it_keeps_aside(tmp_path: Path) -> None:
    """Readings kept aside by an earlier gateway version are reported with their span after an upgrade."""
    path = tmp_path / "old.sqlite3"
    reading = glucose(3, patient_id=None)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE unbound (seq INTEGER PRIMARY KEY AUTOINCREMENT, reading_id TEXT NOT NULL UNIQUE,"
            " meter_key TEXT NOT NULL, user_id INTEGER, payload TEXT NOT NULL, committed_at REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO unbound (reading_id, meter_key, user_id, payload, committed_at) VALUES (?,?,?,?,?)",
            (reading.reading_id, METER, None, reading.model_dump_json(), 0.0),
        )
    with Outbox(path) as box:
        [group] = box.unbound_groups()
    assert (group.reason, group.count, group.first_measured_at) == (
        UnboundReason.NO_BINDING,
        1,
        reading.measured_at,
    )


async def _no_collection(_client: object, _session: object) -> None:
    raise AssertionError("no meter is read here")


async def test_a_binding_that_arrives_after_the_sync_attributes_what_it_covers(tmp_path: Path) -> None:
    """Readings synced before the clinic's binding reached the gateway are released by it, by time."""
    uplink = UplinkConfig(gateway_id="gw-late", host="127.0.0.1", allow_plain_mqtt=True)
    gateway = Gateway(GatewayOptions(gateway_id="gw-late", state_dir=tmp_path, uplink=uplink), _no_collection)
    await asyncio.to_thread(gateway.outbox.open)
    await asyncio.to_thread(gateway.bindings.load)
    readings = [trusted(glucose(i, patient_id=None)) for i in range(4)]
    meter = PairedMeter(address="AA:BB:CC:DD:EE:01", meter_key=METER, profile=MeterProfile.GLUCOSE,
                        paired_at=dt.datetime.now(UTC))  # fmt: skip
    gateway.bindings.add_paired_meter(meter)  # no clinic config yet: the meter is nobody's
    await gateway.commit(meter, readings, SyncPosition(METER, 4))
    assert gateway.outbox.stats().unbound == 4
    bound_at = readings[2].measured_at
    config = GatewayConfig(gateway_id=gateway.options.gateway_id, issued_at=dt.datetime.now(UTC),
                           bindings=(binding("p-new", start=bound_at),))  # fmt: skip

    await gateway._on_config(config)

    assert {p.reading_id for p in gateway.outbox.due(ack_timeout_s=30, limit=10)} == {
        r.reading_id for r in readings[2:]
    }
    [group] = gateway.outbox.unbound_groups()
    assert (group.reason, group.count) == (UnboundReason.OUTSIDE_BINDING, 2)
    untrusted = glucose(9, patient_id=None)
    await gateway.commit(meter, [untrusted], SyncPosition(METER, 9))
    reasons = {g.reason: g.count for g in gateway.outbox.unbound_groups()}
    assert reasons == {UnboundReason.OUTSIDE_BINDING: 2, UnboundReason.CLOCK_UNTRUSTED: 1}
    await asyncio.to_thread(gateway.outbox.close)


# -- the loaner meter, end to end ---------------------------------------------------------------

LOANER_GW = "gw-loaner"
SECRET = "loaner-test-secret-" + "x" * 32
MEMORY_DAYS = 30


@dataclass
class ClinicSide:
    sessions: sessionmaker[Session]
    store_path: Path
    client: httpx.AsyncClient

    def stored(self, patient_id: str) -> list[tuple[str, dt.datetime]]:
        """(reading id, measured at) of every row the reading store holds for the patient."""
        with sqlite3.connect(self.store_path, timeout=10) as db:
            rows = db.execute(
                "SELECT reading_id, reading_json FROM readings WHERE patient_id = ?", (patient_id,)
            )
            return [(rid, GlucoseReading.model_validate_json(p).measured_at) for rid, p in rows]

    async def unbound(self) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/admin/fleet/unbound", headers=_admin_headers(self.sessions))
        assert response.status_code == 200, response.text
        groups: list[dict[str, Any]] = response.json()["groups"]
        return groups

    def audit(self, action: str) -> list[AuditLogEntry]:
        with self.sessions() as session:
            return list(session.scalars(select(AuditLogEntry).where(AuditLogEntry.action == action)))


def _admin_headers(sessions: sessionmaker[Session]) -> dict[str, str]:
    return bearer_headers(sessions, "admin-1", SECRET, clinic_id="c1", role=UserRole.CLINIC_ADMIN)


def _gateway_unbound(outbox_path: Path) -> int:
    with sqlite3.connect(outbox_path, timeout=10) as db:
        return int(db.execute("SELECT COUNT(*) FROM unbound").fetchone()[0])


def _seed_loaner_clinic(url: str, device: DeviceIdentity, bound_at: dt.datetime) -> sessionmaker[Session]:
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Clinic One")
        add_user(session, user_id="admin-1", clinic_id="c1", email="admin@example.org", display_name="admin",
                 roles=[UserRole.CLINIC_ADMIN])  # fmt: skip
        for patient_id in ("p-earlier", "p-new"):
            enrol_patient(session, patient_id=patient_id, clinic_id="c1", given_name="A", family_name="B")
        register_gateway(session, gateway_id=LOANER_GW, clinic_id="c1", mqtt_password="unused")
        register_meter(session, clinic_id="c1", device=device, kind=MeterKind.GLUCOSE)
        # The loaner goes to its new patient; the memory it holds is not theirs (the default choice).
        bind_meter(session, gateway_id=LOANER_GW, meter_key=device.meter_key, patient_id="p-new", at=bound_at,
                   prior_memory_belongs=False)  # fmt: skip
    return sessions


@pytest.fixture
async def meter_host() -> AsyncIterator[MeterHost]:
    async with MeterHost() as host:
        yield host


async def test_a_loaner_meters_memory_never_reaches_its_new_patient_and_is_adopted_or_discarded_once(
    tmp_path: Path, mqtt_broker: MosquittoBroker, meter_host: MeterHost
) -> None:
    """30 days of an earlier patient's readings: kept aside, listed, adopted to them once or discarded."""
    now = dt.datetime.now(UTC)
    bound_at = now - dt.timedelta(minutes=30)
    meter = make_meter("contour-like", clock=meter_host.clock, serial_number="GL-LOANER-1")
    assert isinstance(meter, VirtualGlucoseMeter)
    memory = [
        now - dt.timedelta(days=MEMORY_DAYS) + dt.timedelta(hours=12 * i) for i in range(2 * MEMORY_DAYS)
    ]
    for i, taken_at in enumerate(memory):
        meter.add_record(taken_at=taken_at, glucose_mg_dl=100 + i % 50)
    await meter_host.radio.add_meter(meter)
    meter_host.meters.append(meter)
    device = DeviceIdentity(manufacturer=meter.persona.manufacturer, model=meter.persona.model,
                            serial_number=meter.serial_number)  # fmt: skip

    mqtt_broker.add_gateway(LOANER_GW)
    env = gateway_env(mqtt_broker, tmp_path / "gateway", LOANER_GW)
    code, _out, err = await run_cli(env, "gateway", "pair", "--virtual-radio", meter_host.transport_spec,
                                    "--address", meter.address, "--profile", "glucose")  # fmt: skip
    assert code == 0, err

    sessions = _seed_loaner_clinic(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", device, bound_at)
    clinic_user, clinic_password = mqtt_broker.credentials("clinic")
    config = ClinicRepository(sessions).gateway_config(LOANER_GW, issued_at=now)
    assert config.bindings[0].bound_at == bound_at and not config.bindings[0].prior_memory_belongs
    await asyncio.to_thread(publish_gateway_config, config, host=mqtt_broker.host, port=mqtt_broker.port,
                            username=clinic_user, password=clinic_password)  # fmt: skip

    store_path = tmp_path / "readings.sqlite3"
    store = SqliteReadingStore(store_path)
    ingest_user, ingest_password = mqtt_broker.credentials("ingest")
    ingest = IngestConsumer(
        IngestConfig(host=mqtt_broker.host, port=mqtt_broker.port, username=ingest_user,
                     password=ingest_password, client_id="ingest-loaner", session_expiry_s=300),
        store,
        ClinicRepository(sessions),
    )  # fmt: skip
    ingest.start()
    assert ingest.wait_subscribed(30)
    fleet = FleetService(
        FleetConfig(host=mqtt_broker.host, port=mqtt_broker.port, username=clinic_user,
                    password=clinic_password, client_id="fleet-loaner"),
        sessions,
    )  # fmt: skip
    await fleet.start()
    stop = asyncio.Event()
    fleet_task = asyncio.create_task(fleet.run(stop))
    services = ApiServices(reading_store=store, clinic_sessions=sessions, jwt_secret=SECRET, fleet=fleet)
    gateway = await GatewayProcess(env, meter_host.transport_spec, tmp_path / "gateway.log").start()
    outbox_path = tmp_path / "gateway" / "gateway" / "outbox.sqlite3"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services)), base_url="http://clinic"
        ) as client:
            clinic = ClinicSide(sessions, store_path, client)

            async def memory_listed() -> bool:
                groups = await clinic.unbound()
                return bool(groups) and groups[0]["count"] == len(memory)

            await _eventually(memory_listed, 120, "the meter's memory listed as unbound readings")
            [group] = await clinic.unbound()
            assert group["meter_key"] == device.meter_key and group["gateway_id"] == LOANER_GW
            assert group["reasons"] == {"outside_binding": len(memory)}
            assert group["bound_patient_ids"] == ["p-new"]
            assert clinic.stored("p-new") == []

            # The new patient measures: those readings are theirs.
            for i in range(3):
                await meter_host.measure(meter, 100 + i)
            await wait_until(
                lambda: len(clinic.stored("p-new")) == 3, 90, "the new patient's 3 readings stored"
            )
            assert all(measured >= bound_at for _rid, measured in clinic.stored("p-new"))

            # The administrator gives the first half of the memory back to the earlier patient ...
            half = memory[MEMORY_DAYS - 1]
            url = f"/api/v1/admin/fleet/gateways/{LOANER_GW}/unbound"
            adopt = {"meter_key": device.meter_key, "patient_id": "p-earlier",
                     "measured_from": group["first_measured_at"], "measured_to": (half + dt.timedelta(minutes=1)).isoformat()}  # fmt: skip
            response = await client.post(f"{url}/adopt", json=adopt, headers=_admin_headers(sessions))
            assert response.status_code == 202, response.text
            assert response.json()["delivery"] == "published"
            await wait_until(
                lambda: len(clinic.stored("p-earlier")) == MEMORY_DAYS, 90, "the adopted half stored"
            )

            async def adoption_reported() -> bool:
                groups = await clinic.unbound()
                return len(groups) == 1 and groups[0]["count"] == MEMORY_DAYS and not groups[0]["pending"]

            await _eventually(adoption_reported, 30, "the gateway to report the adoption carried out")

            # ... and discards the rest.
            response = await client.post(f"{url}/discard", json={"meter_key": device.meter_key},
                                         headers=_admin_headers(sessions))  # fmt: skip
            assert response.status_code == 202, response.text
            await wait_until(lambda: _gateway_unbound(outbox_path) == 0, 30, "the discarded readings gone")

            async def nothing_left() -> bool:
                return await clinic.unbound() == []

            await _eventually(nothing_left, 30, "the gateway to report nothing kept aside")
    finally:
        await gateway.stop()
        stop.set()
        await asyncio.wait_for(fleet_task, 10)
        await fleet.close()
        ingest.stop()
        store.close()

    earlier = clinic.stored("p-earlier")
    assert len(earlier) == len({rid for rid, _m in earlier}) == MEMORY_DAYS  # once each
    assert max(m for _rid, m in earlier) < bound_at
    assert len(clinic.stored("p-new")) == 3  # still none of the memory
    [adopted] = clinic.audit("adopt_unbound_readings")
    [discarded] = clinic.audit("discard_unbound_readings")
    assert (adopted.actor, adopted.details["patient_id"], adopted.details["action"]) == (
        "admin-1",
        "p-earlier",
        "adopt",
    )
    assert (discarded.actor, discarded.details["readings"]) == ("admin-1", MEMORY_DAYS)  # all that was left
    with sessions() as session:
        carried_out = {r.action: r.readings for r in session.scalars(select(UnboundReleaseRecord))}
    assert carried_out == {"adopt": MEMORY_DAYS, "discard": MEMORY_DAYS}
    sessions.kw["bind"].dispose()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)

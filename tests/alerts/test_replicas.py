"""Several clinic processes on one clinic database: one alert per patient and rule and one
notification however many replicas evaluate the same readings, periodic jobs once per interval,
and every replica's live stream carrying every alert event whichever replica made it.

Each "replica" here has its own engine and connection pool on the same database, as separate
processes do (storage.clinic.coordination). PostgreSQL on 127.0.0.1:5432 (tests/fixtures/postgres.py)
and SQLite.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from alerts.channels.base import Notification
from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.event_feed import AlertEventFeed, FeedWakeup
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.coordination import DatabaseTurns, exclusive
from storage.clinic.database import ClinicDatabase, create_clinic_engine
from storage.clinic.enrolment import enrol_patient
from storage.clinic.models import Alert
from storage.readings.sqlite import SqliteReadingStore
from tests.alerts.conftest import START, Clock, bp_reading, seed_clinic
from tests.fixtures.postgres import postgres_database_url

__all__ = ["postgres_database_url"]

PATIENTS = [f"pt-r{i}" for i in range(8)]
WAIT_S = 15.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A seeded clinic database of this test's own: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/clinic.sqlite3"
        yield from _seeded(url)
        return
    server: str = request.getfixturevalue("postgres_database_url")
    name = f"vg_replicas_{uuid.uuid4().hex[:12]}"
    admin = create_clinic_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield from _seeded(server.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _seeded(url: str) -> Iterator[str]:
    with ClinicDatabase.open(url) as database:
        seed_clinic(database.sessions)
        with database.sessions() as session:
            for pid in PATIENTS:
                enrol_patient(
                    session,
                    patient_id=pid,
                    clinic_id="clinic-a",
                    given_name="R",
                    family_name="Replica",
                    family_doctor_id="dr-li",
                )
            session.commit()
    yield url


class Replica:
    """One clinic process: its own pool on the database, engine, hub and event feed."""

    def __init__(self, url: str, store: SqliteReadingStore, clock: Clock) -> None:
        self.database = ClinicDatabase.open(url, migrate=False)
        self.delivered: list[Notification] = []
        sessions = self.database.sessions
        self.directory = SqlPatientDirectory(sessions)
        self.router = Router(live=[self], base_url="https://clinic.test")
        self.engine = AlertEngine(
            store,
            SqlAlertRepository(sessions),
            self.directory,
            self.router,
            clock=clock,
            patient_lock=lambda pid: exclusive(self.database, "patient", pid, timeout_s=WAIT_S),
        )
        self.hub = EventHub()
        self.feed = AlertEventFeed(
            self.database, self.hub, self.directory, Router(base_url="https://clinic.test")
        )

    name = "recording"

    async def deliver(self, notification: Notification) -> None:
        """The replica's notification channel: what it sent, once per event it made."""
        self.delivered.append(notification)


@pytest.fixture
def store(tmp_path: object) -> Iterator[SqliteReadingStore]:
    s = SqliteReadingStore(f"{tmp_path}/readings.sqlite3")
    yield s
    s.close()


def test_replicas_evaluating_the_same_readings_open_one_alert_and_notify_once(
    database_url: str, store: SqliteReadingStore
) -> None:
    """Two replicas handed the same crisis readings at the same moment: one alert, one notification."""
    clock = Clock(START + timedelta(minutes=4))
    batches = {
        pid: [bp_reading(pid, START, 186, 100), bp_reading(pid, START + timedelta(minutes=3), 184, 98)]
        for pid in PATIENTS
    }
    for batch in batches.values():
        store.write_batch(batch)
    replicas = [Replica(database_url, store, clock) for _ in range(2)]
    try:
        start = threading.Barrier(len(replicas))

        def evaluate(replica: Replica) -> None:
            async def run() -> None:
                start.wait(WAIT_S)
                for pid in PATIENTS:
                    await replica.engine.on_readings_committed(batches[pid])

            asyncio.run(run())

        threads = [threading.Thread(target=evaluate, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        opened = [n.event.patient_id for r in replicas for n in r.delivered if n.event.event == "opened"]
        with replicas[0].database.sessions() as session:
            alerts = [(a.patient_id, a.rule_id) for a in session.scalars(select(Alert))]
    finally:
        for r in replicas:
            r.database.close()
    assert sorted(opened) == sorted(PATIENTS)  # one notification per patient, from one replica or other
    assert sorted(alerts) == sorted((pid, "BP-CRIT-2") for pid in PATIENTS)


def _claim_together(turns: list[DatabaseTurns], every: timedelta, at: datetime) -> list[str]:
    """Every replica claims the sweep at the same moment; the runners that got the turn."""
    claimed: list[str] = []
    start = threading.Barrier(len(turns))

    def claim(t: DatabaseTurns) -> None:
        start.wait(WAIT_S)
        if t.claim("alerts.sweep", every, at) is not None:
            claimed.append(t.runner)

    threads = [threading.Thread(target=claim, args=(t,)) for t in turns]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return claimed


def test_a_periodic_job_runs_once_per_interval_across_replicas(database_url: str) -> None:
    """Four replicas waking together: one takes the turn; the next turn only after the interval."""
    databases = [ClinicDatabase.open(database_url, migrate=False) for _ in range(4)]
    turns = [DatabaseTurns(db, f"replica-{i}") for i, db in enumerate(databases)]
    every = timedelta(minutes=5)
    try:
        for round_start in (
            START,
            START + timedelta(minutes=2),
            START + every,
            START + every + timedelta(seconds=1),
        ):
            claimed = _claim_together(turns, every, round_start)
            due = round_start in (START, START + every)
            assert len(claimed) == (1 if due else 0), (round_start, claimed)
    finally:
        for db in databases:
            db.close()


async def test_every_replicas_live_stream_carries_an_event_made_elsewhere(
    database_url: str, store: SqliteReadingStore
) -> None:
    """An alert opened by one replica reaches the live streams of two others, once each."""
    clock = Clock(START + timedelta(minutes=4))
    maker, *servers = [Replica(database_url, store, clock) for _ in range(3)]
    stop = asyncio.Event()
    feeds = [asyncio.create_task(s.feed.run(stop)) for s in servers]
    try:
        async with asyncio.timeout(WAIT_S):
            for s in servers:
                await s.feed.ready.wait()
        async with (
            servers[0].hub.subscribe("clinic-a") as first,
            servers[1].hub.subscribe("clinic-a") as second,
        ):
            batch = [
                bp_reading("pt-1", START, 186, 100),
                bp_reading("pt-1", START + timedelta(minutes=3), 184, 98),
            ]
            store.write_batch(batch)
            await maker.engine.on_readings_committed(batch)
            got = [await sub.next(WAIT_S) for sub in (first, second)]
            extra = [await sub.next(0.5) for sub in (first, second)]
    finally:
        stop.set()
        await asyncio.gather(*feeds)
        for r in (maker, *servers):
            r.database.close()
    made = [n for n in maker.delivered if n.event.event == "opened"]
    assert [n.event.rule_id for n in made] == ["BP-CRIT-2"]
    for note in got:
        assert note is not None
        assert (note.event_id, note.event.alert_id, note.event.event) == (
            made[0].event_id,
            made[0].event.alert_id,
            "opened",
        )
        assert [r.user_id for r in note.recipients] == ["dr-li"]
    assert extra == [None, None]  # each event once per stream


async def test_an_alert_a_process_makes_reaches_its_own_live_streams_without_waiting_for_a_poll(
    tmp_path: object, store: SqliteReadingStore
) -> None:
    """On SQLite, where the feed polls, an alert this process opens is on its live stream at once:
    with a poll an hour apart, the urgent event still arrives (the router wakes the feed)."""
    url = next(_seeded(f"sqlite:///{tmp_path}/clinic.db"))
    replica = Replica(url, store, Clock(START + timedelta(minutes=4)))
    replica.feed.poll_s = 3600.0
    replica.router.live.append(FeedWakeup(replica.feed))
    stop = asyncio.Event()
    feed = asyncio.create_task(replica.feed.run(stop))
    try:
        async with asyncio.timeout(WAIT_S):
            await replica.feed.ready.wait()
        async with replica.hub.subscribe("clinic-a") as stream:
            await asyncio.sleep(0.1)  # the feed's first read is done; it now waits for its hour
            batch = [
                bp_reading("pt-1", START, 186, 100),
                bp_reading("pt-1", START + timedelta(minutes=3), 184, 98),
            ]
            store.write_batch(batch)
            await replica.engine.on_readings_committed(batch)
            note = await stream.next(WAIT_S)
    finally:
        stop.set()
        await asyncio.gather(feed)
        replica.database.close()
    assert note is not None and (note.event.rule_id, note.event.event) == ("BP-CRIT-2", "opened")

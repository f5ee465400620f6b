"""`vitalgate demo`: every stage of vitalgate, wired together on the embedded defaults.

One process runs what would be three places in real life:

- the patients' homes: virtual meters (real GATT servers on bumble) with virtual patients following
  scripted stories, and the edge gateway reaching them through the bumble-backed bleak backend;
- the broker: a private Mosquitto with per-gateway credentials and ACLs;
- the clinic: ingest into SQLite, the alert engine, the API and the doctors' web app.

Nothing is mocked between the stages: readings cross real GATT, a real MQTT broker and real
databases. The demo starts fresh in DATA_DIR/demo on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from device_drivers.virtual.simulator import Simulation
from device_drivers.virtual.stories import load_story
from gateway.app import Gateway
from gateway.bindings import Bindings, MeterProfile
from gateway.collect import default_collector
from gateway.pairing import pair
from storage.clinic.models import GuidelineProfile, MeterKind, PatientTargets, UserRole
from storage.clinic.repository import ClinicRepository
from vitalgate.administration import (
    add_clinic,
    add_gateway,
    add_patient,
    add_user,
    bind_meter,
    publish_gateway_config,
)
from vitalgate.clinic import ClinicServer, build_clinic_server
from vitalgate.mosquitto import MosquittoBroker, free_port
from vitalgate.settings import Settings
from vitalgate.wiring import gateway_options, open_clinic_database
from vitals.readings import DeviceIdentity

logger = logging.getLogger(__name__)

GATEWAY_ID = "gw-demo-0001"
CLINIC_ID = "demo-clinic"
DOCTOR_EMAIL = "doctor@vitalgate.demo"
NURSE_EMAIL = "nurse@vitalgate.demo"
ADMIN_EMAIL = "admin@vitalgate.demo"
# The demo's accounts: the family doctor, a nurse (clinic staff) on every patient's care team, and a
# clinic administrator (not on any care team: sees the whole clinic).
DEMO_ACCOUNTS = (
    ("dr-demo", DOCTOR_EMAIL, "Dr Demo", UserRole.FAMILY_DOCTOR),
    ("nurse-demo", NURSE_EMAIL, "Nurse Demo", UserRole.CLINIC_STAFF),
    ("admin-demo", ADMIN_EMAIL, "Admin Demo", UserRole.CLINIC_ADMIN),
)
DEMO_PASSKEY = 123456  # the PIN the virtual Accu-Chek-like meter shows while pairing
DEFAULT_STORIES = ("stable", "bp-rising", "recurrent-hypos", "cuff-errors")
# Demo patients' names live only in the clinic database (DESIGN.md: opaque ids everywhere else).
DEMO_NAMES = (("王", "伟"), ("Li", "Na"), ("张", "敏"), ("Chen", "Jie"), ("刘", "洋"), ("Zhao", "Lei"))
# Stories whose patient the demo records as on insulin (a demo choice: the patient with recurrent hypos),
# so the web app's Targets show the flag and DQ-01 uses its 3-day limit (clinical-rules.md §7, [58]).
INSULIN_STORIES = frozenset({"recurrent-hypos"})
PAIRING_TIMEOUT_S = 60.0
PROGRESS_INTERVAL_S = 5.0
LIVE_REPLAY = dt.timedelta(days=1)  # how far back the live simulation starts


class DemoError(RuntimeError):
    """The demo could not be set up; the message says which step failed."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    patients: int = 4
    stories: tuple[str, ...] = DEFAULT_STORIES
    history_days: int = 14
    speed: float = 600.0  # simulated seconds per real second: 10 simulated minutes a second
    port: int | None = None
    duration_s: float | None = None  # None: until Ctrl-C
    until_synced: bool = False  # stop as soon as every reading the meters held is stored


@dataclass(frozen=True, slots=True)
class DemoResult:
    readings_on_meters: int
    readings_stored: int
    duplicates: int
    open_alerts: int
    api_url: str


def _demo_settings(base: Settings, data_dir: Path, broker: MosquittoBroker, api_url: str) -> Settings:
    ingest_user, ingest_password = broker.credentials("ingest")
    clinic_user, clinic_password = broker.credentials("clinic")
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "mqtt": base.mqtt.model_copy(
                update={
                    "host": broker.host,
                    "port": broker.port,
                    "username": ingest_user,
                    "password": SecretStr(ingest_password),
                    "allow_plain_mqtt": True,  # the demo's private broker listens on loopback only
                }
            ),
            "gateway": base.gateway.model_copy(
                update={"gateway_id": GATEWAY_ID, "status_interval_s": 10.0, "ack_timeout_s": 15.0}
            ),
            "storage": base.storage.model_copy(
                update={"reading_store": "sqlite", "sqlite_path": None, "clinic_database_url": None}
            ),
            "alerts": base.alerts.model_copy(
                update={
                    "mqtt_username": clinic_user,
                    "mqtt_password": SecretStr(clinic_password),
                    "sweep_interval_s": 30.0,
                    "web_base_url": api_url,
                    "smtp_host": None,
                    "webhook_urls": [],
                }
            ),
        }
    )


def _gateway_settings(demo: Settings, broker: MosquittoBroker) -> Settings:
    user, password = broker.credentials(GATEWAY_ID)
    return demo.model_copy(
        update={
            "mqtt": demo.mqtt.model_copy(update={"username": user, "password": SecretStr(password)}),
            "gateway": demo.gateway.model_copy(
                update={"outbox_path": demo.data_dir / "gateway" / "outbox.sqlite3"}
            ),
        }
    )


def _identity(meter: VirtualMeter) -> DeviceIdentity:
    return DeviceIdentity(
        manufacturer=meter.persona.manufacturer,
        model=meter.persona.model,
        serial_number=meter.serial_number,
        address=meter.address,
    )


def _bind(
    sessions: sessionmaker[Session], identity: DeviceIdentity, kind: MeterKind, patient_id: str
) -> None:
    with sessions() as session:
        bind_meter(session, gateway_id=GATEWAY_ID, device=identity, kind=kind, patient_id=patient_id)
        session.commit()


def _meter_records(meter: VirtualMeter) -> int:
    return len(getattr(meter, "records", ()))


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.base = settings
        self.data_dir = settings.data_dir / "demo"
        self.broker: MosquittoBroker | None = None
        self.radio: VirtualRadio | None = None
        self.simulation: Simulation | None = None
        self.server: ClinicServer | None = None
        # One password per account, new on every run (printed with the logins).
        self.passwords = {email: secrets.token_urlsafe(9) for _, email, _, _ in DEMO_ACCOUNTS}
        self.doctor_password = self.passwords[DOCTOR_EMAIL]
        self.api_url = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def run(self, stop: asyncio.Event) -> DemoResult:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        port = self.options.port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        tasks: list[asyncio.Task[None]] = []
        server_stop = asyncio.Event()
        try:
            self.say(f"vitalgate demo: working in {self.data_dir}")
            # Blocking set-up (a broker process, Alembic, argon2 hashes, a paho publish) runs off the
            # event loop, which meanwhile carries the virtual meters' radio.
            self.broker = MosquittoBroker(self.data_dir / "mosquitto")
            await asyncio.to_thread(self.broker.start)
            await asyncio.to_thread(self.broker.add_gateway, GATEWAY_ID)
            self.say(
                f"  broker      private Mosquitto on {self.broker.host}:{self.broker.port} (ACL per gateway)"
            )
            settings = _demo_settings(self.base, self.data_dir, self.broker, self.api_url)

            # The last day replays at `speed`, then the clock runs at real time: readings keep arriving
            # and none is stamped in the future.
            clock = SimulationClock(
                start=dt.datetime.now(dt.UTC) - LIVE_REPLAY,
                speed=self.options.speed,
                catch_up_to_wall_clock=True,
            )
            self.radio = VirtualRadio()
            await self.radio.start()
            stories = [load_story(name) for name in self.options.stories]
            self.simulation = Simulation(
                self.radio,
                clock,
                stories,
                patients=self.options.patients,
                history_days=self.options.history_days,
                fixed_passkey=DEMO_PASSKEY,
            )
            await self.simulation.setup()
            held = sum(_meter_records(m) for p in self.simulation.patients for m in p.meters)
            self.say(
                f"  meters      {sum(len(p.meters) for p in self.simulation.patients)} virtual meters holding "
                f"{held} readings from the last {self.options.history_days} days"
            )

            await self._enrol_and_pair(settings)

            self.server = await build_clinic_server(settings, jwt_secret=secrets.token_urlsafe(32))
            tasks.append(asyncio.create_task(self.server.serve(server_stop, host="127.0.0.1", port=port)))
            gateway_settings = _gateway_settings(settings, self.broker)
            gateway = Gateway(
                gateway_options(gateway_settings),
                default_collector(now=clock.now),
                scanner_backend=self.radio.scanner_backend,
                client_backend=self.radio.client_backend,
            )
            tasks.append(asyncio.create_task(gateway.run(stop)))
            if not self.options.until_synced:
                # Patients keep measuring; with --until-synced the meters hold only their history, so
                # "every reading the meters held is stored" is a fixed target.
                self.simulation.start()
            self._where_to_look(settings)
            return await self._watch(stop, clock)
        finally:
            stop.set()
            server_stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 30)
            if self.simulation is not None:
                await self.simulation.stop()
            if self.radio is not None:
                await self.radio.close()
            if self.broker is not None:
                await asyncio.to_thread(self.broker.stop)

    async def _enrol_and_pair(self, settings: Settings) -> None:
        """What a clinic administrator and an installer do: accounts, patients, gateway, pairing."""
        assert self.simulation is not None and self.radio is not None and self.broker is not None
        database = await asyncio.to_thread(open_clinic_database, settings)
        try:
            await self._enrol_and_pair_with(settings, database.sessions)
        finally:
            database.close()

    async def _enrol_and_pair_with(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        assert self.simulation is not None and self.radio is not None and self.broker is not None
        await asyncio.to_thread(self._enrol, settings, sessions)
        gateway_state = settings.data_dir / "gateway"
        gateway_state.mkdir(parents=True, exist_ok=True)
        bindings = Bindings(gateway_state / "bindings.json", GATEWAY_ID).load()
        for simulated in self.simulation.patients:
            patient_id = simulated.patient.patient_id
            for meter in simulated.meters:
                profile_kind = (
                    MeterProfile.GLUCOSE
                    if isinstance(meter, VirtualGlucoseMeter)
                    else MeterProfile.BLOOD_PRESSURE
                )
                paired = await asyncio.wait_for(
                    pair(
                        bindings,
                        meter.address,
                        profile=profile_kind,
                        patient_id=patient_id,
                        passkey=DEMO_PASSKEY,
                        client_backend=self.radio.client_backend,
                    ),
                    PAIRING_TIMEOUT_S,
                )
                identity = _identity(meter)
                if identity.meter_key != paired.meter_key:
                    raise DemoError(
                        f"meter {meter.address} paired as {paired.meter_key}, expected {identity.meter_key}"
                    )
                await asyncio.to_thread(_bind, sessions, identity, MeterKind(profile_kind.value), patient_id)
        await asyncio.to_thread(self._publish_config, sessions)
        self.say(
            f"  gateway     {GATEWAY_ID}: {len(bindings.meters)} meters bonded and bound to "
            f"{len(self.simulation.patients)} patients; bindings published on its retained config topic"
        )

    def _publish_config(self, sessions: sessionmaker[Session]) -> None:
        assert self.broker is not None
        clinic_user, clinic_password = self.broker.credentials("clinic")
        config = ClinicRepository(sessions).gateway_config(GATEWAY_ID, issued_at=dt.datetime.now(dt.UTC))
        publish_gateway_config(
            config,
            host=self.broker.host,
            port=self.broker.port,
            username=clinic_user,
            password=clinic_password,
        )

    def _enrol(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        """The clinic, a doctor, a nurse and an administrator, the patients and the gateway (argon2
        hashes: slow)."""
        assert self.simulation is not None
        profile = GuidelineProfile(settings.alerts.profile)
        with sessions() as session:
            add_clinic(
                session, CLINIC_ID, "Demo Community Health Centre 示范社区卫生服务中心", profile=profile
            )
            for user_id, email, name, role in DEMO_ACCOUNTS:
                add_user(
                    session,
                    clinic_id=CLINIC_ID,
                    user_id=user_id,
                    email=email,
                    display_name=name,
                    roles=[role],
                    password=self.passwords[email],
                )
            for index, simulated in enumerate(self.simulation.patients):
                family, given = DEMO_NAMES[index % len(DEMO_NAMES)]
                add_patient(
                    session,
                    clinic_id=CLINIC_ID,
                    patient_id=simulated.patient.patient_id,
                    given_name=given,
                    family_name=family,
                    family_doctor_id="dr-demo",
                    staff_ids=["nurse-demo"],
                )
                if simulated.patient.story.name in INSULIN_STORIES:
                    # What the family doctor would record: the web app shows it under Targets, and
                    # DQ-01 then flags this patient after 3 days without a reading instead of 7.
                    session.add(PatientTargets(patient_id=simulated.patient.patient_id, on_insulin=True))
            add_gateway(session, clinic_id=CLINIC_ID, gateway_id=GATEWAY_ID)
            session.commit()

    def _where_to_look(self, settings: Settings) -> None:
        url = self.api_url
        self.say("")
        self.say("Where to look")
        self.say(f"  web app     {url}/app/   sign in as {DOCTOR_EMAIL} / {self.doctor_password}")
        self.say(
            f"              nurse (clinic staff, on every care team): {NURSE_EMAIL} / {self.passwords[NURSE_EMAIL]}"
        )
        self.say(f"              clinic administrator: {ADMIN_EMAIL} / {self.passwords[ADMIN_EMAIL]}")
        self.say(f"  API docs    {url}/docs")
        self.say(
            "  readings    TOKEN=$(curl -s -d 'username="
            + DOCTOR_EMAIL
            + "&password="
            + self.doctor_password
            + f"' {url}/api/v1/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
        )
        first = self.simulation.patients[0].patient.patient_id if self.simulation else "vp-0001"
        for kind in ("blood_pressure", "glucose"):
            self.say(
                f'              curl -s -H "Authorization: Bearer $TOKEN" '
                f"'{url}/api/v1/patients/{first}/readings?kind={kind}'"
            )
        self.say(f'  alerts      curl -s -H "Authorization: Bearer $TOKEN" {url}/api/v1/alerts')
        self.say(f"  data        {settings.reading_store_path} (readings), {settings.clinic_database_url}")
        self.say(f"  gateway     {settings.data_dir / 'gateway'} (outbox, bindings, status.json)")
        self.say(
            f"  simulation  {self.options.speed:g}x real time; stories: {', '.join(self.options.stories)}"
        )
        self.say(
            "Press Ctrl-C to stop."
            if self.options.duration_s is None and not self.options.until_synced
            else ""
        )

    async def _watch(self, stop: asyncio.Event, clock: SimulationClock) -> DemoResult:
        assert self.server is not None and self.simulation is not None
        started = time.monotonic()
        last = ""
        while not stop.is_set():
            held = sum(_meter_records(m) for p in self.simulation.patients for m in p.meters)
            counters = self.server.ingest.counters() if self.server.ingest else None
            stored = counters.readings_stored if counters else 0
            alerts = len(await asyncio.to_thread(self.server.engine.repo.unresolved, CLINIC_ID))
            line = (
                f"  [{clock.now():%Y-%m-%d %H:%M} simulated] readings on meters {held}, stored {stored}, "
                f"open alerts {alerts}"
            )
            if line != last:
                self.say(line)
                last = line
            if self.options.until_synced and stored >= held:
                break
            if self.options.duration_s is not None and time.monotonic() - started >= self.options.duration_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROGRESS_INTERVAL_S)
        counters = self.server.ingest.counters() if self.server.ingest else None
        return DemoResult(
            readings_on_meters=sum(_meter_records(m) for p in self.simulation.patients for m in p.meters),
            readings_stored=counters.readings_stored if counters else 0,
            duplicates=counters.readings_duplicate if counters else 0,
            open_alerts=len(await asyncio.to_thread(self.server.engine.repo.unresolved, CLINIC_ID)),
            api_url=self.api_url,
        )

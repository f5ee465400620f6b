"""The clinic and its gateways as real processes, shared by the fault scenarios.

- a private Mosquitto (`vitalgate.mosquitto.MosquittoBroker`; persistence on, autosaved every
  second, at most `QUEUED_MESSAGES` messages queued per client: the broker drops beyond that, and
  scenario 5 needs the limit within reach);
- a `BlackHoleProxy` between every gateway and the broker (scenario 8);
- a real influxd behind the test shim, whose every accepted write is counted per reading
  (`CountingInflux`): the store's WRITES for the ledger, since InfluxDB keeps one point per series
  and time whatever is written;
- the clinic server `vitalgate api` (ingest with a persistent session, the alert engine, the API and
  the MQTT alert channel) in its own process, stopped with SIGKILL for a crash;
- a clinic database (SQLite file) with one clinic and, per home, a gateway and one patient per meter;
- an `Observer`: a subscriber beside ingest that counts every PUBLISH of readings, every
  application ack, and every alert notification.

Every scenario adds a `Home` of its own (its own gateway id and patients), so scenarios share these
processes without reading each other's figures.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.models import GuidelineProfile, MeterKind, UserRole
from testbed import influxdb as influx_fixture
from testbed.influxdb import InfluxServer
from tests.faults.ledger import Ledger
from tests.faults.meters import ABNORMAL_RULE, Home
from tests.faults.proxy import BlackHoleProxy
from vitalgate.administration import add_clinic, add_gateway, add_patient, add_user, bind_meter
from vitalgate.mosquitto import MosquittoBroker, free_port

REPO = Path(__file__).resolve().parents[2]
CLINIC_ID = "c1"
DOCTOR_ID = "dr-faults"
DOCTOR_EMAIL = "dr-faults@c1.example"
DOCTOR_PASSWORD = "faults correct horse battery"
INFLUX_DATABASE = "vitalgate_faults"
INGEST_CLIENT_ID = "vitalgate-ingest-faults"
QUEUED_MESSAGES = 200
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
_READING_ID = re.compile(rb'reading_id="([0-9a-f]{32})"')
_homes = itertools.count(1)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


# -- the store: influxd behind a shim that counts what it writes ------------------------------------


class _CountingHandler(influx_fixture._ShimHandler):
    """The fixture's shim handler, counting the reading ids of every write influxd accepted (204)."""

    writes: Counter[str]
    unanswered: set[str]
    writes_lock: threading.Lock

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        connection = self.rfile
        self.rfile = io.BufferedReader(io.BytesIO(body))  # type: ignore[assignment]
        self._status = 0
        try:
            super().do_POST()
        finally:
            self.rfile = connection  # the next request on this keep-alive connection
        if urllib.parse.urlsplit(self.path).path == "/api/v2/write" and self._status != 0:
            ids = [m.decode() for m in _READING_ID.findall(body)]
            with self.writes_lock:
                if self._status == 204:
                    self.writes.update(ids)
                elif self._status == 503 and not self.faults.failed:
                    # influxd went away mid-request (the shim answers 503): applied or not, unknown.
                    self.unanswered.update(ids)


class CountingInflux(InfluxServer):
    """influxd plus the fixture's shim, with every accepted write counted per reading id."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: Counter[str] = Counter()
        self.unanswered: set[str] = set()
        self._writes_lock = threading.Lock()
        shim = self._shim
        writes, unanswered, lock = self.writes, self.unanswered, self._writes_lock

        def start() -> None:
            if shim._httpd is not None:
                return
            handler = type(
                "CountingShimHandler",
                (_CountingHandler,),
                {
                    "upstream_port": self.http_port,
                    "faults": shim.faults,
                    "query_faults": shim.query_faults,
                    "writes": writes,
                    "unanswered": unanswered,
                    "writes_lock": lock,
                },
            )
            shim._httpd = ThreadingHTTPServer(("127.0.0.1", shim.port), handler)
            shim._httpd.daemon_threads = True
            shim._thread = threading.Thread(target=shim._httpd.serve_forever, name="influx-shim", daemon=True)
            shim._thread.start()

        shim.start = start  # type: ignore[method-assign]

    def writes_of(self, ids: Iterable[str]) -> Counter[str]:
        wanted = set(ids)
        with self._writes_lock:
            return Counter({rid: n for rid, n in self.writes.items() if rid in wanted})

    def unanswered_of(self, ids: Iterable[str]) -> set[str]:
        with self._writes_lock:
            return self.unanswered & set(ids)

    def rows_of(self, home: Home) -> Counter[str]:
        """Points per reading id in the store, for the home's patients (one query, straight to influxd)."""
        rows: Counter[str] = Counter()
        pattern = re.escape(home.gateway_id + "-p")
        answer = self.query(
            f'SELECT "reading_id" FROM "glucose" WHERE "patient_id" =~ /^{pattern}/', INFLUX_DATABASE
        )
        for result in answer.get("results", []):  # type: ignore[union-attr]
            for series in result.get("series", []):
                rows.update(value[1] for value in series["values"])
        return rows


# -- the clinic server process ------------------------------------------------------------------------


class ClinicProcess:
    """`vitalgate api` (ingest, alert engine, API, MQTT alert channel) as a process of its own."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env, self.port, self.log_path = env, port, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vitalgate.cli", "--log-format", "json", "api", "--port", str(self.port)],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.running:
                raise AssertionError(f"vitalgate api exited: {self.log_tail()}")
            try:
                return self.metrics().get("vitalgate_ingest_connected") == 1.0
            except OSError:
                return False

        wait_for(ready, START_TIMEOUT_S, "vitalgate api to serve and ingest to connect", 0.2)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else int(self.process.returncode)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# -- a gateway process ----------------------------------------------------------------------------------


class EdgeProcess:
    """`tests.faults.edge`: one home's gateway, killable with SIGKILL and restartable on its outbox."""

    def __init__(self, home: Home, directory: Path, args: list[str], outbox_dir: Path | None = None) -> None:
        self.home = home
        self.directory = directory
        self.outbox_path = (outbox_dir or directory) / "outbox.sqlite3"
        self.status_path = directory / "status.json"
        self.log_path = directory / "edge.log"
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> EdgeProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.edge",
                "--outbox",
                str(self.outbox_path),
                "--status-file",
                str(self.status_path),
                *self.args,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise

    def committed(self) -> int:
        """The number of readings the meters handed to the outbox so far ('committed N' lines)."""
        with contextlib.suppress(OSError):
            found = re.findall(rb"^committed (\d+)$", self.log_path.read_bytes(), re.MULTILINE)
            return int(found[-1]) if found else 0
        return 0

    def outbox(self) -> tuple[set[str], set[str], str]:
        """(held, acked as stored, integrity) read straight from the outbox file, as another process."""
        if not self.outbox_path.exists():
            return set(), set(), "ok"
        db = sqlite3.connect(self.outbox_path, timeout=10)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "delivered" not in tables:
                return set(), set(), "ok"
            held = {r[0] for r in db.execute("SELECT reading_id FROM outbox")}
            acked = {r[0] for r in db.execute("SELECT reading_id FROM delivered WHERE outcome = 'stored'")}
            integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            db.close()
        return held, acked, integrity

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# -- the observer ----------------------------------------------------------------------------------------


class Observer:
    """Counts every readings PUBLISH, application ack and alert notification the broker delivers.

    A persistent session (clean start off, an hour's expiry), so deliveries queued while it was
    disconnected by a broker restart still reach it."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.published: Counter[str] = Counter()
        self.acked: Counter[str] = Counter()
        self.notifications: dict[tuple[str, str], set[str]] = {}  # (patient, rule) -> event ids of openings
        self.notification_deliveries: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"faults-observer-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(*broker.credentials("admin"))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect_async(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(30):
            raise TimeoutError("the observer did not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(
            [
                ("vitalgate/v1/gw/+/readings", 1),
                ("vitalgate/v1/gw/+/acks", 1),
                ("vitalgate/v1/clinic/+/alerts", 1),
            ]
        )

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return  # a poison payload (scenario 7): not a reading
        topic = message.topic
        with self._lock:
            if topic.endswith("/readings"):
                for reading in body.get("readings", []) if isinstance(body, dict) else []:
                    if isinstance(reading, dict) and isinstance(reading.get("reading_id"), str):
                        self.published[reading["reading_id"]] += 1
            elif topic.endswith("/acks"):
                self.acked.update(body.get("stored", []))
            elif topic.endswith("/alerts") and body.get("event") == "opened":
                key = (body["patient_id"], body["rule_id"])
                self.notifications.setdefault(key, set()).add(body["event_id"])
                self.notification_deliveries[body["event_id"]] += 1

    def counts(
        self, ids: set[str], patients: set[str]
    ) -> tuple[Counter[str], Counter[str], Counter[tuple[str, str]], Counter[str]]:
        with self._lock:
            published = Counter({r: n for r, n in self.published.items() if r in ids})
            acked = Counter({r: n for r, n in self.acked.items() if r in ids})
            events = {key: set(e) for key, e in self.notifications.items() if key[0] in patients}
            notifications = Counter({p: len(e) for p, e in events.items()})
            event_ids = set().union(*events.values()) if events else set()
            deliveries = Counter({e: n for e, n in self.notification_deliveries.items() if e in event_ids})
        return published, acked, notifications, deliveries

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the pipeline ----------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    directory: Path
    broker: MosquittoBroker
    proxy: BlackHoleProxy
    influx: CountingInflux
    clinic: ClinicProcess
    clinic_url: str
    observer: Observer | None = None

    # -- homes ---------------------------------------------------------------------------------------
    def add_home(self, count: int, *, patients: int = 4, rate: float = 0.0) -> Home:
        """A home of its own: broker account, gateway and patients with their meters bound. Its
        readings are measured `1/rate` seconds apart from now on (rate 0: 50 ms apart, ending now)."""
        step = 1.0 / rate if rate > 0 else 0.05
        t0 = time.time() if rate > 0 else time.time() - count * step
        home = Home(f"gw-f{next(_homes)}", patients, count, t0, step)
        self.broker.add_gateway(home.gateway_id)
        sessions = session_factory(create_clinic_engine(self.clinic_url))
        with sessions() as session:
            add_gateway(session, clinic_id=CLINIC_ID, gateway_id=home.gateway_id)
            for k in range(patients):
                add_patient(
                    session,
                    clinic_id=CLINIC_ID,
                    patient_id=home.patient_id(k),
                    given_name="Test",
                    family_name=f"Patient {k}",
                    family_doctor_id=DOCTOR_ID,
                )
                bind_meter(
                    session,
                    gateway_id=home.gateway_id,
                    device=home.device(k),
                    kind=MeterKind.GLUCOSE,
                    patient_id=home.patient_id(k),
                )
            session.commit()
        sessions.kw["bind"].dispose()
        return home

    def edge(
        self,
        home: Home,
        *,
        outbox_dir: Path | None = None,
        rate: float = 0.0,
        commit_batch: int = 50,
        forward_batch: int = 100,
        ack_timeout_s: float = 5.0,
        capacity: int = 100_000,
        via_proxy: bool = True,
        start: bool = True,
    ) -> EdgeProcess:
        username, password = self.broker.credentials(home.gateway_id)
        args = [
            "--gateway-id", home.gateway_id, "--host", self.broker.host,
            "--port", str(self.proxy.port if via_proxy else self.broker.port),
            "--username", username, "--password", password,
            "--patients", str(home.patients), "--count", str(home.count), "--t0", repr(home.t0), "--step", repr(home.step),
            "--rate", str(rate), "--commit-batch", str(commit_batch), "--forward-batch", str(forward_batch),
            "--ack-timeout", str(ack_timeout_s), "--capacity", str(capacity),
        ]  # fmt: skip
        process = EdgeProcess(home, self.directory / home.gateway_id, args, outbox_dir)
        return process.start() if start else process

    # -- the ledger ----------------------------------------------------------------------------------
    def alerts_opened(self, home: Home) -> Counter[tuple[str, str]]:
        """(patient, rule) -> alerts opened ('opened' events), per the clinic database."""
        patients = [home.patient_id(k) for k in range(home.patients)]
        db = sqlite3.connect(self.clinic_url.removeprefix("sqlite:///"), timeout=10)
        try:
            marks = ",".join("?" * len(patients))
            rows = db.execute(
                "SELECT a.patient_id, a.rule_id, count(*) FROM alert_events e JOIN alerts a"
                f" ON a.alert_id = e.alert_id WHERE e.event = 'opened' AND a.patient_id IN ({marks})"
                " GROUP BY a.patient_id, a.rule_id",
                patients,
            ).fetchall()
        finally:
            db.close()
        return Counter({(p, r): n for p, r, n in rows})

    def alert_history(self, patient_ids: Iterable[str]) -> list[str]:
        """Each alert event of these patients: patient, rule, severity, event, time (for a ledger note)."""
        patients = list(patient_ids)
        db = sqlite3.connect(self.clinic_url.removeprefix("sqlite:///"), timeout=10)
        try:
            marks = ",".join("?" * len(patients))
            rows = db.execute(
                "SELECT a.patient_id, a.rule_id, e.severity, e.event, e.at FROM alert_events e"
                f" JOIN alerts a ON a.alert_id = e.alert_id WHERE a.patient_id IN ({marks})"
                " ORDER BY a.patient_id, e.alert_event_id",
                patients,
            ).fetchall()
        finally:
            db.close()
        return [" ".join(str(v) for v in row) for row in rows]

    def ledger(
        self, scenario: str, home: Home, edge: EdgeProcess | None, *, check_alerts: bool = True
    ) -> Ledger:
        ids = set(home.reading_ids())
        abnormal = home.abnormal()
        assert self.observer is not None
        published, acked, notifications, deliveries = self.observer.counts(ids, home.patient_ids())
        ledger = Ledger(
            scenario=scenario,
            measured=ids,
            published=published,
            acked=acked,
            gateway_acked=None if edge is None else edge.outbox()[1],
            store_rows=self.influx.rows_of(home),
            store_writes=self.influx.writes_of(ids),
            store_writes_unanswered=self.influx.unanswered_of(ids),
            abnormal=abnormal,
            abnormal_rule=ABNORMAL_RULE,
            patients=home.patient_ids(),
            alerts_opened=self.alerts_opened(home),
            notifications=notifications,
            notification_deliveries=deliveries,
            check_alerts=check_alerts,
        )
        wrong = {p for p, _r in [*ledger.alert_mismatches(), *ledger.notification_mismatches()]}
        if check_alerts and wrong:
            ledger.notes += [f"alert event: {row}" for row in self.alert_history(wrong)]
        return ledger

    def drain(self, home: Home, edge: EdgeProcess, timeout_s: float, *, alerts: bool = True) -> None:
        """Until the gateway holds nothing, every reading is acked to it, every abnormal reading has
        its alert and its notification; AssertionError (with what is missing) otherwise."""
        ids = set(home.reading_ids())
        patients = set(home.abnormal())
        assert self.observer is not None

        def drained() -> bool:
            held, acked, _ = edge.outbox()
            if held or not ids <= acked:
                return False
            if not alerts:
                return True
            _, _, notifications, _ = self.observer.counts(ids, patients)  # type: ignore[union-attr]
            wanted = {(p, ABNORMAL_RULE) for p in patients}
            return set(self.alerts_opened(home)) >= wanted and set(notifications) >= wanted

        try:
            wait_for(drained, timeout_s, f"{home.gateway_id} to drain", 0.25)
        except AssertionError as exc:
            held, acked, _ = edge.outbox()
            raise AssertionError(
                f"{exc}: {len(held)} held, {len(ids - acked)} of {len(ids)} not acked to the gateway;"
                f"\nledger so far:\n{self.ledger('not drained', home, edge).table()}"
                f"\ngateway log:\n{edge.log_tail()}\nclinic log:\n{self.clinic.log_tail()}"
            ) from exc


def seed_clinic(url: str) -> None:
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session:
        add_clinic(session, CLINIC_ID, "Faults Practice", profile=GuidelineProfile.EU)
        add_user(
            session,
            clinic_id=CLINIC_ID,
            user_id=DOCTOR_ID,
            email=DOCTOR_EMAIL,
            display_name="Dr Faults",
            roles=[UserRole.FAMILY_DOCTOR],
            password=DOCTOR_PASSWORD,
        )
        session.commit()
    sessions.kw["bind"].dispose()


def clinic_env(
    directory: Path, broker: MosquittoBroker, influx: InfluxServer, clinic_url: str
) -> dict[str, str]:
    ingest_user, ingest_password = broker.credentials("ingest")
    clinic_user, clinic_password = broker.credentials("clinic")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VITALGATE_DATA_DIR": str(directory / "clinic-data"),
        "VITALGATE_LOG_LEVEL": "INFO",
        "VITALGATE_MQTT__HOST": broker.host,
        "VITALGATE_MQTT__PORT": str(broker.port),
        "VITALGATE_MQTT__USERNAME": ingest_user,
        "VITALGATE_MQTT__PASSWORD": ingest_password,
        "VITALGATE_MQTT__KEEPALIVE_S": "5",
        "VITALGATE_INGEST__CLIENT_ID": INGEST_CLIENT_ID,
        "VITALGATE_INGEST__SESSION_EXPIRY_S": "3600",
        "VITALGATE_STORAGE__READING_STORE": "influxdb",
        "VITALGATE_STORAGE__INFLUX_URL": influx.url,
        "VITALGATE_STORAGE__INFLUX_DATABASE": INFLUX_DATABASE,
        "VITALGATE_STORAGE__INFLUX_TIMEOUT_S": "5",
        "VITALGATE_STORAGE__CLINIC_DATABASE_URL": clinic_url,
        "VITALGATE_API__JWT_SECRET": "faults-secret-" + "x" * 40,
        "VITALGATE_ALERTS__MQTT_USERNAME": clinic_user,
        "VITALGATE_ALERTS__MQTT_PASSWORD": clinic_password,
        "VITALGATE_ALERTS__SWEEP_INTERVAL_S": "3600",
        "VITALGATE_ALERTS__RECENT_INTERVAL_S": "5",
    }


@contextlib.contextmanager
def pipeline(directory: Path) -> Any:
    """Start every shared part; yield the Pipeline; stop everything."""
    directory.mkdir(parents=True, exist_ok=True)
    broker = MosquittoBroker(
        directory / "mosquitto",
        max_queued_messages=QUEUED_MESSAGES,
        extra_config="autosave_interval 1\nsys_interval 1\nset_tcp_nodelay true",
    )
    broker.start()
    stack = contextlib.ExitStack()
    stack.callback(broker.stop)
    try:
        proxy = stack.enter_context(BlackHoleProxy(broker.host, broker.port))
        influx = CountingInflux()
        influx.start()
        stack.callback(influx.close)
        influx.create_database(INFLUX_DATABASE)
        clinic_url = f"sqlite:///{directory / 'clinic.sqlite3'}"
        seed_clinic(clinic_url)
        clinic = ClinicProcess(
            clinic_env(directory, broker, influx, clinic_url), free_port(), directory / "clinic.log"
        )
        p = Pipeline(directory, broker, proxy, influx, clinic, clinic_url)
        p.observer = Observer(broker)
        stack.callback(p.observer.close)
        clinic.start()
        stack.callback(clinic.stop)
        yield p
    finally:
        stack.close()

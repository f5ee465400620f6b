"""Meter-to-alert latency: a reading published by a gateway -> its alert event on the API's live stream.

The clinic server (`vitalgate api`: ingest, alert engine, API; SQLite reading store) runs in a process
of its own against a private Mosquitto; a family doctor follows `GET /api/v1/alerts/events` (server-
sent events) over HTTP. Gateways publish a steady background of in-range readings at `--rate`
readings a second (default 1,000, in messages of `--batch` readings), and among them, at
`--abnormal-every` seconds, one urgent reading (a level-2 hypoglycaemia, 40 mg/dL) of a patient of its
own. Latency = the moment its alert's `opened` event is read from the stream minus the moment its
message was handed to the broker (both clocks are this process's). Target: p99 < 300 ms.

    .venv/bin/python bench/meter_to_alert.py [--rate 1000] [--seconds 30] [--quick] [--replicas 2]

With `--replicas N` the clinic side is N `vitalgate ingest` processes on one shared subscription and N
`vitalgate api --no-ingest` (docs/scaling.md's production shape) on a throw-away PostgreSQL clinic
database and a private influxd (bench/replica_clinic.py), a doctor's live stream open on each API
replica; latency is to the first stream that shows the event, and each stream's own figures and the
alerts missing on any stream are printed too. Without PostgreSQL or influxd it prints why, "skipped".

Prints the figures; never asserts them (the target is printed beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head  # noqa: E402
from storage.clinic.models import GuidelineProfile, MeterKind, UserRole  # noqa: E402
from vitalgate.administration import add_clinic, add_gateway, add_patient, add_user, bind_meter  # noqa: E402
from vitalgate.mosquitto import MosquittoBroker, free_port  # noqa: E402
from vitals.identity import glucose_reading_id  # noqa: E402
from vitals.payload import ReadingsBatch  # noqa: E402
from vitals.readings import DeviceIdentity, GlucoseReading  # noqa: E402
from vitals.topics import readings_topic  # noqa: E402

if TYPE_CHECKING:
    from replica_clinic import Replicas

TARGET_P99_MS = 300.0
GATEWAY = "gw-bench"
EMAIL = "doctor@bench.example"
PASSWORD = secrets.token_urlsafe(16)
BACKGROUND_PATIENTS = 40


def meter(patient: str) -> DeviceIdentity:
    return DeviceIdentity(manufacturer="Bench Medical", model="GL-B", serial_number=f"m-{patient}")


def seed(url: str, patients: list[str]) -> None:
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session:
        add_clinic(session, "c1", "Bench Clinic", profile=GuidelineProfile.EU)
        add_user(
            session, clinic_id="c1", user_id="dr-bench", email=EMAIL, display_name="Dr Bench",
            roles=[UserRole.FAMILY_DOCTOR], password=PASSWORD,
        )  # fmt: skip
        add_gateway(session, clinic_id="c1", gateway_id=GATEWAY)
        for patient in patients:
            add_patient(
                session, clinic_id="c1", patient_id=patient, given_name="Bench", family_name=patient,
                family_doctor_id="dr-bench",
            )  # fmt: skip
            bind_meter(
                session, gateway_id=GATEWAY, device=meter(patient), kind=MeterKind.GLUCOSE, patient_id=patient
            )
        session.commit()
    sessions.kw["bind"].dispose()


def reading(patient: str, n: int, at: datetime, value: float) -> GlucoseReading:
    device = meter(patient)
    return GlucoseReading(
        reading_id=glucose_reading_id(device, n % 0x10000, at.replace(tzinfo=None)),
        device=device,
        patient_id=patient,
        measured_at=at,
        device_time=at.replace(tzinfo=None),
        sequence_number=n % 0x10000,
        unit="mg/dL",
        glucose=value,
    )


class AlertStream:
    """The doctor's live stream: the time each patient's first `opened` event was read."""

    def __init__(self, base_url: str, token: str) -> None:
        self.opened: dict[str, float] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base_url, token), daemon=True)
        self._thread.start()

    def _run(self, base_url: str, token: str) -> None:
        try:
            self._read(base_url, token)
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise  # the stream ended before the bench did

    def _read(self, base_url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        with (
            httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream("GET", "/api/v1/alerts/events", headers=headers) as response,
        ):
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("data: "):
                    now = time.time()
                    event = json.loads(line[len("data: ") :])
                    if event.get("event") == "opened":
                        self.opened.setdefault(event["patient_id"], now)

    def close(self) -> None:
        self._stop.set()


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("vitalgate api exited while starting")
        try:
            with urllib.request.urlopen(url + "/metrics", timeout=2) as answer:
                if b"vitalgate_ingest_connected 1" in answer.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling the server's start
    raise RuntimeError("vitalgate api did not start")


def publish_load(
    publisher: mqtt.Client,
    rate: float,
    seconds: float,
    batch: int,
    abnormal_every_s: float,
    urgent: list[str],
) -> tuple[dict[str, float], float, int]:
    """The background load with an urgent reading every `abnormal_every_s`; when each urgent one was
    handed to the broker, the seconds the load took, and the messages sent."""
    background = [f"bg-{i}" for i in range(BACKGROUND_PATIENTS)]
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    messages = int(seconds * rate / batch)
    now = datetime.now(UTC)
    next_urgent = 0
    for m in range(messages):
        due = start + m * batch / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the publisher's pace
        at = now + timedelta(seconds=m * batch / rate)
        readings = [
            reading(background[(m * batch + j) % BACKGROUND_PATIENTS], m * batch + j, at, 100.0 + j % 40)
            for j in range(batch)
        ]
        urgent_now = next_urgent < len(urgent) and time.monotonic() - start >= next_urgent * abnormal_every_s
        if urgent_now:
            patient = urgent[next_urgent]
            readings[-1] = reading(patient, 0, at, 40.0)
            next_urgent += 1
        payload = ReadingsBatch(gateway_id=GATEWAY, sent_at=datetime.now(UTC), readings=tuple(readings))
        publisher.publish(readings_topic(GATEWAY), payload.model_dump_json(), qos=1)
        if urgent_now:
            sent_at[patient] = time.time()
    return sent_at, time.monotonic() - start, messages


def gateway_publisher(broker: MosquittoBroker) -> mqtt.Client:
    publisher = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=GATEWAY, protocol=MQTTProtocolVersion.MQTTv5
    )
    publisher.username_pw_set(*broker.credentials(GATEWAY))
    publisher.max_inflight_messages_set(1000)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    return publisher


def spread(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in ms (nan when there are none)."""
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


def run(rate: float, seconds: float, batch: int, abnormal_every_s: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="vitalgate-meter-to-alert-"))
    abnormal_count = int(seconds / abnormal_every_s)
    background = [f"bg-{i}" for i in range(BACKGROUND_PATIENTS)]
    urgent = [f"urgent-{i}" for i in range(abnormal_count)]
    clinic_url = f"sqlite:///{root / 'clinic.sqlite3'}"
    seed(clinic_url, background + urgent)
    broker = MosquittoBroker(root / "mosquitto")
    broker.add_gateway(GATEWAY)
    broker.start()
    port = free_port()
    ingest_user, ingest_password = broker.credentials("ingest")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VITALGATE_DATA_DIR": str(root / "data"),
        "VITALGATE_LOG_LEVEL": "WARNING",
        "VITALGATE_MQTT__HOST": broker.host,
        "VITALGATE_MQTT__PORT": str(broker.port),
        "VITALGATE_MQTT__USERNAME": ingest_user,
        "VITALGATE_MQTT__PASSWORD": ingest_password,
        "VITALGATE_INGEST__CLIENT_ID": "bench-meter-to-alert",
        "VITALGATE_STORAGE__CLINIC_DATABASE_URL": clinic_url,
        "VITALGATE_API__JWT_SECRET": secrets.token_urlsafe(40),
        "VITALGATE_ALERTS__SWEEP_INTERVAL_S": "3600",
    }
    log = (root / "api.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "vitalgate.cli", "api", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    stream: AlertStream | None = None
    publisher: mqtt.Client | None = None
    try:
        wait_http(base, server)
        stream = AlertStream(base, doctor_token(base))
        if not stream.connected.wait(30):
            raise RuntimeError("the live stream did not open")
        publisher = gateway_publisher(broker)
        sent_at, elapsed, messages = publish_load(publisher, rate, seconds, batch, abnormal_every_s, urgent)
        wait_opened([stream], sent_at)
        latencies = [(stream.opened[p] - sent_at[p]) * 1000 for p in sent_at if p in stream.opened]
        return {
            "published_per_s": messages * batch / elapsed,
            "urgent": float(len(sent_at)),
            "missing": float(len(sent_at) - len(latencies)),
            **spread(latencies),
        }
    finally:
        if stream is not None:
            stream.close()
        if publisher is not None:
            publisher.disconnect()
            publisher.loop_stop()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def doctor_token(base: str) -> str:
    answer = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": EMAIL, "password": PASSWORD}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def wait_opened(streams: list[AlertStream], sent_at: dict[str, float], timeout_s: float = 30.0) -> None:
    """Until every stream has read every urgent reading's `opened` event, or `timeout_s` (a background
    patient's alert may be among those read, so the patients are counted, not the events)."""
    deadline = time.monotonic() + timeout_s
    while any(p not in s.opened for s in streams for p in sent_at) and time.monotonic() < deadline:
        time.sleep(0.1)  # the last alerts' events


def run_replicas(
    rate: float, seconds: float, batch: int, abnormal_every_s: float, count: int
) -> dict[str, Any]:
    """The same load through `count` ingest and `count` API replicas on PostgreSQL and InfluxDB, a
    doctor's live stream open on every API replica."""
    from replica_clinic import postgres_database, replicas

    from testbed.influxdb import InfluxServer

    root = Path(tempfile.mkdtemp(prefix="vitalgate-meter-to-alert-replicas-"))
    urgent = [f"urgent-{i}" for i in range(int(seconds / abnormal_every_s))]
    streams: list[AlertStream] = []
    publisher: mqtt.Client | None = None
    broker = MosquittoBroker(root / "mosquitto")
    try:
        with postgres_database() as clinic_url, InfluxServer(root / "influxd") as influx:
            seed(clinic_url, [f"bg-{i}" for i in range(BACKGROUND_PATIENTS)] + urgent)
            broker.add_gateway(GATEWAY)
            broker.start()
            with replicas(root, broker, clinic_url, influx, count) as running:
                token = doctor_token(running.base_urls[0])
                streams = [AlertStream(base, token) for base in running.base_urls]
                try:
                    if not all(stream.connected.wait(30) for stream in streams):
                        raise RuntimeError("a live stream did not open")
                    publisher = gateway_publisher(broker)
                    warm_up(publisher, running)
                    sent_at, elapsed, messages = publish_load(
                        publisher, rate, seconds, batch, abnormal_every_s, urgent
                    )
                    wait_opened(streams, sent_at)
                finally:
                    for stream in streams:
                        stream.close()  # before the servers stop: their end of the stream is expected
            received = running.messages_received()  # the counts each ingest logged as it stopped
    finally:
        if publisher is not None:
            publisher.disconnect()
            publisher.loop_stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    first = [
        min(s.opened[p] for s in streams if p in s.opened) - sent_at[p]
        for p in sent_at
        if any(p in s.opened for s in streams)
    ]
    return {
        "published_per_s": messages * batch / elapsed,
        "urgent": float(len(sent_at)),
        "missing": float(sum(1 for p in sent_at if any(p not in s.opened for s in streams))),
        **spread([latency * 1000 for latency in first]),
        "streams": [
            {
                "missing": sum(1 for p in sent_at if p not in s.opened),
                **spread([(s.opened[p] - sent_at[p]) * 1000 for p in sent_at if p in s.opened]),
            }
            for s in streams
        ],
        "received": received,
    }


def warm_up(publisher: mqtt.Client, running: Replicas, timeout_s: float = 60.0) -> None:
    """Single in-range readings until every ingest replica has taken messages of the shared
    subscription (each is connected and subscribed); an hour before the load's readings."""
    at = datetime.now(UTC) - timedelta(hours=1)
    deadline = time.monotonic() + timeout_s
    n = 0
    while not all(running.messages_received()):
        running.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError("an ingest replica took no message")
        sample = reading(f"bg-{n % BACKGROUND_PATIENTS}", n, at + timedelta(seconds=n), 110.0)
        payload = ReadingsBatch(gateway_id=GATEWAY, sent_at=datetime.now(UTC), readings=(sample,))
        publisher.publish(readings_topic(GATEWAY), payload.model_dump_json(), qos=1)
        n += 1
        time.sleep(0.2)  # a gateway's pace; the counters are logged every second


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="readings a second, background included")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=10, help="readings per MQTT message")
    ap.add_argument("--abnormal-every", type=float, default=0.5, help="seconds between urgent readings")
    ap.add_argument("--quick", action="store_true", help="a short run that checks the bench works")
    ap.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="2 or more: ingest and API replicas on PostgreSQL and InfluxDB",
    )
    args = ap.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    if args.replicas > 1:
        return main_replicas(args.rate, seconds, args.batch, args.abnormal_every, args.replicas)
    print(
        f"meter-to-alert: {args.rate:,.0f} readings/s for {seconds:.0f} s in messages of {args.batch}, an urgent "
        f"reading every {args.abnormal_every} s; published -> alert event on the live stream (SSE)"
    )
    figures = run(args.rate, seconds, args.batch, args.abnormal_every)
    met = "met" if figures["p99_ms"] < TARGET_P99_MS and figures["missing"] == 0 else "MISSED"
    print(f"  published: {figures['published_per_s']:,.0f} readings/s; urgent readings: {figures['urgent']:.0f}, "
          f"without an alert event: {figures['missing']:.0f}")  # fmt: skip
    print(
        f"  meter-to-alert latency: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, max "
        f"{figures['max_ms']:.0f} ms (target p99 < {TARGET_P99_MS:.0f} ms: {met})"
    )
    return 0


def main_replicas(rate: float, seconds: float, batch: int, abnormal_every_s: float, count: int) -> int:
    from replica_clinic import absent_reason

    label = f"({count} replicas, PostgreSQL, InfluxDB)"
    print(
        f"meter-to-alert {label}: {count} `vitalgate ingest` on one shared subscription and {count} `vitalgate "
        f"api --no-ingest` (docs/scaling.md's production shape), {rate:,.0f} readings/s for {seconds:.0f} s in "
        f"messages of {batch}, an urgent reading every {abnormal_every_s} s; published -> alert event on the "
        "first of the live streams (SSE), one open on each API replica"
    )
    reason = absent_reason()
    if reason is not None:
        print(f"  meter-to-alert latency {label}: skipped, {reason} (target p99 < {TARGET_P99_MS:.0f} ms)")
        return 0
    figures = run_replicas(rate, seconds, batch, abnormal_every_s, count)
    met = "met" if figures["p99_ms"] < TARGET_P99_MS and figures["missing"] == 0 else "MISSED"
    taken = ", ".join(f"ingest-{n} {m:,}" for n, m in enumerate(figures["received"], start=1))
    print(f"  published: {figures['published_per_s']:,.0f} readings/s; messages taken: {taken}; urgent readings: "
          f"{figures['urgent']:.0f}, without an alert event on every stream: {figures['missing']:.0f}")  # fmt: skip
    for n, stream in enumerate(figures["streams"], start=1):
        print(f"  api-{n}'s stream: p50 {stream['p50_ms']:.0f} ms, p99 {stream['p99_ms']:.0f} ms, max "
              f"{stream['max_ms']:.0f} ms; alerts missing on it: {stream['missing']}")  # fmt: skip
    print(
        f"  meter-to-alert latency {label}: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, max "
        f"{figures['max_ms']:.0f} ms (target p99 < {TARGET_P99_MS:.0f} ms: {met})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

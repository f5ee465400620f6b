"""Ingest throughput against a private Mosquitto, in one run: bare subscriber vs ingest (SQLite, InfluxDB).

For each consumer the same readings are first published into the consumer's persistent session
(QoS 1, publisher in its own process with a bounded in-flight window, broker `max_queued_messages`
raised so nothing is dropped), then the consumer connects and the bench times the drain:

  (a) bare: a paho subscriber that does nothing but count (QoS 1, automatic PUBACK);
  (b) ingest -> SQLite reading store (validation, bindings, one transaction per cycle, manual ack,
      application acks);
  (c) ingest -> InfluxDB 1.6 behind the /api/v2/write test shim (tests/fixtures/influxdb.py), when
      `influxd` is installed; influxd and the shim run in a process of their own, as a real
      InfluxDB would, so the shim's Python HTTP handling does not share ingest's GIL;
  (x N) with `--replicas N`: N bare processes, then N ingest processes into one SQLite file and
      into one InfluxDB database, each group on one shared subscription ($share/...), the scale-out
      path (DESIGN.md, Going past one machine); the ratio compares equal numbers of processes, each
      with its own GIL.

In the live mode the publisher is spawned and connected before the clock starts, and the clock
starts when it is let go: spawning it (a fresh interpreter importing this module) costs about a
second, which bench runs before 2026-11-23 timed, bare and ingest alike; the bare figure was
mostly that second. The garbage collector's start-up heap is frozen once (ingest.runtime), as an
ingest process does once wired; `--no-freeze` leaves it. docs/ingest.md has the figures.

Every consumer must receive every message (checked), so the figures are for a lossless stream. The
ratio ingest/bare is the number to track (reliability.md §(b): on a shared 2-core box absolute
figures drift with load; ratios against a baseline measured in the same run do not).

Usage: .venv/bin/python bench/ingest_throughput.py [--readings 50000] [--batch 100] [--no-influx]
       [--replicas 2] [--no-freeze] [--cycle 64] [--receive-maximum 100] [--fill-ms 0]
       [--awaiting 8]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import IngestConfig, IngestConsumer, PipelineParts, PipelineProcess, freeze_startup_heap
from ingest.pipeline_process import PartsFactory
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
from storage.clinic.models import MeterKind
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings.protocol import ReadingStore
from vitalgate.mosquitto import MosquittoBroker
from vitals.identity import blood_pressure_reading_id
from vitals.payload import ReadingsBatch
from vitals.readings import BloodPressureReading, DeviceIdentity
from vitals.topics import ALL_READINGS_FILTER, readings_topic, shared_subscription

GATEWAY_ID = "gw-bench"
CUFF = DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number="BENCH-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PUBLISH_INFLIGHT = 50  # publisher's bounded window of unacknowledged QoS 1 messages
DRAIN_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 30.0
SESSION_EXPIRY_S = 3600


def make_payloads(readings: int, batch: int) -> list[bytes]:
    sent_at = datetime.now(UTC)
    items = []
    for i in range(readings):
        device_time = (T0 + timedelta(seconds=30 * i)).replace(tzinfo=None)
        systolic, diastolic = 110.0 + i % 50, 70.0 + i % 20
        items.append(
            BloodPressureReading(
                reading_id=blood_pressure_reading_id(
                    CUFF,
                    device_time,
                    1,
                    systolic=systolic,
                    diastolic=diastolic,
                    mean_arterial=None,
                    pulse_bpm=68.0,
                ),
                device=CUFF,
                patient_id="p1",
                measured_at=device_time.replace(tzinfo=UTC),
                device_time=device_time,
                unit="mmHg",
                systolic=systolic,
                diastolic=diastolic,
                pulse_bpm=68.0,
                user_id=1,
                raw_hex="1e6e004600",
            )
        )
    return [
        ReadingsBatch(gateway_id=GATEWAY_ID, sent_at=sent_at, readings=tuple(items[i : i + batch]))
        .model_dump_json()
        .encode()
        for i in range(0, readings, batch)
    ]


def _publisher(
    host: str, port: int, username: str, password: str, payloads: list[bytes], ready: Any, go: Any
) -> None:
    """Runs in its own process: connects, reports ready, and on `go` publishes every payload, QoS 1
    with a bounded in-flight window, waiting for every PUBACK."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{time.monotonic_ns()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    ready.set()
    if not go.wait(DRAIN_TIMEOUT_S):
        raise RuntimeError("publisher was never let go")
    infos = [client.publish(readings_topic(GATEWAY_ID), payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(DRAIN_TIMEOUT_S)
    client.disconnect()
    client.loop_stop()


@dataclass(frozen=True)
class Publisher:
    """A publisher process, started and connected ahead of the timed window: spawning it (a fresh
    interpreter importing this module) takes about a second of CPU, which would otherwise be timed
    and shared with whichever consumer runs, the same for bare and ingest."""

    process: multiprocessing.process.BaseProcess
    go: Any

    def start_publishing(self) -> None:
        self.go.set()

    def join(self) -> None:
        self.process.join(DRAIN_TIMEOUT_S)
        if self.process.exitcode != 0:
            raise RuntimeError(f"publisher failed with exit code {self.process.exitcode}")


def start_publisher(broker: MosquittoBroker, payloads: list[bytes]) -> Publisher:
    """Spawn the publisher and wait until it is connected; it publishes on `start_publishing()`."""
    username, password = broker.credentials(GATEWAY_ID)
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    process = ctx.Process(
        target=_publisher, args=(broker.host, broker.port, username, password, payloads, ready, go)
    )
    process.start()
    if not ready.wait(CONNECT_TIMEOUT_S * 2):
        process.kill()
        raise RuntimeError("publisher did not connect")
    return Publisher(process, go)


def publish_all(broker: MosquittoBroker, payloads: list[bytes]) -> None:
    publisher = start_publisher(broker, payloads)
    publisher.start_publishing()
    publisher.join()


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    return props


class BareSubscriber:
    """(a) a paho v5 subscriber that only counts; QoS 1, persistent session, automatic PUBACK."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        topic_filter: str = ALL_READINGS_FILTER,
    ) -> None:
        self.received = 0
        self.done = threading.Event()
        self.expected = 0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    @classmethod
    def for_broker(cls, broker: MosquittoBroker, client_id: str) -> BareSubscriber:
        username, password = broker.credentials("ingest")
        return cls(broker.host, broker.port, username, password, client_id)

    def _on_message(self, *_: Any) -> None:
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    def connect(self) -> None:
        self._subscribed.clear()
        self._client.connect(
            self._host, self._port, keepalive=60, clean_start=False, properties=_connect_props()
        )
        self._client.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            raise RuntimeError("bare subscriber did not subscribe")

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True)
class Figure:
    name: str
    readings: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds


def run_bare(broker: MosquittoBroker, payloads: list[bytes], readings: int, *, live: bool) -> Figure:
    subscriber = BareSubscriber.for_broker(broker, f"bench-bare-{'live' if live else 'drain'}")
    subscriber.expected = len(payloads)
    subscriber.connect()  # creates the session and subscription
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        subscriber.disconnect()
        publish_all(broker, payloads)
        started = time.perf_counter()
        subscriber.connect()
    if not subscriber.done.wait(DRAIN_TIMEOUT_S):
        raise RuntimeError(f"bare subscriber got {subscriber.received} of {len(payloads)} messages")
    elapsed = time.perf_counter() - started
    if live:
        publisher.join()
    subscriber.disconnect()
    return Figure("bare paho subscriber", readings, elapsed)


@dataclass
class IngestWiring:
    """How a bench ingest consumer is put together: the pipeline in the consumer's process (a store
    and the clinic database), or in a child process of its own (`parts`, as `vitalgate ingest`
    runs by default; ingest.pipeline_process)."""

    store: ReadingStore | None = None
    clinic: ClinicRepository | None = None
    parts: PartsFactory | None = None
    _pipeline: PipelineProcess | None = None

    def consumer(self, config: IngestConfig) -> IngestConsumer:
        if self.parts is None:
            return IngestConsumer(config, self.store, self.clinic)
        if self._pipeline is None:
            self._pipeline = PipelineProcess(self.parts, binding_cache_ttl_s=config.binding_cache_ttl_s)
            self._pipeline.start()  # spawned and opened before any clock starts
        return IngestConsumer(config, pipeline=self._pipeline)

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None


def open_bench_pipeline_parts(kind: str, store: str, clinic_url: str) -> PipelineParts:
    """Runs in an ingest pipeline process: the bench's SQLite file or InfluxDB ("url database")."""
    from storage.readings.sqlite import SqliteReadingStore

    reading_store: ReadingStore
    if kind == "sqlite":
        reading_store = SqliteReadingStore(store)
    else:
        from storage.readings.influxdb import InfluxConfig, InfluxReadingStore

        url, database = store.split(" ")
        reading_store = InfluxReadingStore(InfluxConfig(url=url, database=database))
    engine = create_clinic_engine(clinic_url)

    def close() -> None:
        reading_store.close()
        engine.dispose()

    return PipelineParts(reading_store, ClinicRepository(session_factory(engine)), close)


def run_ingest(
    name: str,
    broker: MosquittoBroker,
    payloads: list[bytes],
    readings: int,
    wiring: IngestWiring,
    client_id: str,
    *,
    live: bool,
    overrides: dict[str, Any] | None = None,
) -> Figure:
    username, password = broker.credentials("ingest")
    config = IngestConfig(
        host=broker.host,
        port=broker.port,
        username=username,
        password=password,
        client_id=client_id,
        session_expiry_s=SESSION_EXPIRY_S,
    )
    if overrides:
        config = replace(config, **overrides)
    consumer = wiring.consumer(config)
    consumer.start()  # creates the session and subscription
    if not consumer.wait_subscribed(CONNECT_TIMEOUT_S):
        raise RuntimeError("ingest did not subscribe")
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        consumer.stop()
        publish_all(broker, payloads)
        consumer = wiring.consumer(config)
        started = time.perf_counter()
        consumer.start()
    done = _wait(lambda: consumer.counters().messages_acked >= len(payloads), DRAIN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if live:
        publisher.join()
    counters = consumer.counters()
    consumer.stop()
    wiring.close()
    if not done or counters.readings_stored != readings:
        raise RuntimeError(f"{name}: incomplete drain: {counters}")
    return Figure(name, readings, elapsed)


@dataclass(frozen=True)
class ReplicaSpec:
    """What one consumer process of a group runs: `kind` is "bare", "sqlite" or "influx"."""

    kind: str
    host: str
    port: int
    username: str
    password: str
    client_id: str
    group: str
    store: str  # SQLite file or InfluxDB "url database"
    clinic_url: str
    overrides: dict[str, Any]
    pipeline_process: bool = True


def _replica(spec: ReplicaSpec, slot: int, counts: Any, loaded: Any, go: Any, ready: Any, stop: Any) -> None:
    """One consumer of a group, in its own process (spawned): connects on `go`, publishes its count
    of settled messages (received by bare, acked by ingest) in `counts[slot]` until `stop`."""

    if spec.kind == "bare":
        subscriber = BareSubscriber(
            spec.host, spec.port, spec.username, spec.password, spec.client_id,
            shared_subscription(ALL_READINGS_FILTER, spec.group),
        )  # fmt: skip
        freeze_startup_heap()
        loaded.set()
        go.wait(DRAIN_TIMEOUT_S)
        subscriber.connect()
        ready.set()
        while not stop.wait(0.005):
            counts[slot] = subscriber.received
        subscriber.disconnect()
        return
    config = IngestConfig(
        host=spec.host,
        port=spec.port,
        username=spec.username,
        password=spec.password,
        client_id=spec.client_id,
        session_expiry_s=SESSION_EXPIRY_S,
        shared_group=spec.group,
    )
    config = replace(config, **spec.overrides)
    parts = functools.partial(open_bench_pipeline_parts, spec.kind, spec.store, spec.clinic_url)
    if spec.pipeline_process:
        wiring = IngestWiring(parts=parts)
    else:
        opened = parts()
        wiring = IngestWiring(opened.store, opened.clinic)  # type: ignore[arg-type]
    consumer = wiring.consumer(config)
    freeze_startup_heap()
    loaded.set()
    go.wait(DRAIN_TIMEOUT_S)
    consumer.start()
    if consumer.wait_subscribed(CONNECT_TIMEOUT_S):
        ready.set()
    while not stop.wait(0.005):
        counts[slot] = consumer.counters().messages_acked
    consumer.stop()
    counts[slot] = consumer.counters().messages_acked
    wiring.close()
    if not spec.pipeline_process:
        opened.close()


def run_group(
    name: str,
    broker: MosquittoBroker,
    payloads: list[bytes],
    readings: int,
    specs: list[ReplicaSpec],
    *,
    live: bool,
) -> Figure:
    """N consumer processes on one shared subscription ($share/...), bare or ingest alike, so the
    ratio compares equal numbers of processes (each Python process has one GIL; DESIGN.md, Going
    past one machine, scales ingest out this way). Drain: the group's sessions exist, the messages
    are queued round-robin into them (reliability.md §1.2), then the group connects; live: the
    group is connected and the publisher is let go. Timed until every message is settled."""
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.Array("q", len(specs), lock=False)

    def launch() -> tuple[list[Any], Any, list[Any], float]:
        """Start the processes, wait until each has imported and opened its store, then let them
        connect together; returns the processes, their stop event and readiness events, and the
        moment they were let go (start-up is not timed, as for the in-process consumers)."""
        stop, go = ctx.Event(), ctx.Event()
        processes, loadeds, readies = [], [], []
        for slot, spec in enumerate(specs):
            loaded, ready = ctx.Event(), ctx.Event()
            process = ctx.Process(target=_replica, args=(spec, slot, counts, loaded, go, ready, stop))
            process.start()
            processes.append(process)
            loadeds.append(loaded)
            readies.append(ready)
        for loaded in loadeds:
            if not loaded.wait(CONNECT_TIMEOUT_S * 2):
                raise RuntimeError(f"{name}: a consumer process did not start")
        go_at = time.perf_counter()
        go.set()
        return processes, stop, readies, go_at

    def subscribed(readies: list[Any]) -> None:
        for ready in readies:
            if not ready.wait(CONNECT_TIMEOUT_S):
                raise RuntimeError(f"{name}: a consumer process did not subscribe")

    def halt(processes: list[Any], stop: Any) -> None:
        stop.set()
        for process in processes:
            process.join(DRAIN_TIMEOUT_S)

    def settled() -> int:
        return int(sum(counts[:]))

    processes, stop, readies, _ = launch()  # creates every member's session in the share group
    subscribed(readies)
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        halt(processes, stop)
        for slot in range(len(specs)):
            counts[slot] = 0
        publish_all(broker, payloads)
        processes, stop, readies, started = launch()
    done = _wait(lambda: settled() >= len(payloads), DRAIN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if live:
        publisher.join()
    halt(processes, stop)
    if not done:
        raise RuntimeError(f"{name}: settled {settled()} of {len(payloads)} messages")
    return Figure(name, readings, elapsed)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def seed_clinic(directory: Path) -> ClinicRepository:
    url = f"sqlite:///{directory / 'clinic.sqlite3'}"
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Bench Practice")
        enrol_patient(session, patient_id="p1", clinic_id="c1", given_name="A", family_name="B")
        register_meter(session, clinic_id="c1", device=CUFF, kind=MeterKind.BLOOD_PRESSURE)
        register_gateway(session, gateway_id=GATEWAY_ID, clinic_id="c1", mqtt_password="unused")
        bind_meter(
            session, gateway_id=GATEWAY_ID, meter_key=CUFF.meter_key, patient_id="p1", device_user_id=1
        )
    return ClinicRepository(sessions)


def print_table(mode: str, figures: list[Figure]) -> None:
    bare = figures[0].per_second
    print(f"\n{mode}")
    print(f"  {'consumer':<24} {'seconds':>8} {'readings/s':>11} {'ratio/bare':>10}")
    for figure in figures:
        print(
            f"  {figure.name:<24} {figure.seconds:>8.2f} {figure.per_second:>11.0f} "
            f"{figure.per_second / bare:>10.2f}"
        )


def _influx_host(connection: Any, stop: Any) -> None:
    """Runs in its own process: a private influxd and the test shim, until `stop`.

    The shim (tests/fixtures/influxdb.py) stands in for the /api/v2/write endpoint that InfluxDB
    1.8+ serves itself; it is Python, so in the bench's process it would take the GIL from ingest
    for every write (reading and forwarding ~6 MB per cycle): that is the test rig's cost, not
    ingest's."""
    from tests.fixtures.influxdb import InfluxServer

    server = InfluxServer()
    try:
        server.start()
        connection.send(server.url)
        stop.wait(DRAIN_TIMEOUT_S * 4)
    finally:
        server.close()


def influx_server(stack: list[Callable[[], None]]) -> str | None:
    """A private influxd (with its shim, in a process of its own); returns its URL."""
    try:
        import storage.readings.influxdb  # noqa: F401 - the clinic extra is installed
        from tests.fixtures.influxdb import influxd_available
    except ImportError as exc:
        print(f"(c) skipped: {exc}")
        return None
    if not influxd_available():
        print("(c) skipped: influxd not installed (Debian package influxdb)")
        return None
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    stop = ctx.Event()
    process = ctx.Process(target=_influx_host, args=(theirs, stop))
    process.start()

    def halt() -> None:
        stop.set()
        process.join(CONNECT_TIMEOUT_S)

    stack.append(halt)
    if not ours.poll(CONNECT_TIMEOUT_S * 2):
        raise RuntimeError("influxd did not start")
    url: str = ours.recv()
    return url


def create_influx_database(url: str, database: str) -> None:
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{url}/query", data=body, timeout=CONNECT_TIMEOUT_S) as answer:
        if answer.status != HTTPStatus.OK:
            raise RuntimeError(f"CREATE DATABASE failed: HTTP {answer.status}")


def influx_store(stack: list[Callable[[], None]], url: str, database: str) -> ReadingStore:
    from storage.readings.influxdb import InfluxConfig, InfluxReadingStore

    create_influx_database(url, database)
    store = InfluxReadingStore(InfluxConfig(url=url, database=database))
    stack.append(store.close)
    return store


def run_groups(
    broker: MosquittoBroker,
    payloads: list[bytes],
    args: argparse.Namespace,
    directory: Path,
    influx: str | None,
    tag: str,
    overrides: dict[str, Any],
    *,
    live: bool,
) -> list[Figure]:
    """bare x N, ingest -> SQLite x N (one file), ingest -> InfluxDB x N (one database)."""
    username, password = broker.credentials("ingest")
    n = args.replicas

    def specs(kind: str, store: str) -> list[ReplicaSpec]:
        return [
            ReplicaSpec(
                kind=kind,
                host=broker.host,
                port=broker.port,
                username=username,
                password=password,
                client_id=f"bench-{kind}-{tag}-{i}",
                group=f"bench-{kind}-{tag}",
                store=store,
                clinic_url=f"sqlite:///{directory / 'clinic.sqlite3'}",
                overrides=overrides,
                pipeline_process=not args.in_process,
            )
            for i in range(n)
        ]

    figures = [
        run_group(f"bare paho subscriber x{n}", broker, payloads, args.readings, specs("bare", ""), live=live)
    ]
    sqlite_path = str(directory / f"readings-{tag}-x{n}.sqlite3")
    figures.append(
        run_group(
            f"ingest -> SQLite x{n}", broker, payloads, args.readings, specs("sqlite", sqlite_path), live=live
        )
    )
    if influx is not None:
        database = f"bench_{tag}_x{n}"
        create_influx_database(influx, database)
        figures.append(
            run_group(
                f"ingest -> InfluxDB x{n}",
                broker,
                payloads,
                args.readings,
                specs("influx", f"{influx} {database}"),
                live=live,
            )
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100, help="readings per MQTT message (<= 500)")
    parser.add_argument("--no-influx", action="store_true")
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="also run N bare and N ingest processes on a shared subscription (equal process counts)",
    )
    parser.add_argument(
        "--cycle", type=int, default=None, help="IngestConfig.max_messages_per_cycle (default: its default)"
    )
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=None,
        help="IngestConfig.receive_maximum (MQTT v5 Receive Maximum)",
    )
    parser.add_argument(
        "--fill-ms", type=float, default=None, help="IngestConfig.cycle_fill_s, in milliseconds"
    )
    parser.add_argument("--awaiting", type=int, default=None, help="IngestConfig.max_cycles_awaiting_ack")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run ingest's pipeline in the MQTT process, not in a pipeline process of its own",
    )
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the garbage collector as it is (no gc.freeze())"
    )
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.cycle is not None:
        overrides["max_messages_per_cycle"] = args.cycle
    if args.receive_maximum is not None:
        overrides["receive_maximum"] = args.receive_maximum
    if args.fill_ms is not None:
        overrides["cycle_fill_s"] = args.fill_ms / 1000
    if args.awaiting is not None:
        overrides["max_cycles_awaiting_ack"] = args.awaiting

    from storage.readings.sqlite import SqliteReadingStore

    directory = Path(tempfile.mkdtemp(prefix="vitalgate-bench-"))
    cleanup: list[Callable[[], None]] = []
    broker = MosquittoBroker(directory / "mosquitto", max_queued_messages=1_000_000)
    broker.add_gateway(GATEWAY_ID)
    broker.start()
    cleanup.append(broker.stop)
    try:
        payloads = make_payloads(args.readings, args.batch)
        size = sum(len(p) for p in payloads)
        print(
            f"{args.readings} readings in {len(payloads)} messages of {args.batch} "
            f"({size / len(payloads) / 1024:.1f} KiB each); mosquitto on 127.0.0.1:{broker.port}"
        )
        clinic = seed_clinic(directory)
        influx = None if args.no_influx else influx_server(cleanup)
        if not args.no_freeze:
            # What an ingest process does once wired (ingest.runtime); for bare and ingest alike.
            freeze_startup_heap()
        for live in (False, True):
            mode = "live: publisher running" if live else "drain: queued in the session, then consumed"
            tag = "live" if live else "drain"
            figures = [run_bare(broker, payloads, args.readings, live=live)]
            clinic_url = f"sqlite:///{directory / 'clinic.sqlite3'}"
            sqlite_path = str(directory / f"readings-{tag}.sqlite3")
            wiring = IngestWiring(
                parts=functools.partial(open_bench_pipeline_parts, "sqlite", sqlite_path, clinic_url)
            )
            if args.in_process:
                sqlite_store = SqliteReadingStore(sqlite_path)
                cleanup.append(sqlite_store.close)
                wiring = IngestWiring(sqlite_store, clinic)
            figures.append(
                run_ingest(
                    "ingest -> SQLite",
                    broker,
                    payloads,
                    args.readings,
                    wiring,
                    f"bench-sqlite-{tag}",
                    live=live,
                    overrides=overrides,
                )
            )
            if influx is not None:
                database = f"bench_{tag}"
                create_influx_database(influx, database)
                wiring = IngestWiring(
                    parts=functools.partial(
                        open_bench_pipeline_parts, "influx", f"{influx} {database}", clinic_url
                    )
                )
                if args.in_process:
                    wiring = IngestWiring(influx_store(cleanup, influx, database), clinic)
                figures.append(
                    run_ingest(
                        "ingest -> InfluxDB",
                        broker,
                        payloads,
                        args.readings,
                        wiring,
                        f"bench-influx-{tag}",
                        live=live,
                        overrides=overrides,
                    )
                )
            print_table(mode, figures)
            if args.replicas > 1:
                print_table(
                    f"{mode}; {args.replicas} processes each, one shared subscription",
                    run_groups(broker, payloads, args, directory, influx, tag, overrides, live=live),
                )
        return 0
    finally:
        for step in reversed(cleanup):
            step()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

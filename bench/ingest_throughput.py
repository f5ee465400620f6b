"""Ingest throughput against a private Mosquitto, in one run: bare subscriber vs ingest (SQLite, InfluxDB).

For each consumer the same readings are first published into the consumer's persistent session
(QoS 1, publisher in its own process with a bounded in-flight window, broker `max_queued_messages`
raised so nothing is dropped), then the consumer connects and the bench times the drain:

  (a) bare: a paho subscriber that does nothing but count (QoS 1, automatic PUBACK);
  (b) ingest -> SQLite reading store (validation, bindings, one transaction per cycle, manual ack,
      application acks);
  (c) ingest -> InfluxDB 1.6 behind the /api/v2/write test shim (testbed/influxdb.py), when
      `influxd` is installed; influxd and the shim run in a process of their own, as a real
      InfluxDB would, so the shim's Python HTTP handling does not share ingest's GIL;
  (n) naive: the consumer a user would otherwise write, the yardstick for big messages (the bare
      subscriber, which parses nothing, is none there): paho with manual acks, `json.loads`, one
      `executemany` per message into SQLite (WAL, synchronous=FULL, like ingest's store), no
      validation, the PUBACK after the commit; target: ingest at 100 readings per message at least as
      fast (ratio ingest/naive >= 1.0);
  (x N) with `--replicas N`: N bare processes, then N ingest processes into one SQLite file and
      into one InfluxDB database, each group on one shared subscription ($share/...), the scale-out
      path (DESIGN.md, Going past one machine); the ratio compares equal numbers of processes, each
      with its own GIL.

In the live mode the publisher is spawned and connected before the clock starts, and the clock
starts when it is let go: spawning it (a fresh interpreter importing this module) costs about a
second, which bench runs before 2026-11-23 timed, bare and ingest alike; the bare figure was
mostly that second. The garbage collector's start-up heap is frozen once (ingest.runtime), as an
ingest process does once wired; `--no-freeze` leaves it. docs/benchmarks.md has the figures (bench/run).

Every consumer must receive every message (checked), so the figures are for a lossless stream. The
ratio ingest/bare is the number to track (reliability.md §(b): on a shared 2-core box absolute
figures drift with load; ratios against a baseline measured in the same run do not). Each
consumer's persistent session is ended after its run, so no later run feeds a stale session.

One run measures every message size given (`--batch 1,2,100` by default: a cuff's measurement as it
is taken, a small sync, and the gateway's catch-up batch, gateway.uplink's batch_size). For each
size it also prints a CPU budget (`CpuBudget`): how much CPU per reading the machine's cores allow
for the target ratio, what the transport costs (measured in the bare drain) and what ingest's own
steps cost without MQTT (parse, SQLite write, InfluxDB write); from these, the highest ratio this
machine allows at that size. A summary table ends the run: every size and mode against the targets,
with that ceiling.

Usage: .venv/bin/python bench/ingest_throughput.py [--batch 1,2,100] [--readings N] [--no-influx]
       [--replicas 2] [--no-freeze] [--cycle 64] [--receive-maximum 100] [--fill-ms 0]
       [--awaiting 8] [--in-process]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import shutil
import sqlite3
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
from ingest.validation import InboundMessage, parse_message
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
from storage.clinic.models import MeterKind
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings.protocol import AnyReading, ReadingStore
from vitalgate.mosquitto import MosquittoBroker
from vitals.identity import blood_pressure_reading_id
from vitals.payload import MAX_READINGS_PER_BATCH, ReadingsBatch
from vitals.readings import BloodPressureReading, DeviceIdentity
from vitals.topics import ALL_READINGS_FILTER, readings_topic, shared_subscription

GATEWAY_ID = "gw-bench"
CUFF = DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number="BENCH-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PUBLISH_INFLIGHT = 50  # publisher's bounded window of unacknowledged QoS 1 messages
DRAIN_TIMEOUT_S = 600.0
TARGET_RATIO = 0.5  # ingest at least half as fast as the bare subscriber
TARGET_PER_S = 5_000  # at least 5,000 readings/s
TARGET_NAIVE_RATIO = 1.0  # ingest at 100 readings per message at least as fast as the naive consumer
NAIVE = "naive paho -> SQLite"
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


def end_sessions(broker: MosquittoBroker, client_ids: list[str]) -> None:
    """Discard consumers' persistent sessions once their run is over: a session left behind stays
    subscribed, and the broker would queue a copy of every later run's messages into it (extra
    broker work in every later run, and a backlog a later consumer with the same id would receive
    at once). A clean start with no session expiry ends the session with the connection."""
    username, password = broker.credentials("ingest")
    for client_id in client_ids:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(username, password)
        connected = threading.Event()
        client.on_connect = functools.partial(lambda event, *_: event.set(), connected)
        client.connect(broker.host, broker.port, keepalive=60, clean_start=True)
        client.loop_start()
        try:
            if not connected.wait(CONNECT_TIMEOUT_S):
                raise RuntimeError("could not end a bench session")
        finally:
            client.disconnect()
            client.loop_stop()


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
    # CPU seconds the consumer's process and the broker spent in the timed window (bare runs only).
    transport_cpu_s: float | None = None
    # Drain, ingest: CPU seconds per process in the timed window (MQTT process, pipeline, broker).
    cpu_s: dict[str, float] | None = None
    # Ingest: the most messages it held received and not yet acked (sampled every 5 ms), and the
    # Receive Maximum it asked the broker to keep to.
    held_peak: int | None = None
    receive_maximum: int | None = None

    def cpu_line(self) -> str | None:
        """Where the drain's CPU went, in µs per reading per process."""
        if not self.cpu_s:
            return None
        parts = ", ".join(f"{name} {s * 1e6 / self.readings:.1f}" for name, s in self.cpu_s.items())
        return f"    CPU µs/reading: {parts}"

    def held_line(self) -> str | None:
        if self.held_peak is None:
            return None
        return f"    held unacked: at most {self.held_peak} messages (Receive Maximum {self.receive_maximum})"

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds


def run_bare(broker: MosquittoBroker, payloads: list[bytes], readings: int, *, live: bool) -> Figure:
    client_id = f"bench-bare-{'live' if live else 'drain'}"
    subscriber = BareSubscriber.for_broker(broker, client_id)
    subscriber.expected = len(payloads)
    subscriber.connect()  # creates the session and subscription
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        subscriber.disconnect()
        publish_all(broker, payloads)
        # Drain: the transport's CPU per reading, for the budget (`CpuBudget`). The bare subscriber
        # runs in this process, whose main thread only waits meanwhile; plus the broker's.
        cpu_before = time.process_time() + process_cpu_s(broker.pid)
        started = time.perf_counter()
        subscriber.connect()
    if not subscriber.done.wait(DRAIN_TIMEOUT_S):
        raise RuntimeError(f"bare subscriber got {subscriber.received} of {len(payloads)} messages")
    elapsed = time.perf_counter() - started
    cpu_s = None if live else time.process_time() + process_cpu_s(broker.pid) - cpu_before
    if live:
        publisher.join()
    subscriber.disconnect()
    end_sessions(broker, [client_id])
    return Figure("bare paho subscriber", readings, elapsed, cpu_s)


class NaiveConsumer:
    """(n) the naive correct consumer: paho v5 with manual acks, `json.loads`, one `executemany` per
    message into SQLite (WAL, synchronous=FULL), no validation, the PUBACK only after the commit."""

    def __init__(self, broker: MosquittoBroker, client_id: str, path: Path) -> None:
        self.stored = 0
        self.received = 0
        self.expected = 0
        self.done = threading.Event()
        self._subscribed = threading.Event()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS readings (reading_id TEXT PRIMARY KEY, patient_id TEXT, kind TEXT,"
            " measured_at TEXT, reading TEXT)"
        )
        username, password = broker.credentials("ingest")
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._host, self._port = broker.host, broker.port

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, *_: Any) -> None:
        # Back to its session: the subscription is there, and its SUBACK would queue behind the
        # backlog this consumer handles one commit at a time in paho's thread.
        if flags.session_present:
            self._subscribed.set()
        else:
            client.subscribe(ALL_READINGS_FILTER, qos=1)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        batch = json.loads(message.payload)
        rows = [
            (r["reading_id"], r.get("patient_id"), r.get("kind"), r.get("measured_at"), json.dumps(r))
            for r in batch["readings"]
        ]
        self.db.execute("BEGIN")
        cursor = self.db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")
        self.stored += cursor.rowcount
        client.ack(message.mid, message.qos)
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
            raise RuntimeError("naive consumer did not subscribe")

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def close(self) -> None:
        self.db.close()


def run_naive(
    broker: MosquittoBroker, payloads: list[bytes], readings: int, path: Path, *, live: bool
) -> Figure:
    client_id = f"bench-naive-{'live' if live else 'drain'}-{path.stem}"
    consumer = NaiveConsumer(broker, client_id, path)
    consumer.expected = len(payloads)
    consumer.connect()  # creates the session and subscription
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        consumer.disconnect()
        publish_all(broker, payloads)
        started = time.perf_counter()
        consumer.connect()
    if not consumer.done.wait(DRAIN_TIMEOUT_S):
        raise RuntimeError(f"naive consumer got {consumer.received} of {len(payloads)} messages")
    elapsed = time.perf_counter() - started
    if live:
        publisher.join()
    consumer.disconnect()
    consumer.close()
    end_sessions(broker, [client_id])
    if consumer.stored != readings:
        raise RuntimeError(f"naive consumer stored {consumer.stored} of {readings} readings")
    return Figure(NAIVE, readings, elapsed)


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

    def pipeline_pid(self) -> int | None:
        return None if self._pipeline is None else self._pipeline.pid

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
        from storage.readings.influxdb.connection import InfluxConfig
        from storage.readings.influxdb.store import InfluxReadingStore

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
    servers: dict[str, int] | None = None,
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
    cpu: _ProcessCpu | None = None  # drain only: the live window also holds the publisher's work
    if live:
        publisher = start_publisher(broker, payloads)
        started = time.perf_counter()
        publisher.start_publishing()
    else:
        consumer.stop()
        publish_all(broker, payloads)
        consumer = wiring.consumer(config)
        cpu = _ProcessCpu(broker.pid, wiring.pipeline_pid(), servers)
        started = time.perf_counter()
        consumer.start()
    held_peak = 0

    def drained() -> bool:
        nonlocal held_peak
        counters = consumer.counters()
        held_peak = max(held_peak, counters.in_flight_messages)
        return counters.messages_acked >= len(payloads)

    done = _wait(drained, DRAIN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    cpu_s = None if cpu is None else cpu.spent()
    if live:
        publisher.join()
    counters = consumer.counters()
    consumer.stop()
    wiring.close()
    end_sessions(broker, [client_id])
    if not done or counters.readings_stored != readings:
        raise RuntimeError(f"{name}: incomplete drain: {counters}")
    return Figure(
        name, readings, elapsed, cpu_s=cpu_s, held_peak=held_peak, receive_maximum=config.receive_maximum
    )


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
        running.append((processes, stop, go))
        if not all_set(loadeds, processes, CONNECT_TIMEOUT_S * 2):
            raise RuntimeError(f"{name}: a consumer process did not start{exits(processes)}")
        go_at = time.perf_counter()
        go.set()
        return processes, stop, readies, go_at

    def subscribed(processes: list[Any], readies: list[Any]) -> None:
        if not all_set(readies, processes, CONNECT_TIMEOUT_S):
            raise RuntimeError(f"{name}: a consumer process did not subscribe{exits(processes)}")

    def halt(processes: list[Any], stop: Any) -> None:
        stop.set()
        for process in processes:
            process.join(DRAIN_TIMEOUT_S)

    def all_set(events: list[Any], processes: list[Any], timeout_s: float) -> bool:
        """Every event set, unless a process fails first (or the timeout passes)."""
        _wait(lambda: all(event.is_set() for event in events) or failed(processes), timeout_s)
        return all(event.is_set() for event in events) and not failed(processes)

    def failed(processes: list[Any]) -> bool:
        return any(process.exitcode not in (None, 0) for process in processes)

    def exits(processes: list[Any]) -> str:
        codes = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
        return f" (exit codes {codes}; see stderr)" if codes else ""

    def settled() -> int:
        return int(sum(counts[:]))

    # A member that fails (its store would not open, a bug) fails the run at once: the others are
    # stopped, or killed, rather than left waiting for the drain timeout.
    running: list[tuple[list[Any], Any, Any]] = []
    try:
        processes, stop, readies, _ = launch()  # creates every member's session in the share group
        subscribed(processes, readies)
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
        done = _wait(lambda: settled() >= len(payloads) or failed(processes), DRAIN_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        if failed(processes):
            raise RuntimeError(f"{name}: a consumer process failed{exits(processes)}")
        if live:
            publisher.join()
        halt(processes, stop)
    finally:
        for group, group_stop, group_go in running:
            group_stop.set()
            group_go.set()
            for process in group:
                process.join(CONNECT_TIMEOUT_S)
                if process.is_alive():
                    process.kill()
                    process.join()
    end_sessions(broker, [spec.client_id for spec in specs])
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


class _ProcessCpu:
    """CPU seconds spent from now on by this process (ingest's MQTT side; its main thread only
    polls meanwhile), ingest's pipeline process, the broker and `servers` (influxd and the test
    shim, named)."""

    def __init__(
        self, broker_pid: int | None, pipeline_pid: int | None, servers: dict[str, int] | None = None
    ) -> None:
        self._pids = {"pipeline process": pipeline_pid, "broker": broker_pid, **(servers or {})}
        self._before = self._now()

    def _now(self) -> dict[str, float]:
        now = {"MQTT process": time.process_time()}
        now.update((name, process_cpu_s(pid)) for name, pid in self._pids.items() if pid is not None)
        return now

    def spent(self) -> dict[str, float]:
        return {name: s - self._before[name] for name, s in self._now().items()}


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0.0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields 14 and 15 of proc(5), counted from the state
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WorkCost:
    """Ingest's own CPU per reading at one message size, measured here without MQTT, one process,
    in the cycles ingest makes (IngestConfig's bounds). Each is a lower bound of what an ingest
    process spends on that step: the consumer around it, the pipe to the pipeline process and
    InfluxDB's own server are not counted."""

    parse_us: float  # ingest.validation.parse_message: envelope, readings, plausibility
    sqlite_us: float  # SqliteReadingStore.write_batch: rows, duplicate probe, INSERT, COMMIT
    influx_us: float | None  # InfluxReadingStore.write_batch, client side only
    # influxd's own CPU over those writes (it shares these cores); not the test shim's, which
    # InfluxDB 1.8+ does not need (its /api/v2/write is built in). None when not measurable.
    influxd_us: float | None = None

    @property
    def influx_total_us(self) -> float | None:
        """InfluxDB's write, client and server side (the client alone if influxd's is unknown)."""
        if self.influx_us is None:
            return None
        return self.influx_us + (self.influxd_us or 0.0)


def _cycles(parsed: list[Any], sizes: list[int], config: IngestConfig) -> list[list[AnyReading]]:
    """The parsed messages' readings grouped as the consumer groups messages into cycles."""
    cycles: list[list[AnyReading]] = []
    current: list[AnyReading] = []
    messages = size = 0
    for item, payload_size in zip(parsed, sizes, strict=True):
        current.extend(item.accepted)
        messages += 1
        size += payload_size
        if messages >= config.max_messages_per_cycle or size >= config.max_cycle_bytes:
            cycles.append(current)
            current, messages, size = [], 0, 0
    if current:
        cycles.append(current)
    return cycles


def measure_work(
    payloads: list[bytes],
    readings: int,
    directory: Path,
    influx: str | None,
    config: IngestConfig,
    influxd_pids: Callable[[], list[int]] = list,
) -> WorkCost:
    from storage.readings.sqlite import SqliteReadingStore

    received_at = datetime.now(UTC)
    topic = readings_topic(GATEWAY_ID)
    messages = [InboundMessage(0, 1, topic, payload, received_at) for payload in payloads]
    started = time.process_time()
    parsed = [parse_message(message) for message in messages]
    parse_s = time.process_time() - started
    if sum(len(item.accepted) for item in parsed) != readings:
        raise RuntimeError("work cost: not every reading parsed")
    cycles = _cycles(parsed, [len(p) for p in payloads], config)

    def write_all(store: ReadingStore) -> float:
        started = time.process_time()
        for cycle in cycles:
            store.write_batch(cycle)
        return time.process_time() - started

    tag = f"work{len(payloads)}x{readings}"
    sqlite_store = SqliteReadingStore(directory / f"{tag}.sqlite3")
    try:
        sqlite_s = write_all(sqlite_store)
    finally:
        sqlite_store.close()
    influx_s = influxd_s = None
    if influx is not None:
        from storage.readings.influxdb.connection import InfluxConfig
        from storage.readings.influxdb.store import InfluxReadingStore

        create_influx_database(influx, tag)
        influx_store = InfluxReadingStore(InfluxConfig(url=influx, database=tag))
        servers = influxd_pids()
        try:
            server_before = sum(process_cpu_s(pid) for pid in servers)
            influx_s = write_all(influx_store)
            influxd_s = sum(process_cpu_s(pid) for pid in servers) - server_before if servers else None
        finally:
            influx_store.close()
    per_reading = 1e6 / readings
    return WorkCost(
        parse_s * per_reading,
        sqlite_s * per_reading,
        None if influx_s is None else influx_s * per_reading,
        None if influx_s is None or influxd_s is None else influxd_s * per_reading,
    )


@dataclass(frozen=True)
class CpuBudget:
    """Can ingest reach `TARGET_RATIO` of the bare subscriber at this message size, on this box?

    For ingest to store `TARGET_RATIO` x bare readings/s, the machine's cores give it
    cores / (TARGET_RATIO x bare) seconds of CPU per reading, for everything: the broker and paho
    receiving the message (measured in the bare drain: `transport_us`), ingest's own work
    (`WorkCost`) and, into InfluxDB, influxd's work on the same cores. The ceiling is the ratio that the measured lower bound of the CPU per reading
    allows if every core were kept busy with nothing else: above 0.5, the target is a question of
    engineering; below it, no ingest that validates with vitals' models and writes this store can
    meet it on this machine."""

    batch: int
    cores: int
    bare_per_s: float
    transport_us: float
    work: WorkCost

    def needed_us(self, store_us: float) -> float:
        return self.transport_us + self.work.parse_us + store_us

    def ceiling(self, store_us: float | None) -> float | None:
        if store_us is None:
            return None
        return self.cores * 1e6 / self.needed_us(store_us) / self.bare_per_s

    def print(self) -> None:
        budget_us = self.cores * 1e6 / (TARGET_RATIO * self.bare_per_s)
        print(
            f"\nCPU budget, {self.batch} readings/message: for ratio {TARGET_RATIO} ingest must store "
            f"{TARGET_RATIO * self.bare_per_s:,.0f} readings/s; {self.cores} cores give {budget_us:.1f} µs "
            "of CPU per reading for everything"
        )
        rows = [
            ("transport: broker + paho receiving (bare drain)", self.transport_us),
            ("parse and validate (parse_message)", self.work.parse_us),
            ("SQLite write (rows, probe, INSERT, COMMIT)", self.work.sqlite_us),
        ]
        if self.work.influx_us is not None:
            rows.append(("InfluxDB write (client side)", self.work.influx_us))
        if self.work.influxd_us is not None:
            rows.append(("influxd storing it (server side, same cores)", self.work.influxd_us))
        for label, micros in rows:
            print(f"  {label:<50} {micros:>7.1f} µs/reading")
        for store, store_us in (("SQLite", self.work.sqlite_us), ("InfluxDB", self.work.influx_total_us)):
            ceiling = self.ceiling(store_us)
            if ceiling is None or store_us is None:
                continue
            verdict = "within reach" if ceiling >= TARGET_RATIO else "out of reach on this machine"
            print(
                f"  {store}: at least {self.needed_us(store_us):.1f} µs/reading -> ratio ceiling "
                f"{ceiling:.2f} ({verdict})"
            )


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == parent:  # field 4 of proc(5), counted from the state
            children.append(int(stat.parent.name))
    return children


def cores() -> int:
    return len(os.sched_getaffinity(0))


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
        for line in (figure.cpu_line(), figure.held_line()):
            if line is not None:
                print(line)


def _influx_host(connection: Any, stop: Any) -> None:
    """Runs in its own process: a private influxd and the test shim, until `stop`.

    The shim (testbed/influxdb.py) stands in for the /api/v2/write endpoint that InfluxDB
    1.8+ serves itself; it is Python, so in the bench's process it would take the GIL from ingest
    for every write (reading and forwarding ~6 MB per cycle): that is the test rig's cost, not
    ingest's."""
    from testbed.influxdb import InfluxServer

    server = InfluxServer()
    try:
        server.start()
        connection.send(server.url)
        stop.wait(DRAIN_TIMEOUT_S * 4)
    finally:
        server.close()


@dataclass(frozen=True)
class InfluxHost:
    """The process holding the bench's influxd (its child) and the shim (a thread of its own)."""

    url: str
    pid: int

    def influxd_pids(self) -> list[int]:
        return child_pids(self.pid)

    def cpu_pids(self) -> dict[str, int]:
        """For the drain's CPU line: influxd, and the shim (this process without its child)."""
        servers = {"influxd": pid for pid in self.influxd_pids()[:1]}  # noqa: B035 - the one child
        return servers | {"test shim": self.pid}


def influx_server(stack: list[Callable[[], None]]) -> InfluxHost | None:
    """A private influxd (with its shim, in a process of its own)."""
    try:
        import storage.readings.influxdb.connection  # noqa: F401 - the clinic extra is installed
        from testbed.influxdb import influxd_available
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
    assert process.pid is not None
    return InfluxHost(url, process.pid)


def create_influx_database(url: str, database: str) -> None:
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{url}/query", data=body, timeout=CONNECT_TIMEOUT_S) as answer:
        if answer.status != HTTPStatus.OK:
            raise RuntimeError(f"CREATE DATABASE failed: HTTP {answer.status}")


def influx_store(stack: list[Callable[[], None]], url: str, database: str) -> ReadingStore:
    from storage.readings.influxdb.connection import InfluxConfig
    from storage.readings.influxdb.store import InfluxReadingStore

    create_influx_database(url, database)
    store = InfluxReadingStore(InfluxConfig(url=url, database=database))
    stack.append(store.close)
    return store


def run_groups(
    broker: MosquittoBroker,
    payloads: list[bytes],
    readings: int,
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
        run_group(f"bare paho subscriber x{n}", broker, payloads, readings, specs("bare", ""), live=live)
    ]
    sqlite_path = str(directory / f"readings-{tag}-x{n}.sqlite3")
    figures.append(
        run_group(
            f"ingest -> SQLite x{n}", broker, payloads, readings, specs("sqlite", sqlite_path), live=live
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
                readings,
                specs("influx", f"{influx} {database}"),
                live=live,
            )
        )
    return figures


def batch_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(not 1 <= size <= MAX_READINGS_PER_BATCH for size in sizes):
        raise argparse.ArgumentTypeError(
            f"readings per message: comma-separated, each 1..{MAX_READINGS_PER_BATCH}"
        )
    return sizes


def readings_for(batch: int, asked: int | None) -> int:
    """`--readings`, or enough for a steady figure: 20,000, and at least 500 messages."""
    return asked if asked is not None else max(20_000, 500 * batch)


@dataclass
class SizeResult:
    """One message size: the figures per mode (drain, live) and its CPU budget."""

    batch: int
    figures: dict[str, list[Figure]]
    budget: CpuBudget


def print_summary(results: list[SizeResult]) -> None:
    """Every message size in one table, with the targets and the CPU ceiling of each size."""
    print(
        f"\nsummary: readings/s (ratio to the bare subscriber of the same run and mode); targets: "
        f"ratio >= {TARGET_RATIO}, >= {TARGET_PER_S:,} readings/s; ceiling: CpuBudget"
    )
    print(f"  {'readings/msg':>12} {'mode':<6} {'bare':>9} {'SQLite':>16} {'InfluxDB':>16}  {'ceiling':>13}")
    for result in results:
        budget = result.budget
        for mode, figures in result.figures.items():
            bare = figures[0].per_second
            cells = {"SQLite": "-", "InfluxDB": "-"}
            for figure in figures[1:]:
                if figure.name == NAIVE:
                    continue
                store = figure.name.removeprefix("ingest -> ")
                ratio = figure.per_second / bare
                marks = "" if ratio >= TARGET_RATIO else "*"
                marks += "" if figure.per_second >= TARGET_PER_S else "!"
                # Rounded down, so that a ratio shown as 0.50 has met 0.5.
                cells[store] = f"{figure.per_second:,.0f} ({math.floor(ratio * 100) / 100:.2f}){marks}"
            ceilings = [budget.ceiling(budget.work.sqlite_us), budget.ceiling(budget.work.influx_total_us)]
            ceiling = (
                " / ".join("-" if c is None else f"{c:.2f}" for c in ceilings) if mode == "drain" else ""
            )
            print(
                f"  {result.batch:>12} {mode:<6} {bare:>9,.0f} {cells['SQLite']:>16} "
                f"{cells['InfluxDB']:>16}  {ceiling:>13}"
            )
    print(
        f"  * ratio below {TARGET_RATIO}; ! below {TARGET_PER_S:,} readings/s; ceiling: SQLite / InfluxDB, drain"
    )
    print(
        f"\ningest -> SQLite against the naive consumer (target at 100 readings/msg: ratio >= {TARGET_NAIVE_RATIO})"
    )
    for result in results:
        for mode, figures in result.figures.items():
            by_name = {f.name: f for f in figures}
            if NAIVE not in by_name or "ingest -> SQLite" not in by_name:
                continue
            ingest, naive = by_name["ingest -> SQLite"], by_name[NAIVE]
            ratio = ingest.per_second / naive.per_second
            verdict = (
                ("met" if ratio >= TARGET_NAIVE_RATIO else "MISSED") if result.batch == 100 else "no target"
            )
            print(
                f"  ingest/naive at {result.batch} readings/msg, {mode}: {ingest.per_second:,.0f} / "
                f"{naive.per_second:,.0f} readings/s = {ratio:.2f} (target >= {TARGET_NAIVE_RATIO:.1f} at 100: {verdict})"
            )


def run_size(
    broker: MosquittoBroker,
    args: argparse.Namespace,
    batch: int,
    directory: Path,
    clinic: ClinicRepository,
    influx_host: InfluxHost | None,
    overrides: dict[str, Any],
) -> SizeResult:
    """Bare, ingest -> SQLite and ingest -> InfluxDB at one message size, drain then live; then
    ingest's own work at that size without MQTT, for the CPU budget."""
    from storage.readings.sqlite import SqliteReadingStore

    influx = None if influx_host is None else influx_host.url
    readings = readings_for(batch, args.readings)
    payloads = make_payloads(readings, batch)
    size = sum(len(p) for p in payloads)
    print(
        f"\n=== {readings} readings in {len(payloads)} messages of {batch} "
        f"({size / len(payloads) / 1024:.1f} KiB each); mosquitto on 127.0.0.1:{broker.port}"
    )
    clinic_url = f"sqlite:///{directory / 'clinic.sqlite3'}"
    per_mode: dict[str, list[Figure]] = {}
    cleanup: list[Callable[[], None]] = []
    try:
        for live in (False, True):
            mode = "live: publisher running" if live else "drain: queued in the session, then consumed"
            tag = f"{'live' if live else 'drain'}{batch}"
            figures = [run_bare(broker, payloads, readings, live=live)]
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
                    "ingest -> SQLite", broker, payloads, readings, wiring, f"bench-sqlite-{tag}",
                    live=live, overrides=overrides,
                )
            )  # fmt: skip
            figures.append(
                run_naive(broker, payloads, readings, directory / f"naive-{tag}.sqlite3", live=live)
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
                        "ingest -> InfluxDB", broker, payloads, readings, wiring, f"bench-influx-{tag}",
                        live=live, overrides=overrides,
                        servers=None if influx_host is None else influx_host.cpu_pids(),
                    )
                )  # fmt: skip
            print_table(mode, figures)
            per_mode["live" if live else "drain"] = figures
            if args.replicas > 1:
                print_table(
                    f"{mode}; {args.replicas} processes each, one shared subscription",
                    run_groups(
                        broker, payloads, readings, args, directory, influx, tag, overrides, live=live
                    ),
                )
    finally:
        for step in reversed(cleanup):
            step()
    bare_drain = per_mode["drain"][0]
    assert bare_drain.transport_cpu_s is not None
    budget = CpuBudget(
        batch=batch,
        cores=cores(),
        bare_per_s=bare_drain.per_second,
        transport_us=bare_drain.transport_cpu_s * 1e6 / readings,
        work=measure_work(
            payloads,
            readings,
            directory,
            influx,
            replace(IngestConfig(), **overrides),
            influxd_pids=list if influx_host is None else influx_host.influxd_pids,
        ),
    )
    budget.print()
    return SizeResult(batch, per_mode, budget)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--readings",
        type=int,
        default=None,
        help="readings per message size (default: 20,000, and at least 500 messages)",
    )
    parser.add_argument(
        "--batch",
        type=batch_sizes,
        default=[1, 2, 100],
        help=f"readings per MQTT message, comma-separated sizes (each 1..{MAX_READINGS_PER_BATCH}); default 1,2,100",
    )
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

    directory = Path(tempfile.mkdtemp(prefix="vitalgate-bench-"))
    cleanup: list[Callable[[], None]] = []
    broker = MosquittoBroker(directory / "mosquitto", max_queued_messages=1_000_000)
    broker.add_gateway(GATEWAY_ID)
    broker.start()
    cleanup.append(broker.stop)
    try:
        clinic = seed_clinic(directory)
        influx_host = None if args.no_influx else influx_server(cleanup)
        if not args.no_freeze:
            # What an ingest process does once wired (ingest.runtime); for bare and ingest alike.
            freeze_startup_heap()
        results = [
            run_size(broker, args, batch, directory, clinic, influx_host, overrides) for batch in args.batch
        ]
        print_summary(results)
        return 0
    finally:
        for step in reversed(cleanup):
            step()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

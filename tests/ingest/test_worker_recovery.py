"""The ingest worker and its pipeline process with several cycles in hand (a failed cycle, readings in
two cycles at once): acks keep arrival order and no reading is written twice.

Real parts: the worker, flow control and ack window of `IngestConsumer`, a `PipelineProcess` child
with a SQLite store and clinic database; the MQTT messages are put straight into flow control (no
broker), so the backlog is there before the worker takes its first cycle.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConfig, PipelineProcess
from ingest.ack_window import AckWindow
from ingest.flow import FlowControl
from ingest.metrics import IngestMetrics
from ingest.pipeline import CycleResult, ReadingsInCommit
from ingest.worker import Worker
from tests.ingest.helpers import WAIT_S, batch_json, bp_reading, open_sqlite_pipeline_parts, stored_ids
from vitalgate.mosquitto import free_port
from vitals.topics import readings_topic

MESSAGES = 20
READINGS_PER_MESSAGE = 5


def test_cycles_committed_behind_a_failed_one_are_acked_after_it_without_being_written_again(
    tmp_path: Path, gateway_id: str, store_path: Path, clinic_sessions: sessionmaker[Session]
) -> None:
    """A backlog in cycles of two messages, the first cycle's write failing while the child commits
    the cycles handed over behind it: the first is retried and finished first, the others finish
    after it from their own commits, in arrival order, and each reading is written once."""
    # Nothing connects: the messages go straight into flow control.
    config = IngestConfig(
        host="127.0.0.1", port=free_port(), client_id="ingest-worker-test", max_messages_per_cycle=2
    )
    metrics = IngestMetrics()
    flow = FlowControl(config, mqtt.Client(CallbackAPIVersion.VERSION2), metrics)
    flow.connected()
    readings = [bp_reading(i) for i in range(MESSAGES * READINGS_PER_MESSAGE)]
    for m in range(MESSAGES):
        part = readings[m * READINGS_PER_MESSAGE : (m + 1) * READINGS_PER_MESSAGE]
        message = mqtt.MQTTMessage(mid=m + 1, topic=readings_topic(gateway_id).encode())
        message.payload, message.qos = batch_json(gateway_id, part), 1
        flow.receive(message)
    writes_log = tmp_path / "writes.log"
    pipeline = PipelineProcess(
        functools.partial(
            open_sqlite_pipeline_parts, str(store_path), f"sqlite:///{tmp_path / 'clinic.sqlite3'}",
            fail_first_write=str(tmp_path / "failed-once"), writes_log=str(writes_log),
        )
    )  # fmt: skip
    finished: list[int] = []
    done = threading.Event()

    def finish(result: CycleResult) -> None:
        finished.extend(m.mid for m in result.messages)
        if len(finished) >= MESSAGES:
            done.set()

    stopping = threading.Event()
    window = AckWindow(flow, max_cycles=64, timeout_s=5.0, on_error=lambda _error: None)
    worker = Worker(
        config, pipeline, flow, window, metrics, finish=finish, report=lambda _what: None, stopping=stopping
    )
    pipeline.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert done.wait(WAIT_S), f"finished {finished}"
    finally:
        stopping.set()
        thread.join(WAIT_S)
        pipeline.close()
    assert finished == list(range(1, MESSAGES + 1))  # acks in arrival order
    assert metrics.store_retries >= 1  # the first cycle did fail
    assert (tmp_path / "failed-once.behind").exists(), "no cycle committed behind the failed one"
    written = writes_log.read_text(encoding="utf-8").split()
    twice = sorted(rid for rid, n in Counter(written).items() if n > 1)
    assert not twice, f"{len(twice)} readings written twice"
    assert sorted(stored_ids(store_path)) == sorted(r.reading_id for r in readings)


def test_a_commit_holding_a_reading_another_commit_is_writing_waits_for_it() -> None:
    """A message delivered again while its first delivery commits: the second commit of its readings
    waits for the first (then finds them stored) instead of writing them a second time; a commit of
    other readings does not wait."""
    guard = ReadingsInCommit()
    order: list[str] = []
    first_writing, release_first = threading.Event(), threading.Event()

    def commit(name: str, ids: frozenset[str], hold: threading.Event | None = None) -> None:
        with guard.holding(ids):
            order.append(f"{name} writes")
            if hold is not None:
                first_writing.set()
                hold.wait(WAIT_S)
        order.append(f"{name} done")

    first = threading.Thread(target=commit, args=("first", frozenset({"r1", "r2"}), release_first))
    first.start()
    assert first_writing.wait(WAIT_S)
    again = threading.Thread(target=commit, args=("again", frozenset({"r2", "r3"})))
    again.start()
    other = threading.Thread(target=commit, args=("other", frozenset({"r9"})))
    other.start()
    other.join(WAIT_S)
    assert order == ["first writes", "other writes", "other done"]  # the redelivery waits
    release_first.set()
    first.join(WAIT_S)
    again.join(WAIT_S)
    assert order[3:] == ["first done", "again writes", "again done"]

"""Ingest with its pipeline in a child process (ingest.pipeline_process), against the session broker.

The delivery promise must hold across the process boundary: a cycle is acked only after the child
committed it; a child killed mid-stream, or one that cannot open its store, loses nothing and
stores nothing twice; a message that trips a bug in the child is isolated and dead-lettered.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from paho.mqtt.client import MQTTMessageInfo
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConsumer, IngestError, PipelineProcess
from storage.clinic.models import DeadLetterScope
from storage.readings.protocol import AnyReading, ReadingStoreUnavailable
from tests.ingest.conftest import ingest_config
from tests.ingest.helpers import (
    STRANGER_CUFF,
    WAIT_S,
    GatewayClient,
    batch_json,
    bp_reading,
    check_a_bug_is_isolated,
    dead_letters,
    open_sqlite_pipeline_parts,
    stored_count,
    stored_ids,
    wait_until,
)
from vitalgate.mosquitto import MosquittoBroker

pytestmark = pytest.mark.mosquitto

StartIngest = Callable[..., tuple[IngestConsumer, PipelineProcess]]


@pytest.fixture
def clinic_url(tmp_path: Path, clinic_sessions: sessionmaker[Session]) -> str:
    return f"sqlite:///{tmp_path / 'clinic.sqlite3'}"  # seeded by clinic_sessions


@pytest.fixture
def start_ingest(
    mosquitto_broker: MosquittoBroker, store_path: Path, clinic_url: str
) -> Iterator[StartIngest]:
    """An ingest consumer whose pipeline runs in a child process; all stopped afterwards."""
    running: list[tuple[IngestConsumer, PipelineProcess]] = []

    def start(
        *, listeners: Sequence[Callable[[Sequence[AnyReading]], None]] = (), **options: str
    ) -> tuple[IngestConsumer, PipelineProcess]:
        pipeline = PipelineProcess(
            functools.partial(open_sqlite_pipeline_parts, str(store_path), clinic_url, **options),
            want_committed=bool(listeners),
        )
        consumer = IngestConsumer(
            ingest_config(mosquitto_broker, retry_initial_s=0.05, retry_max_s=0.2),
            pipeline=pipeline,
            listeners=listeners,
        )
        running.append((consumer, pipeline))
        pipeline.start()
        consumer.start()
        assert consumer.wait_subscribed(WAIT_S), "ingest did not subscribe"
        return consumer, pipeline

    yield start
    for consumer, pipeline in running:
        consumer.stop()
        pipeline.close()


def _publish_in_messages_of(
    gateway: GatewayClient, readings: Sequence[AnyReading], size: int
) -> list[MQTTMessageInfo]:
    return [
        gateway.publish_raw(batch_json(gateway.gateway_id, readings[i : i + size]), wait=False)
        for i in range(0, len(readings), size)
    ]


def _assert_each_stored_and_acked_once(
    consumer: IngestConsumer,
    gateway: GatewayClient,
    store_path: Path,
    readings: Sequence[AnyReading],
    infos: list[MQTTMessageInfo],
) -> None:
    for info in infos:
        info.wait_for_publish(WAIT_S)  # the broker has every message
    expected = {r.reading_id for r in readings}
    assert wait_until(lambda: gateway.stored_acked() >= expected, 120), consumer.counters()
    ids = stored_ids(store_path)
    assert len(ids) == len(set(ids)) == len(expected)


def test_readings_are_validated_stored_acked_and_announced_through_the_child(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    seen: list[str] = []
    consumer, pipeline = start_ingest(
        listeners=(lambda readings: seen.extend(r.reading_id for r in readings),)
    )
    good = [bp_reading(i) for i in range(5)]
    stranger = bp_reading(9, device=STRANGER_CUFF)
    gateway.publish(good[:3])
    gateway.publish_raw(b"{not json")
    gateway.publish([*good[3:], stranger])

    expected = {r.reading_id for r in good}
    assert wait_until(lambda: gateway.stored_acked() == expected), consumer.counters()
    assert wait_until(lambda: stranger.reading_id in gateway.rejected_acked())
    assert "not bound" in gateway.rejected_acked()[stranger.reading_id]
    assert sorted(stored_ids(store_path)) == sorted(expected)
    assert wait_until(lambda: set(seen) == expected), "listeners get the child's committed readings"
    counters = consumer.counters()
    assert (counters.readings_stored, counters.readings_rejected, counters.messages_dead_lettered) == (
        5,
        1,
        1,
    )
    assert wait_until(lambda: consumer.counters().in_flight_messages == 0)
    scopes = sorted(letter.scope.value for letter in dead_letters(clinic_sessions))
    assert scopes == sorted([DeadLetterScope.MESSAGE.value, DeadLetterScope.READING.value])
    assert pipeline.pid is not None and pipeline.pid != os.getpid()


def test_killing_the_child_mid_stream_loses_nothing_and_stores_each_reading_once(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    consumer, pipeline = start_ingest()
    readings = [bp_reading(i) for i in range(3_000)]
    infos = _publish_in_messages_of(gateway, readings, 20)
    assert wait_until(lambda: stored_count(store_path) > 0, interval_s=0.002)
    first_child = pipeline.pid
    assert first_child is not None
    os.kill(first_child, signal.SIGKILL)
    stored_at_kill = len(stored_ids(store_path))
    assert stored_at_kill < len(readings), "nothing was in flight at the kill; the test proves nothing"

    _assert_each_stored_and_acked_once(consumer, gateway, store_path, readings, infos)
    assert pipeline.restarts == 1 and pipeline.pid != first_child
    assert consumer.counters().store_retries >= 1


def test_a_store_outage_behind_the_child_holds_every_cycle_handed_over_and_loses_nothing(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path, tmp_path: Path
) -> None:
    down = tmp_path / "store-down"
    consumer, pipeline = start_ingest(down_while=str(down))
    readings = [bp_reading(i) for i in range(2_000)]
    infos = _publish_in_messages_of(gateway, readings, 5)
    assert wait_until(lambda: stored_count(store_path) > 0, interval_s=0.002)
    down.touch()  # mid-stream: cycles handed to the child fail, and so do the ones behind them
    assert wait_until(lambda: consumer.counters().store_retries >= 3), consumer.counters()
    acked_while_down = consumer.counters().messages_acked
    stored_while_down = stored_count(store_path)
    assert not wait_until(lambda: consumer.counters().messages_acked > acked_while_down, timeout_s=1.0)
    assert stored_count(store_path) == stored_while_down < len(readings)

    down.unlink()
    _assert_each_stored_and_acked_once(consumer, gateway, store_path, readings, infos)
    assert wait_until(lambda: consumer.counters().in_flight_messages == 0)
    assert pipeline.restarts == 0


def test_a_store_that_cannot_be_opened_holds_every_message_until_it_can(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path, tmp_path: Path
) -> None:
    closed = tmp_path / "store-closed"
    consumer, pipeline = start_ingest(closed_while=str(closed))
    closed.touch()
    assert pipeline.pid is not None
    os.kill(pipeline.pid, signal.SIGKILL)  # the first child opened the store; the next one cannot
    readings = [bp_reading(i) for i in range(30)]
    for i in range(0, 30, 10):
        gateway.publish(readings[i : i + 10])
    assert wait_until(lambda: consumer.counters().store_retries >= 3), consumer.counters()
    assert consumer.counters().messages_acked == 0
    assert gateway.stored_acked() == set()

    closed.unlink()
    expected = {r.reading_id for r in readings}
    assert wait_until(lambda: gateway.stored_acked() == expected), consumer.counters()
    assert sorted(stored_ids(store_path)) == sorted(expected)


def test_a_message_that_trips_a_bug_in_the_child_is_dead_lettered_and_the_stream_flows(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    bad = bp_reading(2)
    consumer, _ = start_ingest(bug_reading_id=bad.reading_id)
    letter = check_a_bug_is_isolated(consumer, gateway, store_path, clinic_sessions, bad)
    assert "RuntimeError" in letter.reason  # the child's exception type, not its message


def test_a_message_that_kills_the_child_every_time_is_dead_lettered_and_the_stream_flows(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    deadly = bp_reading(2)
    consumer, pipeline = start_ingest(deadly_reading_id=deadly.reading_id)
    letter = check_a_bug_is_isolated(consumer, gateway, store_path, clinic_sessions, deadly)
    assert "PipelineProcessDied" in letter.reason
    assert pipeline.restarts >= 3  # it died each time it met the message, and came back
    assert deadly.reading_id not in gateway.rejected_acked()  # not refused: the gateway may resend it


def test_close_does_not_wait_for_a_hung_child_and_acks_nothing_of_its_cycle(
    tmp_path: Path, clinic_url: str, gateway_id: str
) -> None:
    from datetime import UTC, datetime

    from ingest import InboundMessage
    from ingest.pipeline_process import PipelineProcessDied
    from vitals.topics import readings_topic

    hung = bp_reading(1)
    pipeline = PipelineProcess(
        functools.partial(
            open_sqlite_pipeline_parts,
            str(tmp_path / "r.sqlite3"),
            clinic_url,
            hang_reading_id=hung.reading_id,
        )
    )
    pipeline.start()
    message = InboundMessage(
        mid=1,
        qos=1,
        topic=readings_topic(gateway_id),
        payload=batch_json(gateway_id, [hung]),
        received_at=datetime.now(UTC),
    )
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            pipeline.process([message])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(1.0)  # the worker waits for the hung commit
    started = time.monotonic()
    pipeline.close(timeout_s=1.0)
    thread.join(10)
    assert time.monotonic() - started < 10, "close waited for the hung child"
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PipelineProcessDied)
    with pytest.raises(ReadingStoreUnavailable, match="closed"):
        pipeline.process([message])  # a closed pipeline starts no new child


def test_listeners_without_committed_readings_are_refused(mosquitto_broker: MosquittoBroker) -> None:
    pipeline = PipelineProcess(functools.partial(open_sqlite_pipeline_parts, "unused", "sqlite://"))
    with pytest.raises(IngestError, match="want_committed"):
        IngestConsumer(ingest_config(mosquitto_broker), pipeline=pipeline, listeners=(print,))


def test_a_child_that_cannot_start_reports_the_store_unavailable(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.touch()
    pipeline = PipelineProcess(
        functools.partial(
            open_sqlite_pipeline_parts, str(tmp_path / "r.sqlite3"), "sqlite://", closed_while=str(closed)
        )
    )
    with pytest.raises(ReadingStoreUnavailable, match="could not open the store"):
        pipeline.start()
    pipeline.close()


def test_answers_go_back_in_request_order_whichever_committer_finishes_first() -> None:
    from multiprocessing import Pipe

    from ingest.pipeline_process import _AnswersInOrder

    ours, theirs = Pipe()
    answers = _AnswersInOrder(theirs)
    answers.put(1, ("ok", "second"))  # the second cycle committed first: held back
    assert not ours.poll(0.1)
    answers.put(0, ("ok", "first"))
    answers.put(2, ("ok", "third"))
    assert [ours.recv() for _ in range(3)] == [("ok", "first"), ("ok", "second"), ("ok", "third")]
    ours.close()
    answers.put(3, ("ok", "lost"))  # the parent is gone: noted, not raised
    assert answers.parent_gone

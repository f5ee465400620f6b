"""Crashes (reliability.md §(a) 2, 3, 4): a gateway killed mid-burst, the broker killed, the broker
restarted while ingest is away. Each ends with the ledger: nothing lost, nothing stored twice,
one alert and one notification per abnormal reading."""

from __future__ import annotations

import pytest

from tests.faults.rig import Pipeline, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.slow]

DRAIN_S = 120.0


def test_gateway_killed_mid_burst_delivers_everything_it_committed_once(faults: Pipeline) -> None:
    """kill -9 of the gateway during a 5,000-reading burst: the outbox stays intact, nothing acked is
    deleted early, and after a restart every reading reaches the store once (§(a) 2)."""
    home = faults.add_home(5_000)
    edge = faults.edge(home, commit_batch=100)

    def mid_burst() -> bool:
        held, acked, _ = edge.outbox()
        return len(acked) >= 500 and len(held) >= 500

    wait_for(mid_burst, DRAIN_S, "the burst to be half delivered")
    edge.kill9()
    held, acked, integrity = edge.outbox()
    assert integrity == "ok"
    assert faults.observer is not None
    _, acks_seen, _, _ = faults.observer.counts(acked, set())
    assert acked <= set(acks_seen), "a reading left the outbox without its application ack"
    edge.start()  # the meters offer their whole memory again
    faults.drain(home, edge, DRAIN_S)
    edge.stop()
    ledger = faults.ledger("gateway kill -9 mid-burst", home, edge)
    ledger.notes.append(f"at the kill: {len(held)} held, {len(acked)} acked")
    ledger.check()


def test_broker_killed_with_readings_in_flight_loses_nothing_end_to_end(faults: Pipeline) -> None:
    """kill -9 of Mosquitto (persistence on, autosaved every second) while readings stream at 500 a
    second: what the broker lost is resent from the gateway's outbox (§(a) 3, mosquitto#1855)."""
    home = faults.add_home(3_000, rate=500)
    edge = faults.edge(home, rate=500, commit_batch=5, forward_batch=5)
    wait_for(lambda: len(edge.outbox()[1]) >= 500, DRAIN_S, "the stream to be flowing")
    faults.broker.kill()
    faults.broker.start()
    faults.drain(home, edge, DRAIN_S)
    edge.stop()
    ledger = faults.ledger("broker kill -9 at 500 readings/s", home, edge)
    resent = sum(n - 1 for n in ledger.published.values())
    ledger.notes.append(f"{resent} readings published again after the crash (the gap the outbox covers)")
    ledger.check()


def test_broker_restart_while_ingest_is_away_keeps_its_queue(faults: Pipeline) -> None:
    """Ingest stopped, readings queued for its persistent session, Mosquitto restarted gracefully:
    ingest comes back to every queued reading, delivered by the broker alone (§(a) 4)."""
    home = faults.add_home(600)
    faults.clinic.stop()
    edge = faults.edge(home, commit_batch=50, ack_timeout_s=600)
    assert faults.observer is not None
    ids = set(home.reading_ids())
    # Every reading in the broker's queue for ingest (the observer saw each published), then the
    # gateway goes: nothing can be resent, only the broker's saved queue can deliver.
    wait_for(lambda: set(faults.observer.counts(ids, set())[0]) == ids, DRAIN_S, "every reading published")  # type: ignore[union-attr]
    edge.stop()
    faults.broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages
    faults.broker.start()
    faults.clinic.start()
    # With the gateway still away, only the broker's saved queue can bring the readings to the store.
    wait_for(lambda: ids <= set(faults.influx.rows_of(home)), DRAIN_S, "the queued readings in the store")
    edge.start()  # to receive the acks queued in its own session
    faults.drain(home, edge, DRAIN_S)
    edge.stop()
    ledger = faults.ledger("broker restarted while ingest was away", home, edge)
    ledger.notes.append(
        "every reading was stored before the gateway came back: the broker's queue carried them"
    )
    ledger.check()

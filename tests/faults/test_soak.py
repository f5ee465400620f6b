"""Soak with restart churn (reliability.md §(a) 15): readings flow at a steady rate while the broker,
the clinic server (ingest) and the store are restarted at random; then the ledger, and the memory of
the processes that ran throughout.

CI runs it for 3 minutes with a fault every 20 s. The documented hour (docs/benchmarks.md):

    VITALGATE_SOAK_S=3600 VITALGATE_SOAK_FAULT_EVERY_S=300 .venv/bin/pytest tests/faults/test_soak.py -s

VITALGATE_SOAK_SEED replays one run's order of faults (each run prints its seed).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.faults.rig import Pipeline, rss_kib, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.slow]

SOAK_S = float(os.environ.get("VITALGATE_SOAK_S", "180"))
FAULT_EVERY_S = float(os.environ.get("VITALGATE_SOAK_FAULT_EVERY_S", "20"))
RATE = float(os.environ.get("VITALGATE_SOAK_RATE", "20"))  # readings a second
DOWN_S = 3.0  # how long a restarted part stays down
RSS_GROWTH_LIMIT = 0.10  # reliability.md §(a) 15: RSS of each process stable (< 10 % growth)
DRAIN_S = 240.0


@pytest.mark.timeout(SOAK_S + DRAIN_S + 300)
def test_soak_with_random_restarts_of_broker_ingest_and_store_loses_nothing(faults: Pipeline) -> None:
    """SOAK_S seconds at RATE readings a second with the broker, ingest and the store restarted at
    random every FAULT_EVERY_S: nothing lost, nothing stored twice, one alert per abnormal reading,
    and the gateway's and the broker's memory stable."""
    seed = int(os.environ.get("VITALGATE_SOAK_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    home = faults.add_home(int(RATE * SOAK_S), patients=6, rate=RATE)
    edge = faults.edge(home, rate=RATE, commit_batch=1, forward_batch=50)
    started = time.monotonic()
    wait_for(lambda: len(edge.outbox()[1]) >= RATE * 5, 120, "the stream to be stored")
    # Memory after warm-up, of the processes that are never restarted here (the gateway) and of the
    # broker incarnation running then (compared only if it is never restarted before the end).
    warm = {"gateway": rss_kib(edge.pid)}
    broker_pid = faults.broker.pid
    assert broker_pid is not None
    warm["broker"] = rss_kib(broker_pid)
    faults_done: list[str] = []
    next_fault = started + FAULT_EVERY_S
    while time.monotonic() - started < SOAK_S:
        if time.monotonic() < next_fault:
            time.sleep(0.5)  # the soak's clock: the stream runs meanwhile
            continue
        next_fault += FAULT_EVERY_S
        part = rng.choice(["broker", "ingest", "store"])
        faults_done.append(part)
        if part == "broker":
            faults.broker.stop()
            time.sleep(DOWN_S)  # the broker stays down a while
            faults.broker.start()
        elif part == "ingest":
            faults.clinic.kill9()
            time.sleep(DOWN_S)  # ingest stays down a while
            faults.clinic.start()
        else:
            faults.influx.stop()
            time.sleep(DOWN_S)  # the store stays down a while
            faults.influx.start()
        assert edge.running, f"the gateway process died: {edge.log_tail()}"
    faults.drain(home, edge, DRAIN_S)
    end = {"gateway": rss_kib(edge.pid)}
    if faults.broker.pid == broker_pid:
        end["broker"] = rss_kib(broker_pid)
    edge.stop()
    ledger = faults.ledger(f"soak {SOAK_S:.0f} s, a restart every {FAULT_EVERY_S:.0f} s", home, edge)
    ledger.notes.append(f"seed {seed}: restarted {', '.join(faults_done) or 'nothing'}")
    growth = {name: end[name] / warm[name] - 1 for name in end}
    ledger.notes += [
        f"RSS {name}: {warm[name] / 1024:.1f} -> {end[name] / 1024:.1f} MiB ({growth[name]:+.1%})"
        for name in end
    ]
    ledger.check()
    assert faults_done, "no fault was injected: the soak proves nothing"
    grown = {name: g for name, g in growth.items() if g > RSS_GROWTH_LIMIT}
    assert not grown, f"memory grew more than {RSS_GROWTH_LIMIT:.0%}: {grown}"

"""The clinic side as replicas, for the benches: a throw-away PostgreSQL clinic database, a private
influxd (testbed.influxdb), and `vitalgate ingest` / `vitalgate api --no-ingest` processes started
with the command lines and settings an operator uses (docs/scaling.md, "Running replicas"; the same
shape as the replicas' process test in tests/vitalgate).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.influxdb import InfluxServer, influxd_available
from testbed.postgres import postgres_absent_reason, throwaway_database
from vitalgate.mosquitto import MosquittoBroker, free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
STATS_INTERVAL_S = 1.0  # ingest's counter log lines: how the bench sees each replica take messages


def absent_reason() -> str | None:
    """Why the replicas cannot run here (PostgreSQL or influxd missing), or None."""
    if not influxd_available():
        return "influxd not installed (Debian package influxdb)"
    return postgres_absent_reason()


def postgres_database() -> contextlib.AbstractContextManager[str]:
    """The URL of a clinic database created for this run, dropped at the end."""
    return throwaway_database("vitalgate_bench")


class ClinicProcess:
    """One `vitalgate <command>` process, settings in VITALGATE_* variables, JSON log lines in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vitalgate.cli", "--log-format", "json", *args],
                env={**os.environ, "PYTHONPATH": str(REPO), **env},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_running(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"vitalgate {self.args[0]} exited:\n{tail}")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return [r for r in records if isinstance(r, dict)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)


@dataclass
class Replicas:
    ingests: list[ClinicProcess]
    apis: list[ClinicProcess]
    ports: list[int]

    @property
    def base_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def messages_received(self) -> list[int]:
        """MQTT messages each ingest replica has received, from its latest counter log line (every
        second, and the final count when it stops)."""
        counts = []
        for ingest in self.ingests:
            lines = [r for r in ingest.log_records() if r.get("msg") in ("ingest counters", "ingest stopped")]
            counts.append(int(lines[-1].get("messages_received", 0)) if lines else 0)
        return counts

    def check_running(self) -> None:
        for process in [*self.ingests, *self.apis]:
            process.check_running()


@contextlib.contextmanager
def replicas(
    root: Path, broker: MosquittoBroker, clinic_url: str, influx: InfluxServer, count: int
) -> Iterator[Replicas]:
    """`count` ingest replicas on one shared subscription and `count` API replicas without ingest,
    serving once this returns; stopped with SIGTERM at the end."""
    user, password = broker.credentials("ingest")
    suffix = uuid.uuid4().hex[:6]
    common = {
        "VITALGATE_LOG_LEVEL": "INFO",  # ingest's counter lines; nothing per reading is logged at INFO
        "VITALGATE_MQTT__HOST": broker.host,
        "VITALGATE_MQTT__PORT": str(broker.port),
        "VITALGATE_MQTT__USERNAME": user,
        "VITALGATE_MQTT__PASSWORD": password,
        "VITALGATE_STORAGE__CLINIC_DATABASE_URL": clinic_url,
        "VITALGATE_STORAGE__READING_STORE": "influxdb",
        "VITALGATE_STORAGE__INFLUX_URL": influx.url,
        "VITALGATE_STORAGE__INFLUX_DATABASE": "vitalgate_bench",
        "VITALGATE_API__JWT_SECRET": secrets.token_urlsafe(40),
        "VITALGATE_ALERTS__SWEEP_INTERVAL_S": "3600",
    }
    ports = [free_port() for _ in range(count)]
    running = Replicas([], [], ports)
    try:
        for n in range(1, count + 1):
            ingest = {
                "VITALGATE_DATA_DIR": str(root / f"ingest-{n}"),
                "VITALGATE_INGEST__CLIENT_ID": f"bench-{suffix}-{n}",
                "VITALGATE_INGEST__SHARED_GROUP": f"bench-{suffix}",
            }
            command = ["ingest", "--stats-interval", str(STATS_INTERVAL_S)]
            running.ingests.append(ClinicProcess(command, {**common, **ingest}, root / f"ingest-{n}.log"))
        for n, port in enumerate(ports, start=1):
            api = {"VITALGATE_DATA_DIR": str(root / f"api-{n}")}
            command = ["api", "--no-ingest", "--port", str(port)]
            running.apis.append(ClinicProcess(command, {**common, **api}, root / f"api-{n}.log"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(serving(port) for port in ports):
            running.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError("the API replicas did not start")
            time.sleep(0.2)  # polling the servers' start
        yield running
    finally:
        for process in [*running.ingests, *running.apis]:
            with contextlib.suppress(Exception):
                process.stop()


def serving(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer,
    ):
        return bool(answer.status == 200)
    return False

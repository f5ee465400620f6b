"""`vitalgate ingest` and `vitalgate api` as processes of their own, for the tests of the clinic's
replicas: each started with the command line an operator uses and settings from the environment,
stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def settings_env(settings: dict[str, object], prefix: str = "VITALGATE_") -> dict[str, str]:
    """Nested settings as VITALGATE_* environment variables (section__field; lists as JSON)."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            env.update(settings_env(value, f"{name}__"))
        elif isinstance(value, list):
            env[name] = json.dumps(value)
        elif value is not None:
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class ClinicCommand:
    """One `vitalgate <command>` process, its output in `log_path`."""

    def __init__(self, args: list[str], settings: dict[str, object], log_path: Path) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **settings_env(settings)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ClinicCommand:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vitalgate.cli", "--log-format", "json", *self.args],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM, and the exit code (killed when it does not end in time)."""
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else int(self.process.returncode)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON log records written so far."""
        records = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    def logged(self, message: str) -> int:
        """How many log records carry `message`."""
        return sum(1 for record in self.log_lines() if record.get("msg") == message)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout_s: float = 5.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()

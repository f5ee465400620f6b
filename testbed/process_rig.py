"""Process-level rig: virtual meters in the test process, the gateway in its own process.

The meters live on a bumble link in this process; one controller on that link is served over TCP,
and the gateway process drives it with ``--virtual-radio tcp-client:127.0.0.1:PORT`` (bumble's
``controllers`` pattern, docs/virtual-meters.md). The gateway can then be ``kill -9``-ed and restarted
while the meters keep their records and bonds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bumble.transport.common import Transport

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from vitalgate.mosquitto import MosquittoBroker

REPO = Path(__file__).resolve().parents[1]
PASSKEY = 246810


class MeterHost:
    def __init__(self) -> None:
        self.radio = VirtualRadio()
        self.clock = SimulationClock()
        self.meters: list[VirtualMeter] = []
        self._transport: Transport | None = None
        self.port = 0

    async def __aenter__(self) -> MeterHost:
        await self.radio.start()
        self._transport, self.port = await self.radio.serve_controller_on_free_port()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.radio.close()

    @property
    def transport_spec(self) -> str:
        return f"tcp-client:127.0.0.1:{self.port}"

    async def add_meter(
        self, persona: str, serial: str, *, records: int = 1, fixed_passkey: int | None = None
    ) -> VirtualMeter:
        """A meter holding ``records`` readings, one every ten minutes up to now, switched on."""
        meter = make_meter(persona, clock=self.clock, serial_number=serial, fixed_passkey=fixed_passkey)
        now = dt.datetime.now(dt.UTC)
        for i in range(records):
            self.record(meter, now - dt.timedelta(minutes=10 * (records - i)), i)
        await self.radio.add_meter(meter)
        self.meters.append(meter)
        return meter

    @staticmethod
    def record(meter: VirtualMeter, taken_at: dt.datetime, i: int) -> None:
        if isinstance(meter, VirtualGlucoseMeter):
            meter.add_record(taken_at=taken_at, glucose_mg_dl=90 + i % 60)
        elif isinstance(meter, VirtualBloodPressureCuff):
            meter.add_record(taken_at=taken_at, systolic_mmhg=118 + i % 30, diastolic_mmhg=78, pulse_bpm=64)

    async def measure(self, meter: VirtualMeter, i: int) -> None:
        """The patient measures now (the meter stores it and reacts on the radio)."""
        self.record(meter, dt.datetime.now(dt.UTC), i)
        await meter.measurement_taken()


def gateway_env(broker: MosquittoBroker, data_dir: Path, gateway_id: str, **extra: str) -> dict[str, str]:
    username, password = broker.credentials(gateway_id)
    env = dict(os.environ)
    env.update(
        {
            "VITALGATE_DATA_DIR": str(data_dir),
            "VITALGATE_GATEWAY__GATEWAY_ID": gateway_id,
            "VITALGATE_MQTT__HOST": broker.host,
            "VITALGATE_MQTT__PORT": str(broker.port),
            "VITALGATE_MQTT__USERNAME": username,
            "VITALGATE_MQTT__PASSWORD": password,
            "VITALGATE_MQTT__ALLOW_PLAIN_MQTT": "true",  # the test broker listens on loopback
            "VITALGATE_GATEWAY__ACK_TIMEOUT_S": "5",
            "VITALGATE_GATEWAY__STATUS_INTERVAL_S": "2",
            "VITALGATE_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra)
    return env


async def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vitalgate.cli",
        "--log-format",
        "text",
        *args,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class GatewayProcess:
    env: dict[str, str]
    transport_spec: str
    log_path: Path
    extra_args: tuple[str, ...] = ()
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "testbed.gateway_proc",
            "--virtual-radio",
            self.transport_spec,
            *self.extra_args,
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=log,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)

    async def stop(self, timeout_s: float = 20.0) -> int:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process and self.process.returncode is not None else 0
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            return await asyncio.wait_for(self.process.wait(), 10)


async def add_home(host: MeterHost, records: int) -> None:
    """Two glucose meters (one with a PIN) and two cuffs, as in a two-patient home."""
    await host.add_meter("contour-like", "GL-HOME-1", records=records)
    await host.add_meter("accu-chek-like", "GL-HOME-2", records=records, fixed_passkey=PASSKEY)
    await host.add_meter("silvercrest-like", "BP-HOME-1", records=records)
    await host.add_meter("and-like", "BP-HOME-2", records=records)


async def pair_all(host: MeterHost, env: dict[str, str]) -> None:
    for i, meter in enumerate(host.meters):
        profile = "glucose" if isinstance(meter, VirtualGlucoseMeter) else "bp"
        extra = ["--passkey", str(PASSKEY)] if meter.fixed_passkey is not None else []
        code, out, err = await run_cli(
            env, "gateway", "pair", "--virtual-radio", host.transport_spec,
            "--address", meter.address, "--profile", profile, "--patient", f"patient-{i}", *extra,
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["paired"] == meter.address

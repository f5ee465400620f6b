"""Resident memory of a gateway PROCESS with four bound virtual meters (target < 80 MB).

    .venv/bin/python bench/gateway_memory.py [--seconds 60] [--collector default|burst]

Starts a private Mosquitto, four virtual meters in this process (two glucose meters, two cuffs) (served to the gateway over
a bumble TCP controller), pairs and binds them through `vitalgate gateway pair`, runs the gateway
process with an in-bench acker, and samples the gateway's RSS (psutil) while it syncs the meters
every few seconds. The virtual radio loads bumble into the gateway process, which a production
gateway on BlueZ does not; the bench measures that share separately and prints both figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.acker import Acker  # noqa: E402
from testbed.process_rig import GatewayProcess, MeterHost, add_home, gateway_env, pair_all  # noqa: E402
from vitalgate.mosquitto import MosquittoBroker  # noqa: E402

GATEWAY_ID = "gw-bench"
MB = 1024 * 1024
TARGET_MB = 80.0


def import_rss_mb(modules: str) -> float:
    code = f"import psutil, {modules}; print(psutil.Process().memory_info().rss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return int(out.stdout.strip()) / MB


async def run(seconds: float, collector: str) -> int:
    with tempfile.TemporaryDirectory(prefix="vitalgate-bench-") as tmp:
        tmp_path = Path(tmp)
        broker = MosquittoBroker(tmp_path / "mosquitto")
        broker.start()
        broker.add_gateway(GATEWAY_ID)
        acker = Acker(broker).start()
        try:
            env = gateway_env(broker, tmp_path / "gw", GATEWAY_ID, VITALGATE_LOG_LEVEL="WARNING")
            async with MeterHost() as host:
                await add_home(host, records=50)
                await pair_all(host, env)
                args = ("--collector", collector, "--burst", "10", "--batch", "10", "--resync-after-s", "2")
                gateway = await GatewayProcess(env, host.transport_spec, tmp_path / "gw.log", args).start()
                try:
                    process = psutil.Process(gateway.pid)
                    samples: list[float] = []
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        await asyncio.sleep(1.0)  # the sampling interval
                        samples.append(process.memory_info().rss / MB)
                finally:
                    await gateway.stop()
        finally:
            acker.stop()
            broker.stop()
    bumble_share = import_rss_mb("bumble.device, bumble.controller, bumble.transport") - import_rss_mb("sys")
    peak = max(samples)
    print(f"gateway process RSS over {seconds:.0f} s with 4 bound virtual meters ({collector} collector):")
    print(f"  first {samples[0]:.1f} MB, median {statistics.median(samples):.1f} MB, peak {peak:.1f} MB")
    duplicates = sum(n - 1 for n in acker.received.values())
    print(f"  readings acked: {len(acker.acked)}, duplicates received: {duplicates}")
    print(f"  bumble's share (virtual radio only, absent on BlueZ): ~{bumble_share:.1f} MB")
    print(
        f"  estimated production RSS: ~{peak - bumble_share:.1f} MB; target < {TARGET_MB:.0f} MB: "
        f"{'met' if peak < TARGET_MB else 'NOT met with the virtual radio'}"
    )
    return 0 if peak - bumble_share < TARGET_MB else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--collector", choices=["default", "burst"], default="default")
    args = parser.parse_args()
    return asyncio.run(run(args.seconds, args.collector))


if __name__ == "__main__":
    raise SystemExit(main())

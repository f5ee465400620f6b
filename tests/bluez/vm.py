"""Boot the BlueZ tier's QEMU guest once and collect what its scenarios found.

The recipe is reference/bluez-vm.md: virtme-ng boots the host's Debian kernel under software
emulation (nested KVM is not usable on this machine kind) with the host's root file system seen
read-only, so the guest runs the project's own virtual environment; one folder is shared read-write
(``--rwdir``) and carries the inputs in and the results out. Inside, tests/bluez/guest.sh loads
hci_vhci, starts dbus-daemon and hands over to tests/bluez/guest_runner.py.

    python -m tests.bluez.vm --work /tmp/bluez-run [--only first_sync,...]

prints each scenario's result; the pytest tier (tests/bluez/test_bluez.py) does the same through a
session fixture.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = REPO / "tests" / "bluez" / "guest.sh"
#: What the tier needs on the host; the Debian packages (./dev test installs them) and PyPI virtme-ng.
HOST_PROGRAMS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "bluetoothd": "bluez",
    "dbus-daemon": "dbus",
    "busybox": "busybox-static",
    "mosquitto": "mosquitto",
}
GUEST_MEMORY = "2G"
GUEST_CPUS = 2
#: A safety net for a guest that hangs: booting and every scenario under emulation on a busy 2-core
#: machine. The scenarios bound each of their own waits well inside it.
BOOT_TIMEOUT_S = float(os.environ.get("VITALGATE_BLUEZ_BOOT_TIMEOUT_S", "1500"))


@dataclass(frozen=True, slots=True)
class GuestRun:
    work: Path
    exit_code: int
    seconds: float
    results: dict[str, dict[str, Any]]

    def log_tail(self, name: str = "guest.log", lines: int = 60) -> str:
        path = self.work / name
        if not path.exists():
            return f"({name} missing)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def vng_binary() -> Path:
    return Path(sys.executable).parent / "vng"


def kernel_image() -> Path | None:
    """The newest Debian kernel in /boot (package linux-image-amd64)."""
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    return images[-1] if images else None


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


def missing_requirements() -> list[str]:
    """What is missing to boot the guest, each with the package that brings it."""
    missing = [
        f"{program} (Debian {package})" for program, package in HOST_PROGRAMS.items() if not _which(program)
    ]
    if not vng_binary().exists():
        missing.append("vng (PyPI virtme-ng, in the dev extra)")
    image = kernel_image()
    if image is None:
        missing.append("a kernel in /boot (Debian linux-image-amd64)")
    elif not os.access(image, os.R_OK):
        missing.append(f"{image} is not readable")
    return missing


def prepare(work: Path) -> None:
    """Inputs the guest reads: the clinic database of the home, enrolled on the host (fast here)."""
    from tests.bluez.home import enrol_home

    work.mkdir(parents=True, exist_ok=True)
    enrol_home(work)


def boot(work: Path, *, only: list[str] | None = None, timeout_s: float = BOOT_TIMEOUT_S) -> GuestRun:
    """Boot the guest, run the scenarios inside, and read their results back."""
    image = kernel_image()
    assert image is not None, missing_requirements()
    command = [
        str(vng_binary()),
        "--run", str(image),
        "--disable-kvm",
        "--memory", GUEST_MEMORY,
        "--cpus", str(GUEST_CPUS),
        "--rwdir", str(work),
        "--",
        "sh", str(GUEST_SCRIPT), str(work), str(REPO), sys.executable,
    ]  # fmt: skip
    if only:
        command += ["--only", ",".join(only)]
    env = dict(os.environ)
    env["PATH"] = f"{vng_binary().parent}:{env.get('PATH', '/usr/bin:/bin')}"  # vng calls virtme-run
    start = time.monotonic()
    with (work / "vng.log").open("wb") as log:
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                timeout=timeout_s,
                check=False,
            )
            code = completed.returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.monotonic() - start
    return GuestRun(work, code, seconds, read_results(work))


def read_results(work: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for path in sorted((work / "results").glob("*.json")):
        results[path.stem] = json.loads(path.read_text())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="shared folder (created; results land here)")
    parser.add_argument(
        "--only", default=None, help="comma-separated scenarios (the adapter is always set up)"
    )
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print("cannot boot the BlueZ guest; missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    prepare(args.work)
    run = boot(args.work, only=None if args.only is None else args.only.split(","))
    for name, result in run.results.items():
        print(
            f"{name:<24} {'ok' if result['ok'] else 'FAILED'} {result['seconds']:>7.1f} s  {result.get('error') or ''}"
        )
    print(f"guest exit {run.exit_code}, {run.seconds:.0f} s in all")
    return 0 if run.results and all(r["ok"] for r in run.results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

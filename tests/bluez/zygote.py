"""Start vitalgate commands as processes forked from an interpreter that has imported them already.

Inside the emulated guest (software emulation, the host's files over 9p) a fresh Python process
spends tens of seconds importing bleak, dbus-fast, pydantic and the gateway before it does anything.
The scenario runner imports those modules once, then forks this zygote before it starts any thread
or event loop; each command (``vitalgate gateway pair ...``, ``vitalgate gateway run``) is a child
forked from the zygote that runs ``vitalgate.cli.main(argv)`` with its own environment, standard
output and exit code: its own process, with its own D-Bus connection, signals and lifetime, as
systemd would run it, without paying the imports again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Spawned:
    pid: int
    log_path: Path

    @property
    def exit_code_path(self) -> Path:
        return self.log_path.with_suffix(".rc")

    def exit_code(self) -> int | None:
        """The command's exit code once it has ended by itself (None while running or if killed)."""
        try:
            return int(self.exit_code_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


class Zygote:
    """A forked helper that forks again, on request, into ``vitalgate.cli.main(argv)``."""

    def __init__(self, requests_fd: int, replies_fd: int, pid: int) -> None:
        self._requests = os.fdopen(requests_fd, "w", buffering=1)
        self._replies = os.fdopen(replies_fd, "r", buffering=1)
        self.pid = pid

    @classmethod
    def start(cls) -> Zygote:
        """Fork the zygote now: call before any thread or event loop exists in this process."""
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the zygote
            os.close(request_write)
            os.close(reply_read)
            try:
                _serve(request_read, reply_write)
            finally:
                os._exit(0)
        os.close(request_read)
        os.close(reply_write)
        return cls(request_write, reply_read, pid)

    def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> Spawned:
        """Run ``vitalgate ARGV`` with ``env`` as its whole environment; output goes to ``log_path``."""
        self._requests.write(json.dumps({"argv": argv, "env": env, "log": str(log_path)}) + "\n")
        reply = json.loads(self._replies.readline())
        return Spawned(int(reply["pid"]), log_path)

    def close(self) -> None:
        self._requests.close()
        self._replies.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(requests_fd: int, replies_fd: int) -> None:
    # Children are reaped by the kernel: their exit codes travel through files, not waitpid.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    requests = os.fdopen(requests_fd, "r", buffering=1)
    replies = os.fdopen(replies_fd, "w", buffering=1)
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            _run_command(request["argv"], request["env"], Path(request["log"]))
        replies.write(json.dumps({"pid": pid}) + "\n")


def _run_command(argv: list[str], env: dict[str, str], log_path: Path) -> None:
    """In the forked child: become ``vitalgate ARGV`` and never return."""
    code = 70  # EX_SOFTWARE unless main() says otherwise
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(env)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.argv = ["vitalgate", *argv]
        from vitalgate.cli import main

        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # reported in the command's log
        print(f"command failed: {type(error).__name__}: {error}", file=sys.stderr)
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
            Path(str(log_path.with_suffix(".rc"))).write_text(f"{code}\n")
        os._exit(code)

"""sd_notify without a dependency: READY, WATCHDOG pings and STOPPING over $NOTIFY_SOCKET.

The protocol is a datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named in NOTIFY_SOCKET (an
``@`` prefix means the abstract namespace); systemd(1) sd_notify(3). Outside systemd every call is a
no-op. The unit (deploy/systemd/vitalgate-gateway.service) uses Type=notify and WatchdogSec; the
gateway pings from its status loop, so a wedged event loop gets the process restarted.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def _send(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        logger.warning("sd_notify failed", extra={"error": str(exc)})
        return False
    return True


def notify_ready() -> bool:
    return _send("READY=1\nSTATUS=running")


def notify_watchdog() -> bool:
    return _send("WATCHDOG=1")


def notify_stopping() -> bool:
    return _send("STOPPING=1")

"""The default collector: device_drivers' procedures, turned into vitals readings, committed.

A collector gets a connected ``BleakClient`` and a :class:`gateway.meters.MeterSession`; it reads
the meter and commits what it read through the session (outbox first, then the sync position).
"""

from __future__ import annotations

from gateway.meters import Collector


class CollectorUnavailableError(RuntimeError):
    """device_drivers' procedures are not installed in this build."""


def default_collector() -> Collector:
    raise CollectorUnavailableError("device_drivers.procedures has not landed yet")

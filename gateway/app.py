"""The edge gateway process: meters -> outbox -> MQTT, plus bindings and the health report.

Composition only; each part lives in its module:
:mod:`gateway.meters` (scanner, connections), :mod:`gateway.outbox` (durable store),
:mod:`gateway.uplink` (MQTT), :mod:`gateway.bindings` (meter -> patient), :mod:`gateway.health`.

Readings are routed through the bindings when they are committed: a reading that belongs to no
patient (no binding for its meter or user slot, measured outside every binding's interval, or a meter
clock that could not be trusted; :meth:`gateway.bindings.Bindings.attribute`) is committed to the
outbox's ``unbound`` table with the reason, reported in the health report and the log, and never
published as anyone's until a later binding covers it or a person decides (:mod:`gateway.releases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from gateway import systemd
from gateway.adapter import BluezAdapter
from gateway.bindings import Bindings, PairedMeter
from gateway.health import GatewayHealth, write_status_file
from gateway.meters import BleConfig, Collector, MeterManager
from gateway.outbox import (
    DEFAULT_CAPACITY,
    DEFAULT_UNBOUND_CAPACITY,
    CommitResult,
    Outbox,
    OutboxError,
    OutboxStats,
    SyncPosition,
    UnboundReading,
)
from gateway.releases import UnboundReleases
from gateway.uplink import Forwarder, ForwarderConfig, MqttUplink, UplinkConfig, UplinkError
from vitals.payload import MAX_APPLIED_COMMANDS_REPORTED, GatewayConfig, GatewayStatus, UnboundReason
from vitals.readings import BloodPressureReading, Reading
from vitals.topics import commands_topic, status_topic

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    gateway_id: str
    state_dir: Path
    uplink: UplinkConfig
    outbox_path: Path | None = None
    bindings_path: Path | None = None
    outbox_capacity: int = DEFAULT_CAPACITY
    unbound_capacity: int = DEFAULT_UNBOUND_CAPACITY
    status_interval_s: float = 60.0
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    ble: BleConfig = field(default_factory=BleConfig)

    @property
    def effective_outbox_path(self) -> Path:
        return self.outbox_path or self.state_dir / "outbox.sqlite3"

    @property
    def effective_bindings_path(self) -> Path:
        return self.bindings_path or self.state_dir / "bindings.json"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"


class Gateway:
    def __init__(
        self,
        options: GatewayOptions,
        collector: Collector,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self.options = options
        self.outbox = Outbox(
            options.effective_outbox_path,
            capacity=options.outbox_capacity,
            unbound_capacity=options.unbound_capacity,
        )
        self.bindings = Bindings(options.effective_bindings_path, options.gateway_id)
        self.health = GatewayHealth(options.gateway_id, on_sync=self._synced)
        self._syncs_to_keep: dict[str, datetime] = {}  # last sync times not yet in the outbox
        self._syncs_waiting = asyncio.Event()
        self._sync_write: asyncio.Task[None] | None = None
        self._collector = collector
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._status_now = asyncio.Event()
        self._was_full = False
        self.uplink: MqttUplink | None = None
        self.forwarder: Forwarder | None = None
        self.meters: MeterManager | None = None
        self.releases = UnboundReleases(options.gateway_id, self.outbox, on_change=self._released)

    # -- committing readings ---------------------------------------------------------------------

    async def commit(
        self, meter: PairedMeter, readings: Sequence[Reading], position: SyncPosition | None
    ) -> CommitResult:
        """Route readings through the bindings and commit them (and the sync position) durably."""
        bound: list[Reading] = []
        unbound: list[UnboundReading] = []
        for reading in readings:
            user_id = reading.user_id if isinstance(reading, BloodPressureReading) else None
            found = self.bindings.attribute(reading)
            if isinstance(found, UnboundReason):
                aside = reading.model_copy(update={"patient_id": None})
                unbound.append(UnboundReading(aside, reading.device.meter_key, user_id, found))
            else:
                bound.append(reading.model_copy(update={"patient_id": found}))
        try:
            result = await asyncio.to_thread(
                self.outbox.commit, bound, unbound=unbound, sync_position=position
            )
        finally:
            # stats() waits on the outbox lock, which a commit holds through its fsync: off the loop.
            self._check_full(await asyncio.to_thread(self.outbox.stats))
        if result.added_unbound:
            slots = sorted({str(u.user_id) for u in unbound})
            reasons = sorted({u.reason.value for u in unbound})
            logger.warning(
                "readings attributed to no patient kept aside, not published",
                extra={
                    "meter_key": meter.meter_key,
                    "user_slots": slots,
                    "reasons": reasons,
                    "readings": result.added_unbound,
                },
            )
            self._status_now.set()
        if self.forwarder is not None and result.added:
            self.forwarder.wake()
        return result

    def _check_full(self, stats: OutboxStats) -> None:
        if stats.full != self._was_full:
            self._was_full = stats.full
            self._status_now.set()
            extra = {"outbox_depth": stats.depth, "outbox_capacity": stats.capacity}
            if stats.full:
                logger.error("outbox full: meters are not read until the clinic acks readings", extra=extra)
            else:
                logger.info("outbox has room again: reading meters", extra=extra)

    async def _outbox_stats(self) -> OutboxStats:
        stats = await asyncio.to_thread(self.outbox.stats)
        self._check_full(stats)
        return stats

    async def sync_position(self, meter_key: str) -> SyncPosition | None:
        return await asyncio.to_thread(self.outbox.sync_position, meter_key)

    async def _on_config(self, config: GatewayConfig) -> None:
        if await asyncio.to_thread(self.bindings.apply_config, config):
            await self.releases.reattribute(self.bindings.attribute)

    def _released(self, adopted: bool) -> None:
        """Readings left the unbound table (a new binding covers them, or a person decided)."""
        self._status_now.set()
        if adopted and self.forwarder is not None:
            self.forwarder.wake()

    # -- last sync times, kept across restarts ----------------------------------------------------

    def _synced(self, meter_key: str, when: datetime) -> None:
        self._syncs_to_keep[meter_key] = when
        self._syncs_waiting.set()

    async def _keep_syncs(self) -> None:
        """Write each meter's last sync time to the outbox, off the event loop, in the order set.
        The write runs on in its thread when the caller is cancelled (a stop): :meth:`run` awaits it
        before the final write and before the outbox closes."""
        pending, self._syncs_to_keep = self._syncs_to_keep, {}
        if not pending:
            return
        self._sync_write = asyncio.create_task(self._write_syncs(pending), name="last-syncs-write")
        await asyncio.shield(self._sync_write)

    async def _write_syncs(self, pending: dict[str, datetime]) -> None:
        try:
            await asyncio.to_thread(self.outbox.record_syncs, pending)
        except OutboxError as exc:  # reported from memory meanwhile; written with the next sync
            for meter_key, when in pending.items():
                self._syncs_to_keep.setdefault(meter_key, when)
            logger.warning(
                "last sync times not kept", extra={"meters": len(pending), "error": str(exc)[:200]}
            )

    async def _sync_keeper(self) -> None:
        while True:
            await self._syncs_waiting.wait()
            self._syncs_waiting.clear()
            await self._keep_syncs()

    async def _restore_syncs(self) -> None:
        """Last sync times of the paired meters, as the outbox kept them before the restart."""
        paired = {meter.meter_key for meter in self.bindings.meters}
        for sync in await asyncio.to_thread(self.outbox.meter_syncs):
            if sync.meter_key in paired:
                self.health.restore(sync.meter_key, sync.last_sync_at, sync.last_sequence_number)

    # -- status ----------------------------------------------------------------------------------

    async def status(self, *, online: bool = True) -> GatewayStatus:
        stats = await asyncio.to_thread(self.outbox.stats)
        unbound = await asyncio.to_thread(self.outbox.unbound_groups)
        applied = await asyncio.to_thread(self.outbox.applied_commands, MAX_APPLIED_COMMANDS_REPORTED)
        return self.health.report(stats, online=online, unbound=unbound, applied_commands=applied)

    async def _status_loop(self) -> None:
        while True:
            if self.releases.pending:  # decisions that waited for room in the outbox
                await self.releases.apply_pending()
            report = await self.status()
            await asyncio.to_thread(write_status_file, self.options.status_path, report)
            if self.uplink is not None and self.uplink.connected:
                try:
                    self.uplink.publish(
                        status_topic(self.options.gateway_id), report.model_dump_json(), retain=True
                    )
                except UplinkError as exc:
                    logger.warning("status not published", extra={"error": str(exc)})
            if self.uplink is not None and self.uplink.last_error:
                self.health.error(f"mqtt: {self.uplink.last_error}")
            systemd.notify_watchdog()
            self._status_now.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # arrives as the event is set (CPython gh-86296), and the gateway would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.status_interval_s):
                    await self._status_now.wait()

    # -- run -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled); close everything cleanly."""
        opts = self.options
        await asyncio.to_thread(self.outbox.open)
        await asyncio.to_thread(self.bindings.load)
        await self._restore_syncs()
        will = GatewayStatus(gateway_id=opts.gateway_id, online=False, reported_at=datetime.now(UTC))
        self.uplink = MqttUplink(opts.uplink, will=will)
        self.forwarder = Forwarder(
            opts.gateway_id, self.outbox, self.uplink, opts.forwarder, on_config=self._on_config
        )
        self.uplink.subscribe(commands_topic(opts.gateway_id), self.releases.handle)
        self.uplink.on_connected(self._status_now.set)
        self.meters = MeterManager(
            opts.ble,
            self.bindings,
            self.health,
            self._collector,
            self.commit,
            self.sync_position,
            outbox_stats=self._outbox_stats,
            scanner_backend=self._scanner_backend,
            client_backend=self._client_backend,
            # bleak's own backend on Linux is BlueZ: its adapter is watched and recovered.
            adapter=BluezAdapter() if self._scanner_backend is None and sys.platform == "linux" else None,
        )
        stats = await asyncio.to_thread(self.outbox.stats)
        logger.info(
            "gateway starting",
            extra={
                "gateway_id": opts.gateway_id,
                "outbox_depth": stats.depth,
                "outbox_capacity": stats.capacity,
                "paired_meters": len(self.bindings.meters),
            },
        )
        await self.uplink.start()
        tasks = [
            asyncio.create_task(self.forwarder.run(), name="forwarder"),
            asyncio.create_task(self.meters.run(), name="meters"),
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._sync_keeper(), name="last-syncs"),
        ]
        systemd.notify_ready()
        stop_wait = asyncio.create_task((stop or asyncio.Event()).wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            systemd.notify_stopping()
            for task in [*tasks, stop_wait]:
                task.cancel()
            await asyncio.gather(*tasks, stop_wait, return_exceptions=True)
            if self._sync_write is not None:
                # The keeper's write still in its thread lands first, then the last one.
                await asyncio.gather(self._sync_write, return_exceptions=True)
            await self._keep_syncs()
            final = await self.status(online=False)
            await asyncio.to_thread(write_status_file, opts.status_path, final)
            await self.uplink.stop(final_status=final)
            await asyncio.to_thread(self.outbox.close)
            logger.info("gateway stopped", extra={"gateway_id": opts.gateway_id})

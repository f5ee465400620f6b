"""A TCP proxy on loopback that can black-hole the link (reliability.md §(a) 8; §6: fault injection
with an in-process asyncio TCP proxy, since no Toxiproxy server is packaged here).

Normal: bytes flow both ways. Partitioned: the link is a black hole, as a cut network is to TCP:
- new connections are accepted and everything they send is read and dropped; nothing is ever
  answered (a client waiting for CONNACK waits until its own timeout);
- open connections stop forwarding: what either side sends is read and dropped, and a side that
  closes is not told to the other (no FIN crosses a black hole).
Healed: connections opened or black-holed during the partition are closed (their byte streams lost
data, as a connection that timed out would be); new ones flow normally.

The proxy runs its own event loop in a thread, so synchronous and async tests use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field

READ_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    broken: bool = False  # saw a partition: its streams lost bytes

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class BlackHoleProxy:
    """`listen_port` forwards to `target_host:target_port` until `partition()`; `heal()` restores."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host, self.target_port, self.host = target_host, target_port, host
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            self.port: int = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blackhole-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._partitioned = False
        self.connections = 0
        self.dropped_bytes = 0

    # -- control (any thread) ------------------------------------------------------------------------
    def start(self) -> BlackHoleProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def partition(self) -> None:
        self._call(self._partition)

    def heal(self) -> None:
        self._call(self._heal)

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> BlackHoleProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, action: object) -> None:
        async def run() -> None:
            action()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- in the proxy's loop -----------------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)

    def _partition(self) -> None:
        self._partitioned = True
        for link in self._links:
            link.broken = True

    def _heal(self) -> None:
        self._partitioned = False
        for link in [link for link in self._links if link.broken]:
            link.close()
            self._links.discard(link)

    def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(writer)
        self._links.add(link)
        if self._partitioned:
            link.broken = True
            await self._drain_into_nothing(reader)  # accepted, never answered
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            link.close()  # the broker is down: refused, as the broker itself would refuse
            self._links.discard(link)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _drain_into_nothing(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(READ_CHUNK):
                self.dropped_bytes += len(data)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while data := await reader.read(READ_CHUNK):
                if link.broken:
                    self.dropped_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        # One side closed. Through a black hole the other side never hears of it; otherwise pass
        # the close on.
        if not link.broken:
            link.close()
            self._links.discard(link)

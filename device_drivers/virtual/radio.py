"""VirtualRadio: the air between the gateway and the virtual meters.

A radio holds

* a bumble ``LocalLink`` (the shared "air") when the meters live in this process,
* the gateway's :class:`~device_drivers.virtual.central.VirtualCentral` (its adapter),
* the meters attached to the link,

and hands out bleak backend classes bound to its central::

    async with VirtualRadio() as radio:
        cuff = await radio.add_meter(make_meter("omron-like", clock=clock))
        scanner = BleakScanner(backend=radio.scanner_backend)
        client = BleakClient(address, backend=radio.client_backend, pair=True)

For meters in another process (``vitalgate simulate --expose tcp-server:127.0.0.1:7001``), the
gateway side uses ``await VirtualRadio.remote("tcp-client:127.0.0.1:7001")``: the central's host
stack runs here, its controller sits on the simulator's link (bumble ``controllers`` app pattern).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import logging
import socket
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bumble.keys import JsonKeyStore, KeyStore
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import Transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from device_drivers.virtual.backend import VirtualBleakClient, VirtualBleakScanner
from device_drivers.virtual.central import DEFAULT_CENTRAL_ADDRESS, PasskeyAgent, VirtualCentral
from device_drivers.virtual.controller import VirtualController, VirtualLink

if TYPE_CHECKING:
    from device_drivers.virtual.meter import VirtualMeter

logger = logging.getLogger(__name__)


class VirtualRadioError(Exception):
    """The radio cannot do this (e.g. attach a meter to a radio without a local link)."""


def bond_store(path: Path | None, central_address: str) -> KeyStore | None:
    """A JSON bond file for the central at ``central_address``, or None for in-memory bonds."""
    if path is None:
        return None
    return JsonKeyStore(namespace=central_address, filename=str(path))


def fixed_passkey_agent(passkey: int) -> PasskeyAgent:
    """An agent that always types ``passkey`` (e.g. the PIN ``vitalgate simulate --passkey`` prints)."""

    async def agent(_address: str) -> int | None:
        return passkey

    return agent


def _bind_scanner(central: VirtualCentral) -> type[VirtualBleakScanner]:
    class BoundVirtualBleakScanner(VirtualBleakScanner):
        _central = central

    BoundVirtualBleakScanner.__name__ = "VirtualBleakScanner"
    return BoundVirtualBleakScanner


def _bind_client(central: VirtualCentral) -> type[VirtualBleakClient]:
    class BoundVirtualBleakClient(VirtualBleakClient):
        _central = central

    BoundVirtualBleakClient.__name__ = "VirtualBleakClient"
    return BoundVirtualBleakClient


class VirtualRadio:
    """A link, a gateway central and the meters on it; produces bleak backend classes."""

    def __init__(
        self,
        *,
        central: VirtualCentral | None = None,
        link: LocalLink | None = None,
        passkey_agent: PasskeyAgent | None = None,
        central_address: str = DEFAULT_CENTRAL_ADDRESS,
        keystore_path: Path | None = None,
    ) -> None:
        if central is None:
            self.link: LocalLink | None = link if link is not None else VirtualLink()
            central = VirtualCentral.on_link(
                self.link,
                address=central_address,
                passkey_agent=passkey_agent,
                keystore=bond_store(keystore_path, central_address),
            )
        else:
            self.link = link
        self.central = central
        if self.central.passkey_agent is None:
            # Default agent: the user reads the PIN off the meter's display (in-process meters only).
            self.central.passkey_agent = self._read_passkey_from_meter_display
        self.meters: list[VirtualMeter] = []
        self.scanner_backend: type[VirtualBleakScanner] = _bind_scanner(self.central)
        self.client_backend: type[VirtualBleakClient] = _bind_client(self.central)
        self._served: list[Transport] = []

    @classmethod
    async def remote(
        cls,
        transport_spec: str,
        *,
        passkey_agent: PasskeyAgent | None = None,
        central_address: str = DEFAULT_CENTRAL_ADDRESS,
        keystore_path: Path | None = None,
    ) -> VirtualRadio:
        """A radio whose central reaches meters through a bumble HCI transport (another process, USB).

        ``keystore_path``: keep bonds in this JSON file so they survive a gateway restart, as BlueZ
        keeps them under /var/lib/bluetooth (default: in memory).
        """
        central = await VirtualCentral.over_transport(
            transport_spec,
            address=central_address,
            passkey_agent=passkey_agent,
            keystore=bond_store(keystore_path, central_address),
        )
        radio = cls(central=central)
        await central.start()
        return radio

    async def start(self) -> None:
        await self.central.start()

    async def close(self) -> None:
        # Meters first, while the central is still on the link to hear their links drop.
        for meter in self.meters:
            await meter.stop()
        await self.central.close()
        for transport in self._served:
            await transport.close()
            # bumble's tcp-server transport keeps its listening server open after close().
            server = getattr(transport, "server", None)
            if isinstance(server, asyncio.base_events.Server):
                server.close()
                await server.wait_closed()
        self._served.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def add_meter(self, meter: VirtualMeter) -> VirtualMeter:
        """Put ``meter`` on this radio's link and switch it on."""
        if self.link is None:
            raise VirtualRadioError("this radio has no local link: run meters in the simulator process")
        meter.attach(self.link)
        await meter.start()
        self.meters.append(meter)
        return meter

    def meter_at(self, address: str) -> VirtualMeter | None:
        for meter in self.meters:
            if meter.address == address.upper():
                return meter
        return None

    async def _read_passkey_from_meter_display(self, address: str) -> int | None:
        meter = self.meter_at(address)
        return None if meter is None else meter.displayed_passkey

    async def serve_controller(self, transport_spec: str, *, public_address: str | None = None) -> Transport:
        """Expose a controller on this link through an HCI transport (e.g. ``tcp-server:_:7001``).

        A gateway in another process then opens ``tcp-client:127.0.0.1:7001`` as its adapter.

        ``public_address``: the controller's BD_ADDR, as an adapter has one from its factory
        (bumble's ``Controller`` answers Read BD_ADDR with 00:00:00:00:00:00 by default, which suits
        bumble's own host: it then bonds with its static random address). Linux needs one: without
        it the kernel connects from the static random address BlueZ sets, except while it scans
        actively, when ``hci_set_random_addr_sync`` (net/bluetooth/hci_sync.c) defers the change
        back from the scan's non-resolvable private address because a connection is being
        initiated; the gateway's connect during its scan then reaches the meter from an address the
        meter holds no bond for, and the meter refuses the encryption (PIN or Key Missing). With a
        public address the kernel connects from it, the identity the meter bonded with.
        """
        if self.link is None:
            raise VirtualRadioError("this radio has no local link to serve")
        transport = await open_transport(transport_spec)
        self._link_controller(transport, public_address)
        return transport

    async def serve_controller_on_free_port(self, host: str = "127.0.0.1") -> tuple[Transport, int]:
        """Like :meth:`serve_controller` with ``tcp-server`` on a free port; returns the port."""
        if self.link is None:
            raise VirtualRadioError("this radio has no local link to serve")
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
        # protocol is TCP, and without it every ATT round trip waits for a delayed ACK (~40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        transport = await open_tcp_server_transport_with_socket(sock)
        self._link_controller(transport, None)
        return transport, port

    def _link_controller(self, transport: Transport, public_address: str | None) -> None:
        VirtualController(
            f"served-{len(self._served)}",
            host_source=transport.source,
            host_sink=transport.sink,
            link=self.link,
            public_address=public_address,
        )
        self._served.append(transport)

"""Reach virtual meters from a gateway process (demo, process-level tests, a bumble USB dongle).

``vitalgate gateway run --virtual-radio tcp-client:127.0.0.1:7001`` drives a controller that the
simulator (``vitalgate simulate --expose ...``) serves on its link; the gateway then runs the same
bleak calls as on BlueZ, through the bleak backend of device_drivers.virtual. Bonds are kept in a
JSON key store in the gateway's state directory, as BlueZ keeps them in /var/lib/bluetooth, so a
restarted gateway still holds them.

bumble is imported only when this is used: a production gateway install needs no bumble.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

if TYPE_CHECKING:
    from device_drivers.virtual.radio import VirtualRadio

BONDS_NAMESPACE = "vitalgate-gateway"


@dataclass
class VirtualBackends:
    radio: VirtualRadio
    scanner_backend: type[BaseBleakScanner]
    client_backend: type[BaseBleakClient]

    async def close(self) -> None:
        await self.radio.close()


async def open_virtual_radio(transport_spec: str, bonds_file: Path) -> VirtualBackends:
    from bumble.keys import JsonKeyStore

    from device_drivers.virtual.central import VirtualCentral
    from device_drivers.virtual.radio import VirtualRadio

    bonds_file.parent.mkdir(parents=True, exist_ok=True)
    keystore = JsonKeyStore(BONDS_NAMESPACE, str(bonds_file))
    central = await VirtualCentral.over_transport(transport_spec, keystore=keystore)
    radio = VirtualRadio(central=central)
    await central.start()
    return VirtualBackends(radio, radio.scanner_backend, radio.client_backend)

"""Connecting to a meter with what its advertisement says about it.

Some quirks must be applied before the first GATT operation, so they cannot wait for Device
Information (device_drivers.quirks: ``ConnectionQuirks``, keyed on the advertised local name and
manufacturer data). The A&D UA-651BLE switches off with "E 10" when service discovery comes too soon
after the link is up; A&D's own sample waits 2 s (reference/ble-health-profiles.md §2.7).

bleak runs the MTU exchange and service discovery inside ``connect``, so the wait is handed to the
backend as ``settle_delay_s``: the virtual backend (device_drivers.virtual.backend) waits between the
link coming up and its first ATT request. bleak's BlueZ backend ignores the argument: bluetoothd
starts its own GATT client (MTU exchange, discovery) as soon as the link is up, before bleak sees
the connection, so on BlueZ no client can delay it.
"""

from __future__ import annotations

import logging

from bleak import BleakClient
from bleak.backends.scanner import AdvertisementData

from device_drivers.quirks import ConnectionQuirks, connection_quirks_for

logger = logging.getLogger(__name__)


def quirks_from_advertisement(advertisement: AdvertisementData | None) -> ConnectionQuirks:
    """The connection quirks selected by an advertisement (standard when none was seen)."""
    if advertisement is None:
        return connection_quirks_for(None, {})
    return connection_quirks_for(advertisement.local_name, advertisement.manufacturer_data)


async def connect_meter(client: BleakClient, advertisement: AdvertisementData | None) -> ConnectionQuirks:
    """Connect ``client``, applying the connection quirks its advertisement selects; returns them."""
    quirks = quirks_from_advertisement(advertisement)
    if quirks.settle_delay_after_connect_s > 0:
        logger.info(
            "meter needs a settle delay before GATT",
            extra={"quirks": quirks.name, "settle_delay_s": quirks.settle_delay_after_connect_s},
        )
        await client.connect(settle_delay_s=quirks.settle_delay_after_connect_s)
    else:
        await client.connect()
    return quirks

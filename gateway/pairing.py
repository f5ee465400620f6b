"""``vitalgate gateway pair``: list meters advertising now, bond one, bind it to a patient.

Bonding goes through bleak (``BleakClient.pair``). On Linux, BlueZ needs a pairing agent to answer a
passkey request; :mod:`gateway.bluez_agent` registers one for the duration of the command only
(reliability.md §5.4, peers.md §1.6). With the virtual meters the radio's agent plays that part.

After bonding, the meter's identity is read from its Device Information service (0x180A) and the
meter is recorded in the bindings file with its address; the gateway then talks only to that
address, and only over a link encrypted with the bond. The bond's security level (authenticated or
Just Works, Secure Connections or legacy, key size: gateway.bond_security) is recorded too, and a
session refuses a link whose bond is weaker; pairing again here is how a person accepts a new bond.
A meter already paired at another address is refused unless ``replace=True`` (an operator
re-pairing a meter that changed its address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from device_drivers.procedures.connect import connect_meter, quirks_from_advertisement
from device_drivers.procedures.device_info import read_meter_identity
from device_drivers.profiles.uuids import BLOOD_PRESSURE_SERVICE, GLUCOSE_SERVICE
from device_drivers.readings import device_identity
from gateway.adapter import AdapterError, BluezAdapter, bond_security_of
from gateway.bindings import Bindings, MeterProfile, PairedMeter
from gateway.bond_security import BondSecurity
from gateway.meters import HEALTH_SERVICE_UUIDS, scanner_options
from vitals.payload import MeterBinding
from vitals.readings import DeviceIdentity

logger = logging.getLogger(__name__)

PAIR_TIMEOUT_S = 60.0  # the person has to read and type a PIN
CONNECT_TIMEOUT_S = 20.0
DISCONNECT_TIMEOUT_S = 10.0
ADVERTISEMENT_WAIT_S = 10.0  # a meter in pairing mode advertises every second or faster


class PairingError(Exception):
    """The meter could not be paired or bound."""


@dataclass(frozen=True, slots=True)
class Candidate:
    address: str
    name: str | None
    rssi: int
    profile: MeterProfile
    already_paired: bool


def profile_of(service_uuids: list[str]) -> MeterProfile | None:
    uuids = {u.lower() for u in service_uuids}
    if BLOOD_PRESSURE_SERVICE in uuids:
        return MeterProfile.BLOOD_PRESSURE
    if GLUCOSE_SERVICE in uuids:
        return MeterProfile.GLUCOSE
    return None


async def discover(
    bindings: Bindings, *, duration_s: float = 10.0, scanner_backend: type[BaseBleakScanner] | None = None
) -> list[Candidate]:
    """Meters advertising the Blood Pressure or Glucose service during ``duration_s``."""
    found: dict[str, Candidate] = {}

    def seen(device: BLEDevice, advertisement: AdvertisementData) -> None:
        profile = profile_of(advertisement.service_uuids)
        if profile is None:
            return
        address = device.address.upper()
        found[address] = Candidate(
            address=address,
            name=advertisement.local_name or device.name,
            rssi=advertisement.rssi,
            profile=profile,
            already_paired=bindings.meter_at(address) is not None,
        )

    scanner = BleakScanner(
        seen, service_uuids=HEALTH_SERVICE_UUIDS, backend=scanner_backend, **scanner_options(scanner_backend)
    )
    await asyncio.wait_for(scanner.start(), CONNECT_TIMEOUT_S)
    try:
        await asyncio.sleep(duration_s)  # the scan window itself
    finally:
        await asyncio.wait_for(scanner.stop(), CONNECT_TIMEOUT_S)
    return sorted(found.values(), key=lambda c: -c.rssi)


async def find_advertisement(
    address: str, *, scanner_backend: type[BaseBleakScanner] | None, wait_s: float = ADVERTISEMENT_WAIT_S
) -> tuple[BLEDevice, AdvertisementData] | None:
    """The first advertisement of the meter at ``address`` heard within ``wait_s``, or None."""
    heard: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = asyncio.get_running_loop().create_future()

    def seen(device: BLEDevice, advertisement: AdvertisementData) -> None:
        if device.address.upper() == address.upper() and not heard.done():
            heard.set_result((device, advertisement))

    scanner = BleakScanner(seen, backend=scanner_backend, **scanner_options(scanner_backend))
    await asyncio.wait_for(scanner.start(), CONNECT_TIMEOUT_S)
    try:
        return await asyncio.wait_for(heard, wait_s)
    except TimeoutError:
        logger.warning("meter not heard before pairing: connecting without its quirks",
                       extra={"peer_address": address})  # fmt: skip
        return None
    finally:
        await asyncio.wait_for(scanner.stop(), CONNECT_TIMEOUT_S)


async def read_identity(client: BleakClient, address: str) -> DeviceIdentity:
    """The meter's identity from its Device Information service, exactly as the collector builds it
    (device_drivers.readings.device_identity), so the paired meter_key matches its readings'."""
    identity = await read_meter_identity(client)
    information = identity.device_information
    if not information.manufacturer_name or not information.model_number:
        raise PairingError("the meter does not report its manufacturer and model (Device Information)")
    return device_identity(information, address=address.upper())


async def _bond_security(
    client: BleakClient, client_backend: type[BaseBleakClient] | None
) -> BondSecurity | None:
    """The level of the bond just made (recorded with the meter; sessions refuse a weaker one).
    bleak's own backend on Linux is BlueZ: its bond file is read (gateway.bond_security)."""
    if client_backend is not None or not sys.platform.startswith("linux"):
        return await bond_security_of(client, None)
    adapter = BluezAdapter()
    try:
        return await bond_security_of(client, adapter)
    except (AdapterError, OSError):  # D-Bus out of reach: the level is not recorded, nothing checked
        return None
    finally:
        await adapter.close()


async def pair(
    bindings: Bindings,
    address: str,
    *,
    profile: MeterProfile,
    patient_id: str | None,
    user_id: int | None = None,
    passkey: int | None = None,
    replace: bool = False,
    client_backend: type[BaseBleakClient] | None = None,
    scanner_backend: type[BaseBleakScanner] | None = None,
    advertisement: AdvertisementData | None = None,
) -> PairedMeter:
    """Bond with the meter at ``address``, read its identity, record and (optionally) bind it.

    The connection gets the quirks the meter's advertisement selects (an A&D cuff's settle delay:
    device_drivers.procedures.connect), as the gateway's sessions do: ``advertisement`` when the
    caller has it, else the meter's advertisement is looked for with ``scanner_backend`` (bleak's
    own scanner when both backends are bleak's own). A radio whose scanner is not given, or a meter
    not heard within the wait, is connected without.
    """
    address = address.upper()
    target: BLEDevice | str = address
    if advertisement is None and (scanner_backend is not None or client_backend is None):
        seen = await find_advertisement(address, scanner_backend=scanner_backend)
        if seen is not None:
            target, advertisement = seen
    client = BleakClient(target, timeout=CONNECT_TIMEOUT_S, backend=client_backend)
    settle_s = quirks_from_advertisement(advertisement).settle_delay_after_connect_s
    await asyncio.wait_for(connect_meter(client, advertisement), CONNECT_TIMEOUT_S + settle_s)
    try:
        pair_args = {} if passkey is None else {"passkey": passkey}
        try:
            await asyncio.wait_for(client.pair(**pair_args), PAIR_TIMEOUT_S)
        except (BleakError, TimeoutError) as exc:
            raise PairingError(f"bonding failed: {exc}") from exc
        identity = await read_identity(client, address)
        security = await _bond_security(client, client_backend)
    finally:
        with contextlib.suppress(BleakError, TimeoutError, OSError):
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)
    existing = bindings.meter_with_key(identity.meter_key)
    if existing is not None and existing.address != address and not replace:
        logger.error(
            "pairing refused: this meter identity is already paired at another address",
            extra={
                "meter_key": identity.meter_key,
                "peer_address": address,
                "paired_address": existing.address,
            },
        )
        raise PairingError("meter identity already paired at another address (use --replace to move it)")
    if existing is not None and existing.address != address:
        bindings.remove_meter(existing.address)
    meter = PairedMeter(
        address=address,
        meter_key=identity.meter_key,
        profile=profile,
        paired_at=datetime.now(UTC),
        security=security,
    )
    binding = (
        None
        if patient_id is None
        else MeterBinding(meter_key=identity.meter_key, user_id=user_id, patient_id=patient_id)
    )
    await asyncio.to_thread(bindings.add_paired_meter, meter, binding)
    logger.info(
        "meter paired",
        extra={
            "meter_key": meter.meter_key,
            "peer_address": address,
            "bound": patient_id is not None,
            "bond_security": None if security is None else security.describe(),
        },
    )
    return meter

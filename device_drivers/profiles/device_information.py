"""Device Information service 0x180A: UTF-8 strings and PnP ID.

Strings (manufacturer 0x2A29, model 0x2A24, serial 0x2A25, hardware 0x2A27, firmware 0x2A26,
software 0x2A28) are UTF-8 without a terminator (GATT Specification Supplement, utf8s). Some meters
pad with NUL bytes; trailing NULs are stripped. The manufacturer and model strings key the quirk
table (reference/ble-health-profiles.md §2.6, xDrip keys quirks on the manufacturer name).

PnP ID 0x2A50: vendor ID source uint8 (1 Bluetooth SIG, 2 USB-IF) | vendor ID uint16 |
product ID uint16 | product version uint16.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._wire import ByteReader, uint_le
from .errors import DecodeError, EncodeError

PNP_ID_SIZE = 7
PNP_VENDOR_ID_SOURCE_OFFSET = 0
PNP_VENDOR_ID_SOURCE_BLUETOOTH_SIG = 1
PNP_VENDOR_ID_SOURCE_USB_IF = 2


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    """What a meter says about itself. Any field may be None when the characteristic is absent."""

    manufacturer_name: str | None = None
    model_number: str | None = None
    serial_number: str | None = None
    hardware_revision: str | None = None
    firmware_revision: str | None = None
    software_revision: str | None = None


@dataclass(frozen=True, slots=True)
class PnpId:
    vendor_id_source: int
    vendor_id: int
    product_id: int
    product_version: int


def decode_utf8_string(data: bytes) -> str:
    """Decode a Device Information string. Raises DecodeError at the first invalid UTF-8 byte."""
    try:
        return bytes(data).decode("utf-8").rstrip("\x00")
    except UnicodeDecodeError as error:
        raise DecodeError(error.start, f"invalid UTF-8 ({error.reason})", characteristic="string") from None


def encode_utf8_string(value: str) -> bytes:
    """Encode a Device Information string (UTF-8, no terminator)."""
    return value.encode("utf-8")


def decode_pnp_id(data: bytes) -> PnpId:
    """Decode PnP ID 0x2A50 (exactly 7 bytes)."""
    try:
        reader = ByteReader(data)
        source = reader.uint8("vendor ID source")
        if source not in (PNP_VENDOR_ID_SOURCE_BLUETOOTH_SIG, PNP_VENDOR_ID_SOURCE_USB_IF):
            raise DecodeError(PNP_VENDOR_ID_SOURCE_OFFSET, f"vendor ID source {source} is reserved")
        vendor_id = reader.uint16("vendor ID")
        product_id = reader.uint16("product ID")
        value = PnpId(source, vendor_id, product_id, reader.uint16("product version"))
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("PnP ID") from None
    return value


def encode_pnp_id(value: PnpId) -> bytes:
    """Encode PnP ID 0x2A50."""
    if value.vendor_id_source not in (PNP_VENDOR_ID_SOURCE_BLUETOOTH_SIG, PNP_VENDOR_ID_SOURCE_USB_IF):
        raise EncodeError(f"vendor ID source {value.vendor_id_source} is reserved")
    return (
        bytes((value.vendor_id_source,))
        + uint_le(value.vendor_id, 2, "vendor ID")
        + uint_le(value.product_id, 2, "product ID")
        + uint_le(value.product_version, 2, "product version")
    )

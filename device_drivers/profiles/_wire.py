"""Bounds-checked little-endian reader and writer shared by the codecs (internal).

Bluetooth GATT values are little-endian (Core Specification Vol 3, Part G, 3.3.3.x and the
GATT Specification Supplement, "Data types"). The reader raises :class:`DecodeError` naming the
offset of the first missing byte, so a truncated value never surfaces as ``IndexError``.
"""

from __future__ import annotations

from .errors import DecodeError, EncodeError


class ByteReader:
    """Read fixed-size little-endian fields from a characteristic value, tracking the offset."""

    __slots__ = ("_data", "offset")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = bytes(data)
        self.offset = offset

    @property
    def remaining(self) -> int:
        """Bytes left after the current offset."""
        return len(self._data) - self.offset

    def take(self, size: int, what: str) -> bytes:
        """Return the next ``size`` bytes or raise DecodeError naming ``what`` and the offset."""
        if self.remaining < size:
            raise DecodeError(
                self.offset,
                f"{what} needs {size} byte(s), {max(self.remaining, 0)} left",
            )
        chunk = self._data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def uint8(self, what: str) -> int:
        return self.take(1, what)[0]

    def sint8(self, what: str) -> int:
        return int.from_bytes(self.take(1, what), "little", signed=True)

    def uint16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def sint16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little", signed=True)

    def uint32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def rest(self) -> bytes:
        """Return all remaining bytes (possibly empty)."""
        chunk = self._data[self.offset :]
        self.offset = len(self._data)
        return chunk

    def expect_end(self) -> None:
        """Raise DecodeError if bytes remain that no flagged field accounts for."""
        if self.remaining:
            raise DecodeError(self.offset, f"{self.remaining} unexpected trailing byte(s)")


def uint_le(value: int, size: int, what: str) -> bytes:
    """Encode an unsigned little-endian integer, raising EncodeError when out of range."""
    if not 0 <= value < 1 << (8 * size):
        raise EncodeError(f"{what} {value} does not fit in uint{8 * size}")
    return value.to_bytes(size, "little")


def sint_le(value: int, size: int, what: str) -> bytes:
    """Encode a signed little-endian integer, raising EncodeError when out of range."""
    bound = 1 << (8 * size - 1)
    if not -bound <= value < bound:
        raise EncodeError(f"{what} {value} does not fit in sint{8 * size}")
    return value.to_bytes(size, "little", signed=True)

"""Typed errors raised by the profile codecs.

Every decoder in :mod:`device_drivers.profiles` either returns a frozen dataclass or raises
:class:`DecodeError`; no other exception escapes a decoder (a hypothesis test fuzzes each one).
Encoders raise :class:`EncodeError` for values that cannot be represented on the wire.
"""

from __future__ import annotations


class ProfileCodecError(Exception):
    """Root of the codec error tree."""


class DecodeError(ProfileCodecError):
    """Bytes that cannot be decoded.

    Attributes:
        offset: byte offset into the characteristic value where decoding failed.
        reason: what is wrong there, in words (no personal data; the bytes are not repeated).
        characteristic: short name of the characteristic being decoded, when known.
    """

    def __init__(self, offset: int, reason: str, *, characteristic: str | None = None) -> None:
        self.offset = offset
        self.reason = reason
        self.characteristic = characteristic
        where = f"{characteristic} " if characteristic else ""
        super().__init__(f"{where}offset {offset}: {reason}")

    def with_characteristic(self, characteristic: str) -> DecodeError:
        """Return a copy that names the characteristic (keeps offset and reason)."""
        return type(self)(self.offset, self.reason, characteristic=characteristic)


class EncodeError(ProfileCodecError, ValueError):
    """A value that the wire format cannot carry (out of range, wrong combination of fields)."""

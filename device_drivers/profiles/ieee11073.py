"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) numbers.

Layout (reference/ble-health-profiles.md §2.5; HL7 PHD MderFLOATsandSFLOATs.md; Nordic/Tidepool):

    SFLOAT  bits 15..12 exponent, signed 4-bit two's complement
            bits 11..0  mantissa, signed 12-bit two's complement      value = mantissa * 10**exponent
    FLOAT   bits 31..24 exponent, signed 8-bit two's complement
            bits 23..0  mantissa, signed 24-bit two's complement

Both are little-endian on air. The exponent is two's complement, NOT biased: 120 mmHg is
``78 00``; RonanB96/bluetooth-sig-python's ``nibble - 8`` decoder is wrong (style-models.md §7).

Special values all have exponent 0 and are checked before any arithmetic
(Wireshark epan/ftypes/ftype-ieee-11073-float.c; nRF Connect SDK sfloat.h):

    meaning       SFLOAT   FLOAT
    NaN           0x07FF   0x007FFFFF
    NRes          0x0800   0x00800000
    +INFINITY     0x07FE   0x007FFFFE
    -INFINITY     0x0802   0x00800002
    reserved      0x0801   0x00800001
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from decimal import Decimal

from ._wire import ByteReader
from .errors import EncodeError

SFLOAT_SIZE = 2
FLOAT_SIZE = 4

SFLOAT_EXPONENT_SHIFT = 12
SFLOAT_MANTISSA_BITS = 12
SFLOAT_EXPONENT_BITS = 4
FLOAT_EXPONENT_SHIFT = 24
FLOAT_MANTISSA_BITS = 24
FLOAT_EXPONENT_BITS = 8


class SpecialValue(enum.Enum):
    """Reserved IEEE 11073 codes that carry no number."""

    NAN = "NaN"
    NRES = "NRes"
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "reserved"


SFLOAT_SPECIAL_CODES: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
FLOAT_SPECIAL_CODES: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}
_SFLOAT_CODE_OF = {special: code for code, special in SFLOAT_SPECIAL_CODES.items()}
_FLOAT_CODE_OF = {special: code for code, special in FLOAT_SPECIAL_CODES.items()}


@dataclass(frozen=True, slots=True)
class MderFloat:
    """An IEEE 11073 number: ``mantissa * 10**exponent``, or a special value.

    The exponent is kept because it is the device's precision (``58e-1`` mmol/L is 5.8, shown with
    one decimal). Special values are stored canonically as mantissa 0, exponent 0 and ``special``
    set, so an SFLOAT NaN equals a FLOAT NaN.
    """

    mantissa: int
    exponent: int
    special: SpecialValue | None = None

    @classmethod
    def of(cls, special: SpecialValue) -> MderFloat:
        """The canonical instance for a special value."""
        return cls(0, 0, special)

    @classmethod
    def from_decimal(cls, value: Decimal | int | str) -> MderFloat:
        """Exact number with the exponent taken from the decimal's own precision.

        ``from_decimal("5.8")`` is mantissa 58, exponent -1; ``from_decimal(120)`` is 120, 0.
        Raises EncodeError for NaN or infinities (use :meth:`of` for those).
        """
        number = Decimal(value)
        if not number.is_finite():
            raise EncodeError(f"{value!r} is not finite; use MderFloat.of(SpecialValue...)")
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite decimals have an int exponent
        mantissa = int("".join(map(str, digits)) or "0")
        return cls(-mantissa if sign else mantissa, exponent)

    @property
    def is_finite(self) -> bool:
        """True when this is an ordinary number (not NaN, NRes, ±INF or reserved)."""
        return self.special is None

    def to_decimal(self) -> Decimal | None:
        """The exact value, or None for a special value."""
        if self.special is not None:
            return None
        return Decimal(self.mantissa).scaleb(self.exponent)

    def __float__(self) -> float:
        if self.special is SpecialValue.POSITIVE_INFINITY:
            return math.inf
        if self.special is SpecialValue.NEGATIVE_INFINITY:
            return -math.inf
        if self.special is not None:
            return math.nan
        return float(Decimal(self.mantissa).scaleb(self.exponent))

    def describe(self) -> str:
        """Short text: the number, or the special value's name (for reasons and logs)."""
        if self.special is not None:
            return self.special.value
        return str(self.to_decimal())


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def sfloat_from_raw(raw: int) -> MderFloat:
    """Decode a 16-bit SFLOAT from its integer value (already assembled little-endian)."""
    special = SFLOAT_SPECIAL_CODES.get(raw & 0xFFFF)
    if special is not None:
        return MderFloat.of(special)
    exponent = _signed(raw >> SFLOAT_EXPONENT_SHIFT & 0xF, SFLOAT_EXPONENT_BITS)
    mantissa = _signed(raw & 0x0FFF, SFLOAT_MANTISSA_BITS)
    return MderFloat(mantissa, exponent)


def float_from_raw(raw: int) -> MderFloat:
    """Decode a 32-bit FLOAT from its integer value (already assembled little-endian)."""
    special = FLOAT_SPECIAL_CODES.get(raw & 0xFFFFFFFF)
    if special is not None:
        return MderFloat.of(special)
    exponent = _signed(raw >> FLOAT_EXPONENT_SHIFT & 0xFF, FLOAT_EXPONENT_BITS)
    mantissa = _signed(raw & 0x00FFFFFF, FLOAT_MANTISSA_BITS)
    return MderFloat(mantissa, exponent)


def read_sfloat(reader: ByteReader, what: str) -> MderFloat:
    """Read one SFLOAT field (2 bytes, little-endian)."""
    return sfloat_from_raw(reader.uint16(what))


def read_float(reader: ByteReader, what: str) -> MderFloat:
    """Read one FLOAT field (4 bytes, little-endian)."""
    return float_from_raw(reader.uint32(what))


def decode_sfloat(data: bytes) -> MderFloat:
    """Decode exactly two bytes (little-endian) as an SFLOAT. Raises DecodeError otherwise."""
    reader = ByteReader(data)
    value = read_sfloat(reader, "SFLOAT")
    reader.expect_end()
    return value


def decode_float(data: bytes) -> MderFloat:
    """Decode exactly four bytes (little-endian) as a FLOAT. Raises DecodeError otherwise."""
    reader = ByteReader(data)
    value = read_float(reader, "FLOAT")
    reader.expect_end()
    return value


def _normalise(value: MderFloat, mantissa_bits: int, exponent_bits: int) -> tuple[int, int]:
    """Drop trailing zeros from the mantissa until it fits; never loses precision."""
    mantissa, exponent = value.mantissa, value.exponent
    limit = 1 << (mantissa_bits - 1)
    while not -limit <= mantissa < limit and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    exponent_limit = 1 << (exponent_bits - 1)
    if not -limit <= mantissa < limit:
        raise EncodeError(f"{value.describe()} needs more than {mantissa_bits} mantissa bits")
    if not -exponent_limit <= exponent < exponent_limit:
        raise EncodeError(f"{value.describe()} exponent {exponent} does not fit in {exponent_bits} bits")
    return mantissa, exponent


def sfloat_to_raw(value: MderFloat) -> int:
    """Encode to the 16-bit integer; raises EncodeError when the number does not fit exactly."""
    if value.special is not None:
        return _SFLOAT_CODE_OF[value.special]
    mantissa, exponent = _normalise(value, SFLOAT_MANTISSA_BITS, SFLOAT_EXPONENT_BITS)
    raw = (exponent & 0xF) << SFLOAT_EXPONENT_SHIFT | (mantissa & 0x0FFF)
    if raw in SFLOAT_SPECIAL_CODES:
        raise EncodeError(f"{value.describe()} collides with a reserved SFLOAT code 0x{raw:04X}")
    return raw


def float_to_raw(value: MderFloat) -> int:
    """Encode to the 32-bit integer; raises EncodeError when the number does not fit exactly."""
    if value.special is not None:
        return _FLOAT_CODE_OF[value.special]
    mantissa, exponent = _normalise(value, FLOAT_MANTISSA_BITS, FLOAT_EXPONENT_BITS)
    raw = (exponent & 0xFF) << FLOAT_EXPONENT_SHIFT | (mantissa & 0x00FFFFFF)
    if raw in FLOAT_SPECIAL_CODES:
        raise EncodeError(f"{value.describe()} collides with a reserved FLOAT code 0x{raw:08X}")
    return raw


def encode_sfloat(value: MderFloat) -> bytes:
    """Encode an SFLOAT as two little-endian bytes."""
    return sfloat_to_raw(value).to_bytes(SFLOAT_SIZE, "little")


def encode_float(value: MderFloat) -> bytes:
    """Encode a FLOAT as four little-endian bytes."""
    return float_to_raw(value).to_bytes(FLOAT_SIZE, "little")

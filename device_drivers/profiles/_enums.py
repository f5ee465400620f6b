"""Enum base for wire codes with reserved values (internal)."""

from __future__ import annotations

import enum
from typing import Any

MAX_CODE = 0xFF


class WireCode(enum.IntEnum):
    """IntEnum whose reserved codes (0..255) decode to ``RESERVED_<n>`` pseudo-members.

    Reserved codes are well-formed on the wire (the spec reserves them for future use), so they
    decode instead of failing; the name makes the reserved code visible in output.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and 0 <= value <= MAX_CODE:
            member = int.__new__(cls, value)
            member._name_ = f"RESERVED_{value}"
            member._value_ = value
            return member
        return None

    @property
    def is_reserved(self) -> bool:
        """True for a code the specification reserves."""
        return self.name.startswith("RESERVED_")

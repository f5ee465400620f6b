"""`vitalgate decode PROFILE HEX`: decode one Bluetooth characteristic value and print it as JSON.

Examples::

    vitalgate decode bp 06 78 00 50 00 5D 00 E8 07 03 01 08 1E 00 48 00
    vitalgate decode glucose "02 05 00 E8 07 03 01 08 1E 00 69 B0 11"
    vitalgate decode racp 06-00-01-06

HEX may contain spaces, dashes or colons (as nRF Connect and Wireshark print it) and a leading
``0x``. Prints one JSON object and exits 0; bytes that cannot be decoded print one line on stderr
naming the byte offset and the reason and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.presentation import PROFILES

EXAMPLE_HEX = "06 78 00 50 00 5D 00 E8 07 03 01 08 1E 00 48 00"
EXIT_OK = 0
EXIT_UNDECODABLE = 2
_SEPARATORS = str.maketrans("", "", " \t\n-:,_")

PROFILE_HELP = {
    "bp": "Blood Pressure Measurement 0x2A35",
    "icp": "Intermediate Cuff Pressure 0x2A36",
    "bp-feature": "Blood Pressure Feature 0x2A49",
    "bp-enhanced": "Enhanced Blood Pressure Measurement 0x2B34",
    "bp-record": "Blood Pressure Record 0x2B36",
    "glucose": "Glucose Measurement 0x2A18",
    "glucose-context": "Glucose Measurement Context 0x2A34",
    "glucose-feature": "Glucose Feature 0x2A51",
    "racp": "Record Access Control Point 0x2A52 (request or response)",
    "date-time": "Date Time 0x2A08",
    "current-time": "Current Time 0x2A2B",
    "battery": "Battery Level 0x2A19",
}


class HexError(ValueError):
    """The HEX argument is not a whole number of hex bytes."""


def parse_hex(parts: list[str]) -> bytes:
    """Join the HEX words into bytes, accepting spaces, dashes, colons and ``0x`` prefixes."""
    text = " ".join(parts).replace("(0x)", " ")
    words = [word[2:] if word.lower().startswith("0x") else word for word in text.split()]
    digits = "".join(words).translate(_SEPARATORS)
    if len(digits) % 2:
        raise HexError(f"odd number of hex digits ({len(digits)}); each byte needs two")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        bad = next((ch for ch in digits if ch not in "0123456789abcdefABCDEF"), "?")
        raise HexError(f"{bad!r} is not a hex digit") from None


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `decode` subcommand."""
    profiles = "\n".join(f"  {name:<16} {what}" for name, what in PROFILE_HELP.items())
    parser = subparsers.add_parser(
        "decode",
        help="decode a Bluetooth health characteristic value (hex) to JSON",
        description="Decode one Bluetooth characteristic value and print its fields as JSON.",
        epilog=f"profiles:\n{profiles}\n\nexample:\n  vitalgate decode bp {EXAMPLE_HEX}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("profile", metavar="PROFILE", choices=sorted(PROFILES), help="one of: %(choices)s")
    parser.add_argument("hex", metavar="HEX", nargs="+", help="the value as hex bytes; spaces allowed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decode and print; returns the exit code."""
    try:
        data = parse_hex(args.hex)
    except HexError as error:
        print(f"vitalgate decode: invalid HEX: {error}", file=sys.stderr)
        return EXIT_UNDECODABLE
    try:
        decoded = PROFILES[args.profile](data)
    except DecodeError as error:
        where = error.characteristic or PROFILE_HELP[args.profile]
        print(
            f"vitalgate decode: cannot decode {where} at byte offset {error.offset}: {error.reason}",
            file=sys.stderr,
        )
        return EXIT_UNDECODABLE
    try:
        print(json.dumps(decoded, indent=2, allow_nan=False))
        sys.stdout.flush()
    except BrokenPipeError:
        # `vitalgate decode ... | head`: the reader left; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK

"""`vitalgate schema`: print or write the JSON Schema of every MQTT payload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitals.payload import export_json_schemas, json_schemas


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("schema", help="JSON Schema of the MQTT payloads")
    parser.add_argument(
        "--write",
        type=Path,
        nargs="?",
        const=Path("docs/schema"),
        default=None,
        help="write the schema files into this directory (default docs/schema)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.write is not None:
        for path in export_json_schemas(args.write):
            print(path)
        return 0
    for name, text in json_schemas().items():
        sys.stdout.write(f"// {name}\n{text}")
    return 0

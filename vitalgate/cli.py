"""The `vitalgate` command: one entry point, subcommands added by their own modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from vitalgate.logs import configure_logging
from vitalgate.settings import CONFIG_ENV_VAR, SettingsFileError, load_settings

# Subcommand modules under vitalgate/commands/, in help order.
COMMANDS = ("demo", "decode", "simulate", "gateway", "ingest", "api", "alerts", "admin", "schema")


OUR_PACKAGES = frozenset(
    {"vitals", "device_drivers", "gateway", "ingest", "storage", "alerts", "api", "vitalgate"}
)
# Which extra brings the packages a subcommand needs (pyproject.toml optional-dependencies).
EXTRA_FOR = {"demo": "all", "simulate": "virtual", "gateway": "edge", "decode": "edge"}


def _add_unavailable(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, missing: str
) -> None:
    """A subcommand whose packages are not installed (e.g. `api` on an edge-only install)."""
    extra = EXTRA_FOR.get(name, "clinic")
    parser = subparsers.add_parser(name, help=f"(not installed: needs vitalgate[{extra}])", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def unavailable(_args: argparse.Namespace) -> int:
        print(
            f"vitalgate {name}: this install lacks the Python package '{missing}'; "
            f"install it with: pip install 'vitalgate[{extra}]'",
            file=sys.stderr,
        )
        return 2

    parser.set_defaults(func=unavailable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitalgate",
        description="Home blood pressure and glucose, from Bluetooth meters to the family doctor.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML settings file (default: ${CONFIG_ENV_VAR} if set); VITALGATE_* variables override it",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    parser.add_argument("--log-format", choices=["json", "text"], default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"vitalgate.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that subcommand is not part of this install
            _add_unavailable(subparsers, name, exc.name or "?")
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    config_path = args.config
    if config_path is None:
        import os

        env_path = os.environ.get(CONFIG_ENV_VAR)
        config_path = Path(env_path) if env_path else None
    try:
        settings = load_settings(config_path)
    except (SettingsFileError, ValidationError) as exc:
        print(f"vitalgate: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or settings.log_level, args.log_format or settings.log_format)
    args.settings = settings
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        # Command modules import their stage lazily: a clinic command on an edge-only install.
        missing = (exc.name or "").split(".")[0]
        if not missing or missing in OUR_PACKAGES:
            raise
        extra = EXTRA_FOR.get(args.command, "clinic")
        print(
            f"vitalgate {args.command}: this install lacks the Python package '{missing}'; "
            f"install it with: pip install 'vitalgate[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())

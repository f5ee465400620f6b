"""`vitalgate demo`: the whole pipeline on the embedded defaults (see vitalgate/demo.py)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run every stage together: virtual meters, gateway, broker, ingest, alerts, API"
    )
    parser.add_argument("--patients", type=int, default=4, help="virtual patients (default 4)")
    parser.add_argument(
        "--story",
        action="append",
        dest="stories",
        default=None,
        help="story for the patients, repeatable (default: stable, bp-rising, recurrent-hypos, cuff-errors)",
    )
    parser.add_argument("--history-days", type=int, default=14, help="days of readings already on the meters")
    parser.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second")
    parser.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--until-synced",
        action="store_true",
        help="no new measurements: stop once every reading already on the meters is stored",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from vitalgate.demo import DEFAULT_STORIES, Demo, DemoOptions

    if args.patients < 1:
        print("vitalgate demo: --patients must be at least 1")
        return 2
    options = DemoOptions(
        patients=args.patients,
        stories=tuple(args.stories) if args.stories else DEFAULT_STORIES,
        history_days=args.history_days,
        speed=args.speed,
        port=args.port,
        duration_s=args.duration,
        until_synced=args.until_synced,
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        result = await Demo(args.settings, options).run(stop)
        print(
            f"vitalgate demo: {result.readings_stored} readings stored of {result.readings_on_meters} on the meters "
            f"({result.duplicates} duplicates skipped), {result.open_alerts} open alerts"
        )
        return 0 if not options.until_synced or result.readings_stored >= result.readings_on_meters else 1

    return asyncio.run(main())

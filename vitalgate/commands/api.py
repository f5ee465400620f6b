"""`vitalgate api`: serve the doctors' API and web app (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "api", help="serve the clinic: API and web app, alert engine, and (unless --no-ingest) ingest"
    )
    parser.add_argument("--host", default=None, help="default: settings api.host")
    parser.add_argument("--port", type=int, default=None, help="default: settings api.port")
    parser.add_argument(
        "--no-ingest", action="store_true", help="do not consume readings here (ingest runs elsewhere)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import sys

    from vitalgate.clinic import build_clinic_server

    settings = args.settings
    if settings.api.jwt_secret is None:
        print(
            "vitalgate api: set api.jwt_secret (VITALGATE_API__JWT_SECRET) to sign access tokens",
            file=sys.stderr,
        )
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await build_clinic_server(
            settings, jwt_secret=settings.api.jwt_secret.get_secret_value(), with_ingest=not args.no_ingest
        )
        await server.serve(stop, host=args.host or settings.api.host, port=args.port or settings.api.port)

    asyncio.run(main())
    return 0

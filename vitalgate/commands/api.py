"""`vitalgate api`: serve the doctors' API and web app (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("api", help="serve the clinic API and web app")
    parser.add_argument("--host", default=None, help="default: settings api.host")
    parser.add_argument("--port", type=int, default=None, help="default: settings api.port")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import uvicorn

    from api.app import create_app
    from vitalgate.wiring import build_api_services, close_api_services

    settings = args.settings
    if settings.api.jwt_secret is None:
        print(
            "vitalgate api: set api.jwt_secret (VITALGATE_API__JWT_SECRET) to sign access tokens",
            file=sys.stderr,
        )
        return 2
    services = build_api_services(settings)
    try:
        uvicorn.run(
            create_app(services),
            host=args.host or settings.api.host,
            port=args.port or settings.api.port,
            log_config=None,
        )
    finally:
        close_api_services(services)
    return 0

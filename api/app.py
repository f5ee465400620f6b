"""The FastAPI application. `create_app` takes its services; nothing is global."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.deps import ApiServices
from api.routes import alerts, auth, ops, patients, readings

WEB_DIR = Path(__file__).with_name("web")


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="vitalgate",
        summary="Home blood pressure and glucose readings, alerts and trends for family doctors.",
        version="0.1.0",
    )
    app.state.services = services
    app.include_router(auth.router)
    app.include_router(readings.router)
    app.include_router(patients.router)
    app.include_router(alerts.router)
    app.include_router(ops.router)
    # The doctors' web app: static files that call the JSON API above.
    app.mount("/app", StaticFiles(directory=WEB_DIR, html=True), name="web")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    return app

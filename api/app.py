"""The FastAPI application. `create_app` takes its services; nothing is global."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.deps import ApiServices
from api.routes import alerts, audit, auth, ops, patients, readings, targets
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.readings.protocol import ReadingStoreUnavailable

WEB_DIR = Path(__file__).with_name("web")
# Seconds a client should wait before asking again while a store is down (RFC 9110 §10.2.3).
RETRY_AFTER_S = 5


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
    app.include_router(targets.router)
    app.include_router(alerts.router)
    app.include_router(ops.router)
    app.include_router(audit.router)

    @app.exception_handler(ReadingStoreUnavailable)
    @app.exception_handler(ClinicDatabaseUnavailableError)
    async def store_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
        # An outage, not a bug: 503 with Retry-After, so the web app and scripts try again. The
        # exception's text (hosts, ports) stays in the log.
        return JSONResponse(
            {"detail": "the reading store or clinic database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    # The doctors' web app: static files that call the JSON API above.
    app.mount("/app", StaticFiles(directory=WEB_DIR, html=True), name="web")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    return app

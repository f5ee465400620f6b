"""The FastAPI application. `create_app` takes its services; nothing is global."""

from __future__ import annotations

from fastapi import FastAPI

from api.deps import ApiServices
from api.routes import auth, readings


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="vitalgate",
        summary="Home blood pressure and glucose readings, alerts and trends for family doctors.",
        version="0.1.0",
    )
    app.state.services = services
    app.include_router(auth.router)
    app.include_router(readings.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

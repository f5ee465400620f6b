"""Operations endpoints: liveness and Prometheus metrics (counters only: ids and numbers, no personal data)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.deps import Services

router = APIRouter(tags=["ops"])

# ApiServices.metrics: callables returning Prometheus text exposition (0.0.4), handed in by the
# composition root.
MetricsProvider = Callable[[], str]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: Services) -> str:
    providers: list[MetricsProvider] = services.metrics
    return "".join(provider() for provider in providers) + services.refused_tokens.prometheus_text()

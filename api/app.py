"""The FastAPI application. `create_app` takes its services; nothing is global."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.deps import ApiServices
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.routes import (
    admin_accounts,
    admin_clinic,
    admin_fleet,
    admin_gateways,
    admin_meters,
    admin_patients,
    alerts,
    audit,
    auth,
    fhir,
    me,
    ops,
    patients,
    readings,
    reports,
    targets,
)
from api.security import BodySizeLimit, SecurityHeaders, page_policy
from api.web_assets import WEB_APP_DIR, WebAppFiles


def _with_page_policy(
    page: HTMLResponse, *, inline_styles: bool = False, blob_workers: bool = False
) -> HTMLResponse:
    """The page with a Content-Security-Policy that admits its own inline scripts (by hash)."""
    html = bytes(page.body).decode("utf-8")
    page.headers["Content-Security-Policy"] = page_policy(
        html, inline_styles=inline_styles, blob_workers=blob_workers
    )
    return page


def create_app(services: ApiServices) -> FastAPI:
    app = FastAPI(
        title="vitalgate",
        summary="Home blood pressure and glucose readings, alerts and trends for family doctors.",
        version="0.1.0",
        # /docs and /redoc are served below from the web app's build, never from a CDN.
        docs_url=None,
        redoc_url=None,
        # Every error body is an api.errors.ErrorBody (ValidationErrorBody for 422), documented on
        # every route so that the web app's generated types know them.
        responses=ERROR_RESPONSES,
    )
    app.state.services = services
    # Security headers on every response, and no-store on personal data (api/security.py); outside
    # it, forwarded headers believed from the configured proxies only (none by default).
    app.add_middleware(BodySizeLimit, max_bytes=services.max_request_body_bytes)
    app.add_middleware(SecurityHeaders, hsts=services.hsts)
    if services.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(services.trusted_proxies))
    app.include_router(auth.router)
    app.include_router(readings.router)
    app.include_router(patients.router)
    app.include_router(targets.router)
    app.include_router(alerts.router)
    app.include_router(ops.router)
    app.include_router(audit.router)
    app.include_router(admin_fleet.router)
    app.include_router(me.router)
    # Reports and exports of patient data, and FHIR R4 for hospitals' record systems.
    app.include_router(reports.router)
    app.include_router(fhir.router)
    # Clinic administration (role clinic_admin), and the public step of a password reset.
    for admin_router in (admin_clinic.router, admin_accounts.router, admin_patients.router):
        app.include_router(admin_router)
    app.include_router(admin_gateways.router)
    app.include_router(admin_meters.router)
    app.include_router(admin_accounts.public_router)
    install_error_handlers(app)

    # The clinical workspace: the built web app (api/webapp) that calls the JSON API above.
    app.mount("/app", WebAppFiles(WEB_APP_DIR), name="web")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _with_page_policy(
            get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} API",
                swagger_js_url="/app/vendor/swagger-ui/swagger-ui-bundle.js",
                swagger_css_url="/app/vendor/swagger-ui/swagger-ui.css",
                swagger_favicon_url="/app/vendor/swagger-ui/favicon-32x32.png",
                oauth2_redirect_url="/docs/oauth2-redirect",
                # No online validator badge: it would call a host outside the clinic.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _with_page_policy(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        # ReDoc injects its styles and runs its search in a worker started from a blob.
        return _with_page_policy(
            get_redoc_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} API",
                redoc_js_url="/app/vendor/redoc/redoc.standalone.js",
                redoc_favicon_url="/app/favicon.svg",
                with_google_fonts=False,
            ),
            inline_styles=True,
            blob_workers=True,
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    return app

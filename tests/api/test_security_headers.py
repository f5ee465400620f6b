"""Security headers on every response, no-store on personal data (api/security.py), checked with real
requests, and the web app, Swagger UI and ReDoc working in Chromium under their Content-Security-Policy."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import DEFAULT_POLICY

from .conftest import ClinicApi
from .web_fixtures import (  # noqa: F401
    ADMIN,
    WebClinic,
    bp_reading,
    browser_fixture,
    browser_required,
    page_fixture,
    sign_in,
    web_app_required,
    web_clinic_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

DOCTOR = "a@c1.example"
EVERY_RESPONSE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# (path, whether it answers personal data): pages, assets, JSON, errors, exports.
PATHS = [
    ("/api/v1/me", True),
    ("/api/v1/patients", True),
    ("/api/v1/patients/p-1/readings", True),
    ("/api/v1/patients/p-1/readings.csv", True),
    ("/api/v1/patients/p-1/fhir/Observation", True),
    ("/api/v1/patients/p-none/readings", True),  # a 404 error body
    ("/api/v1/nowhere", True),
    ("/app/", False),
    ("/app/favicon.svg", False),
    ("/openapi.json", False),
    ("/healthz", False),
    ("/metrics", False),
]


@pytest.mark.parametrize(("path", "personal"), PATHS, ids=[p for p, _ in PATHS])
def test_every_response_carries_the_security_headers_and_personal_data_is_never_cached(
    clinic_api: ClinicApi, path: str, personal: bool
) -> None:
    """No page can be framed or sniffed, no referrer leaks, and no cache keeps a patient's data."""
    response = clinic_api.client.get(path, headers=clinic_api.auth(DOCTOR))
    assert response.status_code != 500, response.text  # 503 for /app/ when the web app is not built
    for name, value in EVERY_RESPONSE.items():
        assert response.headers[name] == value, (path, name)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "http" not in policy  # nothing from another host
    if personal:
        assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers  # plain HTTP, no setting


def test_an_unauthenticated_error_and_a_refused_login_are_not_cached_either(clinic_api: ClinicApi) -> None:
    """Error bodies under /api can name records too: no-store on them as well."""
    for response in (
        clinic_api.client.get("/api/v1/patients"),
        clinic_api.client.post("/api/v1/auth/token", data={"username": DOCTOR, "password": "wrong"}),
    ):
        assert response.status_code == 401
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"


def test_hsts_over_tls_from_a_trusted_proxy_or_by_setting_and_never_on_a_clients_say_so(
    clinic_api: ClinicApi,
) -> None:
    """Strict-Transport-Security when the site is reached over HTTPS; a client cannot switch it on."""
    claims_tls = {"X-Forwarded-Proto": "https"}
    assert "strict-transport-security" not in clinic_api.client.get("/healthz", headers=claims_tls).headers
    with TestClient(create_app(replace(clinic_api.services, trusted_proxies=("testclient",)))) as proxied:
        assert (
            proxied.get("/healthz", headers=claims_tls)
            .headers["strict-transport-security"]
            .startswith("max-age=")
        )
        assert "strict-transport-security" not in proxied.get("/healthz").headers
    with TestClient(create_app(replace(clinic_api.services, hsts=True))) as always:
        assert "max-age=63072000" in always.get("/app/").headers["strict-transport-security"]
    with TestClient(create_app(clinic_api.services), base_url="https://clinic.example") as direct:
        assert "strict-transport-security" in direct.get("/healthz").headers


def test_docs_pages_admit_only_their_own_inline_start_up_script(clinic_api: ClinicApi) -> None:
    """Swagger UI's inline script is allowed by its hash, nothing else inline is."""
    docs = clinic_api.client.get("/docs")
    policy = docs.headers["content-security-policy"]
    assert "'sha256-" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]
    assert "'unsafe-eval'" not in policy
    assert clinic_api.client.get("/app/").headers["content-security-policy"] == DEFAULT_POLICY


def _violations(page: Page) -> list[str]:
    """Collect the page's CSP violations (securitypolicyviolation events and console reports)."""
    found: list[str] = []
    page.on(
        "console",
        lambda message: found.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return found


@browser_required
@web_app_required
def test_the_web_app_works_in_chromium_under_its_policy(web_clinic: WebClinic, page: Page) -> None:
    """Signed in, the panel and the alert inbox render with no Content-Security-Policy violation."""
    from playwright.sync_api import expect

    web_clinic.add_readings([bp_reading("p-1", 60 * 24, 142, 88), bp_reading("p-1", 60, 138, 86)])
    violations = _violations(page)
    sign_in(page, web_clinic)
    expect(page.get_by_text("Wang")).to_be_visible()
    page.goto(f"{web_clinic.url}/app/patients/p-1")
    # The patient page's chunk (charts) is the largest the app loads.
    expect(page.get_by_test_id("patient-name")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("bp-chart").locator("canvas, svg").first).to_be_attached()
    page.goto(f"{web_clinic.url}/app/alerts")
    expect(page.get_by_test_id("sign-out")).to_be_visible()
    assert violations == []


@browser_required
@web_app_required
@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_swagger_ui_and_redoc_render_under_their_policy(web_clinic: WebClinic, page: Page, path: str) -> None:
    """The API's own documentation pages work with the headers on: no violation, content shown."""
    from playwright.sync_api import expect

    violations = _violations(page)
    page.goto(f"{web_clinic.url}{path}")
    expect(page.get_by_text("/api/v1/auth/token").first).to_be_visible(timeout=30_000)
    assert violations == []

"""Fixtures and helpers for the web app's browser tests (tests/api/test_web_*.py).

A real uvicorn server on a free loopback port serves the API and the built web app (api/webapp/dist)
over a real clinic database (SQLite, migrated) and reading store, with the alert engine and its
live-event hub wired as vitalgate/clinic.py wires them. Debian's Chromium runs under Playwright with
every request that leaves 127.0.0.1 aborted and recorded, so a page that needs a CDN shows it.

Import what a test module uses (the fixtures by their function names; tests ask for them as
`web_clinic`, `browser`, `page`, `open_page`):

    from .web_fixtures import browser_fixture, page_fixture, web_clinic_fixture  # noqa: F401
    from .web_fixtures import DOCTOR, NURSE, WebClinic, sign_in, serious_axe_violations, ...

Seeded clinic "c1" (the `clinic_api` fixture of conftest.py, plus):
- users: DOCTOR dr-a (family doctor, a@c1.example), dr-b, NURSE nurse-1 (clinic_staff,
  nurse@c1.example, display name "Zhang Min"), ADMIN admin-1 (clinic_admin); password PASSWORD;
- patients: p-1 Wang Wei (from conftest) and p-2 .. p-5 (PATIENTS), family doctor dr-a, the nurse on
  every care team.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import uvicorn

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from alerts.summary_updater import SummaryUpdater
from api.app import create_app
from api.deps import ApiServices
from api.services import AlertApi
from api.web_assets import WEB_APP_DIR
from storage.clinic.models import CareTeamMember, CareTeamRole, UserRole
from storage.readings.protocol import AnyReading
from vitalgate.administration import add_patient, add_user
from vitalgate.mosquitto import free_port
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading

from .conftest import PASSWORD, ClinicApi

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
AXE_JS = REPO / "api" / "webapp" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
# Flags from the machine notes: no background networking on a closed network, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

DOCTOR = "a@c1.example"
NURSE = "nurse@c1.example"
NURSE_NAME = "Zhang Min"
ADMIN = "admin@c1.example"
# (patient_id, given name, family name); p-1 Wang Wei comes from conftest.
PATIENTS = [("p-2", "Yu", "Zhou"), ("p-3", "Lin", "Ma"), ("p-4", "Qi", "An"), ("p-5", "Jie", "Sun")]

CUFF = DeviceIdentity(manufacturer="Omron", model="BP7000", serial_number="web-cuff")
METER = DeviceIdentity(manufacturer="Roche", model="Accu-Chek Guide", serial_number="web-meter")

browser_required = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian package chromium is not installed"
)
web_app_required = pytest.mark.skipif(
    not (WEB_APP_DIR / "index.html").is_file(),
    reason="the web app is not built (./dev test builds it; or npm ci && npm run build in api/webapp)",
)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def bp_reading(
    patient_id: str, minutes_ago: float, systolic: float, diastolic: float, pulse: float = 70
) -> BloodPressureReading:
    when = now_utc() - timedelta(minutes=minutes_ago)
    rid = blood_pressure_reading_id(
        CUFF,
        when.replace(tzinfo=None),
        1,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial=None,
        pulse_bpm=pulse,
    )
    return BloodPressureReading(
        reading_id=rid,
        device=CUFF,
        patient_id=patient_id,
        measured_at=when,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=pulse,
        user_id=1,
    )


_sequence = iter(range(1, 1_000_000))


def glucose_reading(patient_id: str, minutes_ago: float, mg_dl: float) -> GlucoseReading:
    when = now_utc() - timedelta(minutes=minutes_ago)
    seq = next(_sequence)
    return GlucoseReading(
        reading_id=glucose_reading_id(METER, seq, when.replace(tzinfo=None)),
        device=METER,
        patient_id=patient_id,
        measured_at=when,
        sequence_number=seq,
        glucose=mg_dl,
    )


@dataclass
class WebClinic:
    """The running server and what tests need to drive it from outside the browser."""

    url: str
    services: ApiServices
    engine: AlertEngine
    loop: asyncio.AbstractEventLoop
    tokens: dict[str, str] = field(default_factory=dict)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (where the alert engine lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def add_readings(self, readings: Sequence[AnyReading]) -> None:
        """Store readings as ingest does, let the alert engine evaluate them, refresh the panel figures."""
        self.services.reading_store.write_batch(list(readings))
        self.run(self.engine.on_readings_committed(list(readings)))
        patient_ids = sorted({r.patient_id for r in readings if r.patient_id})
        SummaryUpdater(self.services.reading_store, self.services.clinic_sessions).refresh(patient_ids)

    def token(self, email: str) -> str:
        if email not in self.tokens:
            body = urllib.parse.urlencode({"username": email, "password": PASSWORD}).encode()
            with urllib.request.urlopen(f"{self.url}/api/v1/auth/token", body, timeout=10) as response:
                self.tokens[email] = json.load(response)["access_token"]
        return self.tokens[email]

    def api(self, method: str, path: str, email: str = DOCTOR, body: Any = None) -> tuple[int, Any]:
        """A JSON API call as `email`: the status and the decoded answer."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token(email)}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as refused:
            return refused.code, json.load(refused)

    def alerts(self, view: str = "active", email: str = DOCTOR) -> list[dict[str, Any]]:
        status, alerts = self.api("GET", f"/api/v1/alerts?view={view}", email)
        assert status == 200, alerts
        return list(alerts)


def _seed(services: ApiServices) -> None:
    with services.clinic_sessions() as session:
        add_user(
            session,
            clinic_id="c1",
            user_id="nurse-1",
            email=NURSE,
            display_name=NURSE_NAME,
            roles=[UserRole.CLINIC_STAFF],
            password=PASSWORD,
        )
        session.flush()
        session.add(
            CareTeamMember(
                patient_id="p-1", user_id="nurse-1", team_role=CareTeamRole.CLINIC_STAFF, escalation_order=1
            )
        )
        for patient_id, given, family in PATIENTS:
            add_patient(
                session,
                clinic_id="c1",
                patient_id=patient_id,
                given_name=given,
                family_name=family,
                family_doctor_id="dr-a",
                staff_ids=["nurse-1"],
            )
        session.commit()


@pytest.fixture(name="web_clinic")
def web_clinic_fixture(clinic_api: ClinicApi) -> Iterator[WebClinic]:
    """The seeded clinic behind a real uvicorn server, with the alert engine and live events."""
    services = clinic_api.services
    _seed(services)
    hub = EventHub()
    repository = SqlAlertRepository(services.clinic_sessions)
    engine = AlertEngine(
        services.reading_store,
        repository,
        SqlPatientDirectory(services.clinic_sessions, "cn"),
        Router(live=[hub]),
    )
    services.alerts = AlertApi(engine, repository, hub)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
            # Live-event streams stay open: do not wait for them at shutdown.
            timeout_graceful_shutdown=1,
        )
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve()), daemon=True)
    thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not server.started and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    assert server.started
    yield WebClinic(f"http://127.0.0.1:{port}", services, engine, loop)
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "the web server did not stop"
    loop.close()


# One Playwright and one Chromium per test module, stopped when the module ends: a sync Playwright
# runs an event loop in the test process's main thread while it lives, and the asyncio tests that
# follow would find it running ("Runner.run() cannot be called from a running event loop").
@pytest.fixture(name="browser", scope="module")
def browser_fixture() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class OutsideRequests:
    """Requests the page tried to send past 127.0.0.1 (all aborted)."""

    urls: list[str] = field(default_factory=list)


def new_page(
    browser: Browser, viewport: dict[str, int] = DESKTOP, locale: str = "en-US"
) -> tuple[Page, OutsideRequests]:
    """A page in a fresh context (own storage) whose requests outside 127.0.0.1 are aborted."""
    context = browser.new_context(viewport=viewport, locale=locale)  # type: ignore[arg-type]
    outside = OutsideRequests()

    def only_local(route: Any) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.urls.append(route.request.url)
            route.abort()

    context.route(re.compile(r"^https?://"), only_local)
    return context.new_page(), outside


@pytest.fixture(name="page")
def page_fixture(browser: Browser) -> Iterator[Page]:
    """A 1440x900 English page; nothing outside 127.0.0.1 is reachable."""
    tab, _outside = new_page(browser)
    yield tab
    tab.context.close()


PageOpener = Callable[..., tuple["Page", OutsideRequests]]


@pytest.fixture(name="open_page")
def open_page_fixture(browser: Browser) -> Iterator[PageOpener]:
    """`open_page(viewport=PHONE, locale="zh-CN")`: more pages like `page`, closed after the test."""
    opened: list[Page] = []

    def opener(viewport: dict[str, int] = DESKTOP, locale: str = "en-US") -> tuple[Page, OutsideRequests]:
        tab, outside = new_page(browser, viewport, locale)
        opened.append(tab)
        return tab, outside

    yield opener
    for tab in opened:
        tab.context.close()


def sign_in(page: Page, clinic: WebClinic, email: str = DOCTOR, path: str = "/app/") -> str:
    """Sign in through the form (the app sends signed-out users there); the app's bearer token."""
    from playwright.sync_api import expect

    page.goto(f"{clinic.url}{path}")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.get_by_test_id("sign-out")).to_be_visible()
    token: str = page.evaluate("sessionStorage.getItem('vitalgate.token')")
    return token


def screenshot(page: Page, name: str) -> Path:
    """Keep a full-page screenshot in test-artifacts/web/ (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.x A and AA)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Through DevTools, not as an inline <script>: the app's Content-Security-Policy refuses those.
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
                resultTypes: ["violations"],
            });
            return result.violations
                .filter((v) => v.impact === "serious" || v.impact === "critical")
                .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
        }"""
    )
    return found


_VISIBLE_WORDS_JS = """() => {
    const words = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const el = node.parentElement;
        if (!el || el.closest("script, style, [lang=en], [translate=no], option")) continue;
        const style = getComputedStyle(el);
        if (style.visibility === "hidden" || style.display === "none" || el.getClientRects().length === 0) continue;
        for (const word of node.textContent.match(/[A-Za-z]{2,}/g) || []) words.push(word);
    }
    for (const el of document.querySelectorAll("input[placeholder], [aria-label], [title]")) {
        if (el.closest("[lang=en], [translate=no]") || el.getClientRects().length === 0) continue;
        for (const attr of ["placeholder", "aria-label", "title"]) {
            for (const word of (el.getAttribute(attr) || "").match(/[A-Za-z]{2,}/g) || []) words.push(word);
        }
    }
    return words;
}"""


def visible_latin_words(page: Page, allowed: set[str]) -> list[str]:
    """Words in Latin letters in the page's visible text and labels, less `allowed` (data: names,
    units), and less elements marked lang="en" or translate="no" (the product name, a language's
    own name)."""
    words: list[str] = page.evaluate(_VISIBLE_WORDS_JS)
    return sorted({w for w in words if w not in allowed})


def scroll_width(page: Page) -> int:
    width: int = page.evaluate("document.scrollingElement.scrollWidth")
    return width

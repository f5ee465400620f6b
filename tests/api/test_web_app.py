"""The doctors' web app in a real Chromium (Debian package) driven by Playwright, against a real
uvicorn server, clinic database and reading store."""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from api.app import create_app
from api.routes.alerts import AlertApi
from vitalgate.mosquitto import free_port
from vitals.identity import glucose_reading_id
from vitals.readings import DeviceIdentity, GlucoseReading

from .conftest import PASSWORD, ClinicApi
from .test_auth_and_readings import cuff_reading

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian package chromium is not installed"),
]
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
METER = DeviceIdentity(manufacturer="Roche", model="Accu-Chek Guide", serial_number="9001")


@pytest.fixture
def server_url(clinic_api: ClinicApi) -> Iterator[str]:
    # The alert engine with its live-event hub, as the clinic server wires it (vitalgate/clinic.py).
    services = clinic_api.services
    hub = EventHub()
    repository = SqlAlertRepository(services.clinic_sessions)
    engine = AlertEngine(
        services.reading_store,
        repository,
        SqlPatientDirectory(services.clinic_sessions, "cn"),
        Router(live=[hub]),
    )
    services.extras["alerts"] = AlertApi(engine, repository, hub)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(clinic_api.services), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not server.started and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def glucose(minutes_ago: int, mg_dl: float, seq: int) -> GlucoseReading:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return GlucoseReading(
        reading_id=glucose_reading_id(METER, seq, when.replace(tzinfo=None)),
        device=METER,
        patient_id="p-1",
        measured_at=when,
        sequence_number=seq,
        glucose=mg_dl,
    )


def test_doctor_signs_in_sees_panel_and_trend_in_both_languages_and_units(
    clinic_api: ClinicApi, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    screenshot_dir = tmp_path_factory.mktemp("screenshots")
    from playwright.sync_api import expect, sync_playwright

    store = clinic_api.services.reading_store
    store.write_batch([cuff_reading(300, 150), cuff_reading(200, 142), cuff_reading(100, 138)])
    store.write_batch([glucose(90, 126.1, 1), glucose(30, 180.2, 2)])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(server_url)  # / redirects to the app
        page.fill("input[name=username]", "a@c1.example")
        page.fill("input[name=password]", "wrong password!")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_have_text("Wrong e-mail or password")

        page.fill("input[name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        row = page.locator("tr.patient[data-patient-id='p-1']")
        expect(row).to_contain_text("Wang Wei")
        expect(row).to_contain_text("138/85")  # the latest reading
        expect(row).to_contain_text("10.0 mmol/L")  # 180.2 mg/dL shown in the default unit

        row.click()
        systolic = page.locator("#bp-chart polyline[data-series=systolic_mmhg]")
        expect(systolic).to_have_attribute("data-count", "3")
        expect(page.locator("#glucose-chart polyline[data-series=glucose_mg_dl]")).to_have_attribute(
            "data-count", "2"
        )

        page.select_option("#unit", "mg/dL")
        expect(row).to_contain_text("180 mg/dL")
        page.select_option("#lang", "zh")
        expect(page.locator("#panel th").first).to_have_text("患者")
        page.screenshot(path=str(screenshot_dir / "doctor-panel.png"), full_page=True)
        browser.close()


def report_severe_hypo(server_url: str, token: str, patient_id: str) -> None:
    body = json.dumps({"patient_id": patient_id, "kind": "severe_hypo_event"}).encode()
    request = urllib.request.Request(
        f"{server_url}/api/v1/alerts/reports",
        body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_an_urgent_alert_appears_live_and_the_doctor_acknowledges_it(
    clinic_api: ClinicApi, server_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(f"{server_url}/app/")
        page.fill("input[name=username]", "a@c1.example")
        page.fill("input[name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#inbox")).to_contain_text("No open alerts")
        token = page.evaluate("sessionStorage.getItem('vitalgate.token')")

        # A nurse records the family's report of an assisted hypo (GLU-HYPO-3, urgent): the doctor's
        # open page shows it through the live event stream, without a reload.
        report_severe_hypo(server_url, token, "p-1")
        alert = page.locator("#inbox li[data-state=open]")
        expect(alert).to_contain_text("GLU-HYPO-3")
        expect(alert).to_have_class(re.compile("urgent"))

        alert.locator("button").click()
        expect(page.locator("#inbox li").first).to_have_attribute("data-state", "acknowledged")
        # One state for all: the API says the same.
        request = urllib.request.Request(
            f"{server_url}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            alerts = json.load(response)
        assert [(a["rule_id"], a["state"], a["acknowledged_by"]) for a in alerts] == [
            ("GLU-HYPO-3", "acknowledged", "dr-a")
        ]
        browser.close()

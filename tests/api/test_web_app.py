"""The doctors' web app in a real Chromium (Debian package) driven by Playwright, against a real
uvicorn server, clinic database and reading store."""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from api.app import create_app
from api.login_throttle import ACCOUNT_LOCKOUT_THRESHOLD, OBSERVATION_WINDOW_S
from api.routes.alerts import AlertApi
from api.routes.auth import LOCK_AFTER_FAILED_LOGINS
from storage.clinic.models import User
from vitalgate.mosquitto import free_port
from vitals.identity import glucose_reading_id
from vitals.readings import DeviceIdentity, GlucoseReading

from .conftest import PASSWORD, ClinicApi
from .test_auth_and_readings import cuff_reading

if TYPE_CHECKING:
    from playwright.sync_api import Page

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


@pytest.fixture
def page() -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser.new_page()
        browser.close()


def sign_in(page: Page, server_url: str, email: str = "a@c1.example") -> str:
    """Sign in through the login form; the bearer token the app holds, for checks through the API."""
    from playwright.sync_api import expect

    page.goto(f"{server_url}/app/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#panel-view")).to_be_visible()
    token: str = page.evaluate("sessionStorage.getItem('vitalgate.token')")
    return token


def targets_api(
    server_url: str, token: str, body: dict[str, Any] | None = None, patient_id: str = "p-1"
) -> tuple[int, Any]:
    """GET (or PUT `body`) a patient's targets through the JSON API: the status and the JSON answer."""
    request = urllib.request.Request(
        f"{server_url}/api/v1/patients/{patient_id}/targets",
        None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_the_family_doctor_sets_a_patients_targets_in_the_web_app(server_url: str, page: Page) -> None:
    from playwright.sync_api import expect

    token = sign_in(page, server_url)
    page.select_option("#unit", "mmol/L")
    page.locator("tr.patient[data-patient-id='p-1']").click()
    form = page.locator("#targets-form")
    systolic = form.locator("input[name=bp_goal_systolic_mmhg]")
    diastolic = form.locator("input[name=bp_goal_diastolic_mmhg]")
    fasting = form.locator("input[name=glucose_fasting_high_mg_dl]")
    saved, error = page.locator("#targets-saved"), page.locator("#targets-error")

    # Nothing set: the fields are empty, and show the clinic's CN profile values the rules use instead.
    expect(systolic).to_have_value("")
    expect(systolic).to_have_attribute("placeholder", "135")
    expect(diastolic).to_have_attribute("placeholder", "85")
    expect(fasting).to_have_attribute("placeholder", "7.0")
    expect(form.locator("select[name=guideline_profile]")).to_have_value("")
    expect(form.locator("input[name=timezone]")).to_have_attribute("placeholder", "clinic's (UTC)")
    expect(page.locator("#targets-stale")).to_contain_text("after 7 days")

    # A patient with diabetes on insulin: 130/80 (clinical-rules.md §1), fasting < 7.2 mmol/L.
    systolic.fill("130")
    diastolic.fill("80")
    fasting.fill("7.2")
    form.get_by_label("On insulin").check()
    form.get_by_role("button", name="Save").click()
    expect(saved).to_have_text("Saved.")
    expect(error).to_have_text("")
    expect(page.locator("#targets-meta")).to_contain_text("Last changed by dr-a at")
    expect(page.locator("#targets-stale")).to_contain_text("after 3 days")  # on insulin: DQ-01 after 3 days
    expect(fasting).to_have_value("7.2")  # re-rendered from the answer, in mmol/L

    status, stored = targets_api(server_url, token)
    assert status == 200
    assert stored["bp_goal_systolic_mmhg"] == 130 and stored["bp_goal_diastolic_mmhg"] == 80
    assert stored["glucose_fasting_high_mg_dl"] == pytest.approx(7.2 * 18.01559, abs=0.01)  # mg/dL in the API
    assert stored["glucose_postprandial_high_mg_dl"] is None  # left empty: the profile's value
    assert stored["on_insulin"] is True and stored["bp_titration"] is False
    assert stored["guideline_profile"] is None and stored["timezone"] is None
    assert stored["updated_by"] == "dr-a"
    assert stored["rules_use"]["stale_after_days"] == 3

    # Another unit: the form is shown again in mg/dL.
    page.select_option("#unit", "mg/dL")
    expect(fasting).to_have_value("130")
    expect(form.locator("input[name=glucose_hypo_mg_dl]")).to_have_attribute("placeholder", "70")

    # A diastolic goal past its bound (a slip: above the systolic one): refused by the API, its reason shown,
    # nothing changed.
    diastolic.fill("135")
    form.get_by_role("button", name="Save").click()
    status, refusal = targets_api(
        server_url, token, {"bp_goal_systolic_mmhg": 130, "bp_goal_diastolic_mmhg": 135}
    )
    assert status == 422
    reason = refusal["detail"][0]["msg"]
    expect(error).to_contain_text(reason)
    expect(error).to_contain_text("BP goal, diastolic")
    expect(saved).to_have_text("")
    assert targets_api(server_url, token) == (200, stored)

    # The form in Chinese.
    page.select_option("#lang", "zh")
    expect(form.locator("[data-i18n=goal_systolic]")).to_have_text("收缩压目标")
    expect(form.get_by_label("使用胰岛素")).to_be_checked()
    expect(form.get_by_role("button", name="保存")).to_be_visible()


def test_a_locked_out_sign_in_says_so_and_for_how_long(server_url: str, page: Page) -> None:
    """After the account's failed-login limit (api/login_throttle.py), even the right password is
    refused with 429: the sign-in form says why and for how long, not "wrong password"."""
    from playwright.sync_api import expect

    wrong = urllib.parse.urlencode({"username": "a@c1.example", "password": "not it"}).encode()
    for _ in range(ACCOUNT_LOCKOUT_THRESHOLD):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server_url}/api/v1/auth/token", wrong, timeout=10)
        assert refused.value.code == 401
    page.goto(f"{server_url}/app/")
    page.fill("input[name=username]", "a@c1.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        f"Too many failed sign-ins. Try again in {OBSERVATION_WINDOW_S // 60} min."
    )
    assert page.locator("#panel-view").is_hidden()


def test_a_locked_account_is_told_to_ask_the_clinic_administrator(
    clinic_api: ClinicApi, server_url: str, page: Page
) -> None:
    """An account locked by 100 consecutive failed logins (api/routes/auth.py) gets 403 even for the
    right password: the form says who can help, in the doctor's language."""
    from playwright.sync_api import expect

    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None
        user.failed_logins = LOCK_AFTER_FAILED_LOGINS
        session.commit()
    page.goto(f"{server_url}/app/")
    page.fill("input[name=username]", "a@c1.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        "This account is locked after repeated failed sign-ins. Ask your clinic administrator to unlock it."
    )
    assert page.locator("#panel-view").is_hidden()
    page.select_option("#lang", "zh")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("多次登录失败，此账户已锁定。请联系诊所管理员解锁。")

"""The clinical workspace (api/webapp) in Debian's Chromium driven by Playwright, against a real uvicorn
server, clinic database, reading store and alert engine (tests/api/web_fixtures.py): sign-in, the
panel, the alert inbox, languages, phone width, keyboard, accessibility, API docs served locally."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from api.login_throttle import ACCOUNT_LOCKOUT_THRESHOLD, OBSERVATION_WINDOW_S
from api.routes.auth import LOCK_AFTER_FAILED_LOGINS
from storage.clinic.models import User

from .conftest import PASSWORD
from .web_fixtures import (  # noqa: F401
    ADMIN,
    DOCTOR,
    NURSE,
    NURSE_NAME,
    PHONE,
    PageOpener,
    WebClinic,
    bp_reading,
    browser_fixture,
    browser_required,
    glucose_reading,
    open_page_fixture,
    page_fixture,
    screenshot,
    scroll_width,
    serious_axe_violations,
    sign_in,
    visible_latin_words,
    web_app_required,
    web_clinic_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, browser_required, web_app_required]

# Patient and user names are data, not the app's words; units are written the same in Chinese.
DATA_WORDS = {"Zhou", "Yu", "Ma", "Lin", "An", "Qi", "Sun", "Jie", "Wang", "Wei", "dr", "Zhang", "Min"}
UNIT_WORDS = {"mmHg", "mmol", "mg", "dL"}
URGENCY_ORDER = ["Zhou Yu", "Ma Lin", "An Qi", "Sun Jie", "Wang Wei"]


def seed_alerts(clinic: WebClinic) -> None:
    """p-2 Zhou Yu: a level-2 hypo (45 mg/dL, urgent); p-3 Ma Lin: a single BP at crisis level (warning);
    the others: none."""
    clinic.add_readings([glucose_reading("p-2", 30, 45.0)])
    clinic.add_readings([bp_reading("p-3", 20, 186, 100)])


def seed_unseen_urgent(clinic: WebClinic) -> None:
    """p-5 Sun Jie: a level-2 hypo that the engine resolves after two in-range readings, before anyone
    acknowledged it."""
    clinic.add_readings([glucose_reading("p-5", 40, 47.0)])
    clinic.add_readings([glucose_reading("p-5", 20, 110.0), glucose_reading("p-5", 10, 112.0)])


def panel_names(page: Page) -> list[str]:
    names: list[str] = page.locator("table.panel tbody tr .patient-link").all_inner_texts()
    return [n.strip() for n in names]


def card(page: Page, rule_id: str, patient_id: str | None = None) -> Any:
    selector = f"article.alert-card[data-rule-id='{rule_id}']"
    found = page.locator(selector)
    if patient_id is not None:
        found = found.filter(has=page.locator(f"a[href$='/patients/{patient_id}']"))
    return found


def test_a_doctor_signs_in_and_sees_the_panel_most_urgent_first(web_clinic: WebClinic, page: Page) -> None:
    """A doctor signs in and finds the patient with an urgent alert at the top of the panel, every
    column sortable, glucose in the clinic's unit or their own."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    page.goto(f"{web_clinic.url}/")  # / redirects to the app, which asks to sign in
    page.fill("input[name=username]", DOCTOR)
    page.fill("input[name=password]", "wrong password!")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong e-mail or password")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")

    expect(page.locator("table.panel tbody tr")).to_have_count(5)
    assert panel_names(page) == URGENCY_ORDER
    expect(page.locator("th[aria-sort=descending]")).to_have_text(re.compile("Alerts"))
    top = page.locator("tr[data-patient-id='p-2']")
    expect(top.locator("[data-column=urgency] .badge")).to_have_text("Urgent")
    expect(top.locator("[data-column=glucose_latest]")).to_contain_text("2.5 mmol/L")  # 45 mg/dL
    expect(page.locator("tr[data-patient-id='p-3'] [data-column=urgency] .badge")).to_have_text("Warning")
    screenshot(page, "panel-doctor")

    page.locator("button.sort-button[data-sort=name]").click()
    expect(page).to_have_url(re.compile(r"sort=name&order=asc|order=asc&sort=name"))
    expect(page.locator("th[aria-sort=ascending]")).to_have_text(re.compile("Patient"))
    expect(page.locator("table.panel tbody tr").first).to_have_attribute("data-patient-id", "p-4")
    assert panel_names(page) == sorted(URGENCY_ORDER)

    page.fill("input[name=q]", "zhou")
    expect(page.locator("table.panel tbody tr")).to_have_count(1)
    page.select_option("select[name=glucose-unit]", "mg/dL")
    expect(page.locator("tr[data-patient-id='p-2'] [data-column=glucose_latest]")).to_contain_text("45 mg/dL")
    status, me = web_clinic.api("GET", "/api/v1/me")
    assert status == 200 and me["glucose_unit"] == "mg/dL"


def test_with_the_alerts_request_failing_the_inbox_says_so_and_never_no_alerts(
    web_clinic: WebClinic, page: Page
) -> None:
    """When the alerts request fails, the inbox says it could not load them, never "no alerts", and
    shows them once it can."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    sign_in(page, web_clinic)
    page.route(re.compile(r"/api/v1/alerts\?"), lambda route: route.abort())
    page.get_by_role("link", name="Alerts").click()
    error = page.get_by_role("alert").filter(has_text="The alerts could not be loaded")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The server could not be reached")
    expect(page.get_by_text("There are no active alerts.")).to_have_count(0)
    expect(page.locator("article.alert-card")).to_have_count(0)
    screenshot(page, "inbox-error")

    page.unroute(re.compile(r"/api/v1/alerts\?"))
    error.get_by_role("button", name="Try again").click()
    expect(card(page, "GLU-HYPO-2", "p-2")).to_have_count(1)
    expect(page.get_by_role("alert").filter(has_text="could not be loaded")).to_have_count(0)


def test_a_nurse_acknowledges_snoozes_and_resolves_and_the_timeline_shows_who_and_when(
    web_clinic: WebClinic, page: Page
) -> None:
    """A nurse acknowledges, snoozes and resolves an alert with a note; the alert's history shows each
    step with her name and the time."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    sign_in(page, web_clinic, NURSE, "/app/alerts")
    crisis = card(page, "BP-CRIT-1", "p-3")
    expect(crisis).to_contain_text("Single BP at crisis level: re-measure after rest")
    expect(crisis).to_contain_text("Ma Lin")
    expect(crisis.locator("[data-value=systolic_mmhg] dd")).to_have_text("186 mmHg")

    crisis.get_by_role("button", name="Acknowledge").click()
    expect(crisis).to_have_attribute("data-state", "acknowledged")
    expect(crisis.get_by_test_id("acknowledged-by")).to_have_text(f"Acknowledged by {NURSE_NAME}")
    expect(page.get_by_test_id("live-polite")).to_have_text("Acknowledged.")

    crisis.get_by_role("button", name="Snooze").click()
    crisis.get_by_role("group", name="Snooze for").get_by_role("button", name="1 h").click()
    expect(crisis).to_have_attribute("data-state", "snoozed")
    expect(crisis).to_contain_text("Snoozed until")

    crisis.get_by_role("button", name="Resolve").click()
    dialog = page.get_by_role("dialog", name="Resolve alert")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Resolve").click()
    expect(dialog.get_by_role("alert")).to_have_text("Write a note before resolving.")
    note = "Called the patient: re-measured 142/88 after rest, no symptoms."
    dialog.get_by_label("Note").fill(note)
    dialog.get_by_role("button", name="Resolve").click()
    expect(dialog).to_be_hidden()
    expect(card(page, "BP-CRIT-1", "p-3")).to_have_count(0)  # left the active list
    expect(card(page, "GLU-HYPO-2", "p-2")).to_have_count(1)

    resolved = [a for a in web_clinic.alerts("recent", NURSE) if a["rule_id"] == "BP-CRIT-1"]
    assert [(a["state"], a["resolved_by"], a["resolution_note"]) for a in resolved] == [
        ("resolved", "nurse-1", note)
    ]
    page.get_by_role("tab", name="Recent & resolved").click()
    expect(card(page, "BP-CRIT-1", "p-3")).to_have_count(1)

    page.goto(f"{web_clinic.url}/app/alerts/{resolved[0]['alert_id']}")  # a deep link, served as the app
    timeline = page.get_by_test_id("timeline").locator("li")
    expect(timeline).to_have_count(4)
    assert timeline.evaluate_all("items => items.map(i => i.dataset.event)") == [
        "opened",
        "acknowledged",
        "snoozed",
        "resolved",
    ]
    expect(timeline.nth(0).get_by_test_id("event-actor")).to_have_text("System")
    for step in (1, 2, 3):
        expect(timeline.nth(step).get_by_test_id("event-actor")).to_have_text(NURSE_NAME)
        expect(timeline.nth(step).locator("time")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
    expect(timeline.nth(2)).to_contain_text("until")
    expect(timeline.nth(3).get_by_test_id("event-note")).to_have_text(f"Note: {note}")
    screenshot(page, "alert-timeline")


def test_an_urgent_alert_the_engine_resolved_unseen_waits_for_sign_off(
    web_clinic: WebClinic, page: Page
) -> None:
    """An urgent alert that closed before anyone acknowledged it stays under "Needs sign-off" until a
    clinician signs it off; nothing urgent disappears unseen."""
    from playwright.sync_api import expect

    seed_unseen_urgent(web_clinic)
    sign_in(page, web_clinic, path="/app/alerts")
    expect(card(page, "GLU-HYPO-2", "p-5")).to_have_count(0)  # resolved: not active any more
    page.get_by_role("tab", name="Needs sign-off").click()
    unseen = card(page, "GLU-HYPO-2", "p-5")
    expect(unseen).to_contain_text("Level 2 hypoglycaemia")
    expect(unseen).to_contain_text("closed before any clinician acknowledged it")
    expect(unseen.locator("[data-value=glucose_mg_dl] dd")).to_have_text("2.6 mmol/L")  # 47 mg/dL
    screenshot(page, "needs-signoff")

    unseen.get_by_role("button", name="Sign off").click()
    dialog = page.get_by_role("dialog", name="Sign off alert")
    dialog.get_by_label("Note (optional)").fill("Reviewed with the patient's daughter.")
    dialog.get_by_role("button", name="Sign off").click()
    expect(page.get_by_text("There is nothing to sign off.")).to_be_visible()
    assert web_clinic.alerts("needs_signoff") == []
    signed = [
        a for a in web_clinic.alerts("recent") if a["patient_id"] == "p-5" and a["rule_id"] == "GLU-HYPO-2"
    ]
    assert [(a["signed_off_by"], a["signed_off_at"] is not None) for a in signed] == [("dr-a", True)]


def test_new_alerts_arrive_live_once_and_are_announced(web_clinic: WebClinic, page: Page) -> None:
    """A new alert appears in the open inbox without a reload, is announced to screen readers, and is
    listed once however many updates follow."""
    from playwright.sync_api import expect

    sign_in(page, web_clinic, path="/app/alerts")
    expect(page.get_by_text("There are no active alerts.")).to_be_visible()
    status, _ = web_clinic.api(
        "POST", "/api/v1/alerts/reports", body={"patient_id": "p-1", "kind": "severe_hypo_event"}
    )
    assert status == 202
    live = card(page, "GLU-HYPO-3", "p-1")
    expect(live).to_have_count(1)
    expect(live).to_contain_text("Level 3 hypoglycaemia (assisted event reported)")
    expect(page.get_by_test_id("live-polite")).to_have_text(
        "New Urgent alert for Wang Wei: Level 3 hypoglycaemia (assisted event reported)"
    )
    live.get_by_role("button", name="Acknowledge").click()
    expect(live).to_have_attribute("data-state", "acknowledged")
    # The acknowledgement also comes back over the live stream: still one card.
    page.wait_for_function("document.querySelectorAll('article.alert-card').length === 1")
    expect(page.locator("article.alert-card")).to_have_count(1)
    alerts = web_clinic.alerts()
    assert [(a["rule_id"], a["state"], a["acknowledged_by"]) for a in alerts] == [
        ("GLU-HYPO-3", "acknowledged", "dr-a")
    ]


def test_an_expired_session_says_so_and_returns_the_user_where_they_were(
    web_clinic: WebClinic, page: Page
) -> None:
    """When the session expires, the app says so, and signing in again returns to the same view."""
    from playwright.sync_api import expect

    seed_unseen_urgent(web_clinic)
    sign_in(page, web_clinic, path="/app/alerts")
    page.route(
        re.compile(r"/api/v1/alerts\?view=needs_signoff"),
        lambda route: route.fulfill(status=401, json={"detail": "token expired", "code": "auth.expired"}),
    )
    page.get_by_role("tab", name="Needs sign-off").click()
    expect(page.get_by_test_id("signin-notice")).to_have_text(
        "Your session expired. Sign in again to return to where you were."
    )
    page.unroute(re.compile(r"/api/v1/alerts\?view=needs_signoff"))
    page.fill("input[name=username]", DOCTOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/app/alerts\?view=needs_signoff$"))
    expect(card(page, "GLU-HYPO-2", "p-5")).to_have_count(1)


def test_a_weeks_only_blood_pressure_on_its_first_measured_day_shows_as_not_counted(
    web_clinic: WebClinic, page: Page
) -> None:
    """The panel tells the doctor a week's only blood pressure is on the first measured day, which the
    home protocol leaves out of the 7-day mean, rather than saying there are no readings."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    sign_in(page, web_clinic)
    cell = page.locator("tr[data-patient-id='p-3'] [data-column=bp_mean]")
    expect(cell).to_contain_text("Not counted: 1 on the first measured day")
    expect(cell).not_to_contain_text("No readings")


def test_the_panel_counts_readings_in_the_singular_and_the_plural(web_clinic: WebClinic, page: Page) -> None:
    """A count of one reads "1 reading", of more "3 readings", as a doctor would write them."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    sign_in(page, web_clinic)
    expect(page.locator("tr[data-patient-id='p-2'] [data-column=time_in_range]")).to_contain_text(
        "1 reading in 14 days"
    )
    expect(page.locator("tr[data-patient-id='p-5'] [data-column=time_in_range]")).to_contain_text(
        "3 readings in 14 days"
    )


def test_in_chinese_no_english_word_of_the_apps_own_text_remains(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """A browser set to Chinese gets the whole app in Chinese (titles, severities, states, values,
    errors), and the choice stays after a reload."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    page, _outside = open_page(locale="zh-CN")
    allowed = DATA_WORDS | UNIT_WORDS
    page.goto(f"{web_clinic.url}/app/")
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    page.fill("input[name=username]", DOCTOR)
    page.fill("input[name=password]", "wrong password!")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("邮箱或密码错误")
    assert visible_latin_words(page, allowed) == []

    sign_in(page, web_clinic)
    expect(page.locator("table.panel tbody tr")).to_have_count(5)
    assert visible_latin_words(page, allowed) == []
    screenshot(page, "panel-zh")

    for tab in ("未关闭", "待签核", "近期已解决"):
        page.goto(f"{web_clinic.url}/app/alerts")
        page.get_by_role("tab", name=tab).click()
        expect(page.locator("article.alert-card").first).to_be_visible()
        assert visible_latin_words(page, allowed) == [], tab
    screenshot(page, "inbox-zh")

    page.get_by_role("tab", name="未关闭").click()
    crisis = card(page, "BP-CRIT-1", "p-3")
    expect(crisis).to_contain_text("单次血压达到危象水平：休息后复测")
    expect(crisis.locator(".badge")).to_have_text("警告")
    crisis.get_by_role("button", name="确认").click()
    expect(crisis.get_by_test_id("alert-state")).to_have_text("已确认")
    crisis.get_by_role("button", name="解决").click()
    page.get_by_role("dialog").get_by_role("button", name="解决").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text("请先填写备注再解决。")
    assert visible_latin_words(page, allowed) == []
    page.keyboard.press("Escape")

    crisis.get_by_role("link", name="单次血压达到危象水平：休息后复测").click()
    expect(page.get_by_test_id("timeline").locator("li")).to_have_count(2)
    assert visible_latin_words(page, allowed) == []

    page.reload()
    expect(page.get_by_role("heading", name="处理记录")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"


def test_at_phone_width_nothing_scrolls_sideways_and_a_tap_opens_the_patient(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """On a 390 px phone the panel turns into cards and the inbox fits; nothing scrolls sideways, and
    tapping a patient opens them."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    page, _outside = open_page(viewport=PHONE)
    sign_in(page, web_clinic)
    expect(page.locator("table.panel tbody tr")).to_have_count(5)
    assert scroll_width(page) <= PHONE["width"]
    screenshot(page, "panel-phone")

    for view in ("active", "needs_signoff", "recent"):
        page.goto(f"{web_clinic.url}/app/alerts?view={view}")
        expect(page.locator("article.alert-card").first).to_be_visible()
        assert scroll_width(page) <= PHONE["width"], view
    screenshot(page, "inbox-phone")

    page.goto(f"{web_clinic.url}/app/")
    cell = page.locator("tr[data-patient-id='p-3'] [data-column=bp_mean]")
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # anywhere on the card
    expect(page).to_have_url(re.compile(r"/app/patients/p-3$"))


def test_keyboard_alone_opens_a_patient_and_acknowledges_an_alert(web_clinic: WebClinic, page: Page) -> None:
    """With the keyboard alone a doctor opens a patient from the panel and acknowledges an alert,
    seeing where the focus is."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    sign_in(page, web_clinic)
    expect(page.locator("table.panel tbody tr")).to_have_count(5)

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("tr[data-patient-id='p-2'] a.patient-link")
    outline = page.evaluate("getComputedStyle(document.activeElement, '::after').outlineStyle")
    assert outline != "none"  # the row shows the focus
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/app/patients/p-2$"))

    tab_to("nav a[href='/app/alerts']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/app/alerts$"))
    tab_to("article[data-rule-id='BP-CRIT-1'] button[data-action=acknowledge]")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(card(page, "BP-CRIT-1", "p-3")).to_have_attribute("data-state", "acknowledged")

    # Snooze from the keyboard too: the presets open, Escape closes them and returns the focus.
    tab_to("article[data-rule-id='BP-CRIT-1'] button[data-action=snooze]")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.dataset.minutes") == "15"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.dataset.action") == "snooze"


def test_axe_finds_no_serious_violation_on_any_view(
    web_clinic: WebClinic, page: Page, open_page: PageOpener
) -> None:
    """Every view passes axe-core's WCAG 2.2 AA checks without a serious or critical violation:
    sign-in, panel, each inbox tab, an alert's details, the resolve dialog, the phone layout."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    page.goto(f"{web_clinic.url}/app/")
    expect(page.locator("#login-form")).to_be_visible()
    found = {"sign-in": serious_axe_violations(page)}
    sign_in(page, web_clinic)
    expect(page.locator("table.panel tbody tr")).to_have_count(5)
    found["panel"] = serious_axe_violations(page)
    for view in ("active", "needs_signoff", "recent"):
        page.goto(f"{web_clinic.url}/app/alerts?view={view}")
        expect(page.locator("article.alert-card").first).to_be_visible()
        found[f"inbox {view}"] = serious_axe_violations(page)
    page.goto(f"{web_clinic.url}/app/alerts")
    page.locator("article[data-rule-id='BP-CRIT-1'] button[data-action=resolve]").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    found["resolve dialog"] = serious_axe_violations(page)
    page.keyboard.press("Escape")
    page.locator("article[data-rule-id='BP-CRIT-1'] a.alert-link").click()
    expect(page.get_by_test_id("timeline")).to_be_visible()
    found["alert detail"] = serious_axe_violations(page)

    phone, _outside = open_page(viewport=PHONE)
    sign_in(phone, web_clinic)
    expect(phone.locator("table.panel tbody tr")).to_have_count(5)
    found["panel phone"] = serious_axe_violations(phone)
    assert {view: v for view, v in found.items() if v} == {}


def test_only_administrators_see_administration(web_clinic: WebClinic, page: Page) -> None:
    """The Administration link and page are there for a clinic administrator, not for a doctor."""
    from playwright.sync_api import expect

    sign_in(page, web_clinic)
    expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    page.goto(f"{web_clinic.url}/app/admin")
    expect(page).to_have_url(re.compile(r"/app/$"))
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("signin-notice")).to_have_text("You have signed out.")
    sign_in(page, web_clinic, ADMIN)
    page.get_by_role("link", name="Administration").click()
    expect(page.get_by_role("heading", name="Administration", exact=True)).to_be_visible()


def test_api_docs_render_with_nothing_loaded_from_outside(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """Swagger UI (/docs) and ReDoc (/redoc) render from the server's own files, with every request
    past 127.0.0.1 aborted."""
    from playwright.sync_api import expect

    page, outside = open_page()
    page.goto(f"{web_clinic.url}/docs")
    expect(page).to_have_title("vitalgate API")
    expect(page.locator(".swagger-ui .title")).to_contain_text("vitalgate")
    expect(page.locator(".opblock-summary-path").filter(has_text="/api/v1/alerts").first).to_be_visible()
    screenshot(page, "docs-swagger")
    page.goto(f"{web_clinic.url}/redoc")
    # ReDoc has read the schema: its menu lists the API's tags (the body renders after it).
    expect(page.get_by_role("menuitem", name="alerts", exact=True)).to_be_visible()
    screenshot(page, "docs-redoc")
    assert outside.urls == []


def test_a_throttled_sign_in_says_so_and_for_how_long(web_clinic: WebClinic, page: Page) -> None:
    """After the account's failed-login limit (api/login_throttle.py), even the right password is
    refused with 429: the sign-in form says why and for how long, not "wrong password"."""
    from playwright.sync_api import expect

    wrong = urllib.parse.urlencode({"username": DOCTOR, "password": "not it"}).encode()
    for _ in range(ACCOUNT_LOCKOUT_THRESHOLD):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{web_clinic.url}/api/v1/auth/token", wrong, timeout=10)
        assert refused.value.code == 401
    page.goto(f"{web_clinic.url}/app/")
    page.fill("input[name=username]", DOCTOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        f"Too many failed sign-ins. Try again in {OBSERVATION_WINDOW_S // 60} min."
    )
    expect(page.get_by_test_id("sign-out")).to_have_count(0)


def test_a_locked_account_is_told_to_ask_the_clinic_administrator(web_clinic: WebClinic, page: Page) -> None:
    """An account locked by 100 consecutive failed logins (api/routes/auth.py) gets 403 even for the
    right password: the form says who can help, in the doctor's language."""
    from playwright.sync_api import expect

    with web_clinic.services.clinic_sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None
        user.failed_logins = LOCK_AFTER_FAILED_LOGINS
        session.commit()
    page.goto(f"{web_clinic.url}/app/")
    page.fill("input[name=username]", DOCTOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        "This account is locked after repeated failed sign-ins. Ask your clinic administrator to unlock it."
    )
    expect(page.get_by_test_id("sign-out")).to_have_count(0)
    page.select_option("select[name=language]", "zh-CN")
    expect(page.locator("#login-error")).to_have_text("多次登录失败，此账户已锁定。请联系诊所管理员解锁。")

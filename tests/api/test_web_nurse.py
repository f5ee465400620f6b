"""The nurse's workspace (a clinic_staff user, NURSE "Zhang Min") in Debian's Chromium, against a real
uvicorn server, clinic database, reading store and alert engine (tests/api/web_fixtures.py): the panel,
the alert inbox and a patient's page at desktop and phone size, in English and Chinese; triage from the
inbox; and what only a family doctor or an administrator may do, neither offered to her nor accepted
from her by the API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from .test_web_app import DATA_WORDS, UNIT_WORDS, card, seed_alerts, seed_unseen_urgent
from .test_web_patient import LATIN_IN_CHINESE, chart_option, glucose_week, week_of_blood_pressure
from .web_fixtures import (  # noqa: F401  (pytest fixtures)
    DESKTOP,
    NURSE,
    NURSE_NAME,
    PHONE,
    PageOpener,
    WebClinic,
    browser_fixture,
    browser_required,
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

# Latin words a Chinese page may show: the names of people (data), units, and the abbreviations the
# other Chinese-page tests allow (tests/api/test_web_app.py, tests/api/test_web_patient.py).
ALLOWED_IN_CHINESE = DATA_WORDS | UNIT_WORDS | LATIN_IN_CHINESE
SIZES = {"desktop": DESKTOP, "phone": PHONE}
LANGUAGES = {"en": "en-US", "zh": "zh-CN"}


def check_view(page: Page, name: str, lang: str, size: str) -> list[str]:
    """Screenshot the view as nurse-{name}-{lang}-{size}; what is wrong with it, in words."""
    screenshot(page, f"nurse-{name}-{lang}-{size}")
    faults = [f"{name}: axe {v['id']} at {v['nodes']}" for v in serious_axe_violations(page)]
    if size == "phone" and scroll_width(page) > PHONE["width"]:
        faults.append(f"{name}: scrolls sideways ({scroll_width(page)} px)")
    if lang == "zh":
        words = visible_latin_words(page, set(ALLOWED_IN_CHINESE))
        if words:
            faults.append(f"{name}: English words {words}")
    return faults


@pytest.mark.parametrize("lang", list(LANGUAGES))
@pytest.mark.parametrize("size", list(SIZES))
def test_the_nurse_sees_panel_inbox_and_patient_whole_in_her_language_and_screen(
    web_clinic: WebClinic, open_page: PageOpener, size: str, lang: str
) -> None:
    """The nurse's panel, inbox and a patient's page pass axe, fit a phone, and are all Chinese in zh-CN."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    web_clinic.add_readings(week_of_blood_pressure("p-2") + glucose_week("p-2"))
    page, _outside = open_page(viewport=SIZES[size], locale=LANGUAGES[lang])
    sign_in(page, web_clinic, NURSE)
    expect(page.locator("table.panel tbody tr")).to_have_count(5)
    expect(page.locator("tr[data-patient-id='p-2'] [data-column=urgency] .badge")).to_be_visible()
    faults = check_view(page, "panel", lang, size)

    page.goto(f"{web_clinic.url}/app/alerts")
    expect(card(page, "GLU-HYPO-2", "p-2")).to_be_visible()
    expect(card(page, "BP-CRIT-1", "p-3")).to_be_visible()
    faults += check_view(page, "inbox", lang, size)

    page.goto(f"{web_clinic.url}/app/patients/p-2")
    expect(page.get_by_test_id("patient-name")).to_be_visible()
    chart_option(page, "bp-chart")
    chart_option(page, "glucose-chart")
    expect(page.get_by_test_id("targets-read-only")).to_be_visible()
    faults += check_view(page, "patient", lang, size)
    assert faults == []


def test_a_nurse_acknowledges_from_the_inbox_on_her_phone_and_the_doctor_sees_it_at_once(
    web_clinic: WebClinic, page: Page, open_page: PageOpener
) -> None:
    """The nurse acknowledges an urgent alert on her phone: her card shows it done under her name, with
    nothing left to acknowledge, and the doctor's open inbox shows it acknowledged by her without a reload."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    sign_in(page, web_clinic, path="/app/alerts")  # the doctor, at his desk
    doctors_card = card(page, "GLU-HYPO-2", "p-2")
    expect(doctors_card).to_have_attribute("data-state", "open")

    phone, _outside = open_page(viewport=PHONE)
    sign_in(phone, web_clinic, NURSE, "/app/alerts")
    urgent = card(phone, "GLU-HYPO-2", "p-2")
    expect(urgent).to_have_attribute("data-state", "open")
    urgent.get_by_role("button", name="Acknowledge").click()
    expect(urgent).to_have_attribute("data-state", "acknowledged")
    expect(urgent.get_by_test_id("alert-state")).to_have_text("Acknowledged")
    expect(urgent.get_by_test_id("acknowledged-by")).to_have_text(f"Acknowledged by {NURSE_NAME}")
    expect(urgent.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(card(phone, "BP-CRIT-1", "p-3")).to_have_attribute("data-state", "open")  # only the one she chose
    screenshot(phone, "nurse-acknowledged-en-phone")

    expect(doctors_card).to_have_attribute("data-state", "acknowledged")
    expect(doctors_card.get_by_test_id("acknowledged-by")).to_have_text(f"Acknowledged by {NURSE_NAME}")
    alerts = {a["rule_id"]: a for a in web_clinic.alerts()}
    assert (alerts["GLU-HYPO-2"]["state"], alerts["GLU-HYPO-2"]["acknowledged_by"]) == (
        "acknowledged",
        "nurse-1",
    )
    assert alerts["BP-CRIT-1"]["state"] == "open"


def test_doctor_only_and_administrator_only_actions_are_not_offered_to_a_nurse(
    web_clinic: WebClinic, page: Page
) -> None:
    """A nurse is offered no target change (read-only, reason shown) and no administration, both of
    which the API refuses her."""
    from playwright.sync_api import expect

    # What the API refuses a clinic_staff user (api/routes/targets.py, api/routes/admin_common.py).
    status, refused = web_clinic.api(
        "PUT", "/api/v1/patients/p-1/targets", NURSE, {"bp_goal_systolic_mmhg": 130}
    )
    assert (status, refused["code"]) == (403, "targets.not_family_doctor")
    assert web_clinic.api("GET", "/api/v1/admin/accounts", NURSE)[0] == 403
    assert web_clinic.api("GET", "/api/v1/admin/reports/monthly?month=2026-01", NURSE)[0] == 403

    sign_in(page, web_clinic, NURSE)
    expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    page.goto(f"{web_clinic.url}/app/admin")
    expect(page).to_have_url(re.compile(r"/app/$"))
    page.goto(f"{web_clinic.url}/app/admin/reports")
    expect(page).to_have_url(re.compile(r"/app/$"))

    page.goto(f"{web_clinic.url}/app/patients/p-1")
    editor = page.get_by_test_id("targets-editor")
    expect(editor.get_by_test_id("targets-read-only")).to_be_visible()
    expect(editor.get_by_role("button", name="Save targets")).to_have_count(0)
    for field in editor.locator("input, select").all():
        expect(field).to_be_disabled()
    # Nowhere on the page is there another way to save targets.
    expect(page.get_by_role("button", name=re.compile("targets", re.IGNORECASE))).to_have_count(0)


def test_every_alert_action_the_inbox_offers_a_nurse_the_api_accepts(
    web_clinic: WebClinic, page: Page
) -> None:
    """The actions a nurse is offered in each inbox tab (acknowledge, snooze, resolve, sign off) all
    succeed for her: none is refused as the doctor's alone."""
    from playwright.sync_api import expect

    seed_alerts(web_clinic)
    seed_unseen_urgent(web_clinic)
    refused: list[str] = []
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status == 403 else None)
    sign_in(page, web_clinic, NURSE, "/app/alerts")
    crisis = card(page, "BP-CRIT-1", "p-3")
    crisis.get_by_role("button", name="Acknowledge").click()
    expect(crisis).to_have_attribute("data-state", "acknowledged")
    crisis.get_by_role("button", name="Snooze").click()
    crisis.get_by_role("group", name="Snooze for").get_by_role("button", name="15 min").click()
    expect(crisis).to_have_attribute("data-state", "snoozed")
    crisis.get_by_role("button", name="Resolve").click()
    dialog = page.get_by_role("dialog", name="Resolve alert")
    dialog.get_by_label("Note").fill("Re-measured after rest: 138/86.")
    dialog.get_by_role("button", name="Resolve").click()
    expect(card(page, "BP-CRIT-1", "p-3")).to_have_count(0)

    page.get_by_role("tab", name="Needs sign-off").click()
    unseen = card(page, "GLU-HYPO-2", "p-5")
    unseen.get_by_role("button", name="Sign off").click()
    page.get_by_role("dialog", name="Sign off alert").get_by_role("button", name="Sign off").click()
    expect(page.get_by_text("There is nothing to sign off.")).to_be_visible()
    assert refused == []
    signed = [a for a in web_clinic.alerts("recent", NURSE) if a["patient_id"] == "p-5"]
    assert [a["signed_off_by"] for a in signed] == ["nurse-1"]


def test_on_a_phone_the_inbox_tabs_stay_on_one_row(web_clinic: WebClinic, open_page: PageOpener) -> None:
    """At 390 px the three inbox tabs (Active, Needs sign-off, Recent & resolved) share one row, each
    name whole on one line."""
    from playwright.sync_api import expect

    for locale in LANGUAGES.values():
        phone, _outside = open_page(viewport=PHONE, locale=locale)
        sign_in(phone, web_clinic, NURSE, "/app/alerts")
        tabs = phone.get_by_role("tab")
        expect(tabs).to_have_count(3)
        for selected in tabs.all():  # the selected tab's name is bold, so wider
            selected.click()
            expect(selected).to_have_attribute("aria-selected", "true")
            boxes = [box for box in (tab.bounding_box() for tab in tabs.all()) if box is not None]
            assert len({round(box["y"]) for box in boxes}) == 1, (locale, boxes)
            # Each name on one line: a tab no taller than a one-line button (2.5rem, styles.css).
            assert all(box["height"] <= 41 for box in boxes), (locale, boxes)
        assert scroll_width(phone) <= PHONE["width"]


def test_the_report_line_under_the_download_buttons_is_no_empty_box(
    web_clinic: WebClinic, page: Page
) -> None:
    """Before any download, the report status line under Print / Export CSV draws nothing (no empty framed box)."""
    from playwright.sync_api import expect

    sign_in(page, web_clinic, NURSE, "/app/patients/p-1")
    status = page.get_by_test_id("report-status")
    expect(status).to_have_text("")
    drawn = status.evaluate(
        """(el) => { const s = getComputedStyle(el);
            return { border: s.borderTopStyle === "none" ? "0px" : s.borderTopWidth,
                     background: s.backgroundColor, padding: s.paddingTop }; }"""
    )
    assert drawn == {"border": "0px", "background": "rgba(0, 0, 0, 0)", "padding": "0px"}

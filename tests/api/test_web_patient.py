"""The patient page of the web app in Debian's Chromium, against a real uvicorn server, clinic database
and reading store (tests/api/web_fixtures.py): charts read back through their ECharts instances."""

from __future__ import annotations

import contextlib
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from storage.readings.protocol import AnyReading
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    GlucoseContext,
    GlucoseReading,
    Meal,
    SampleType,
)

from .web_fixtures import (  # noqa: F401  (pytest fixtures)
    AXE_JS,
    CUFF,
    DOCTOR,
    METER,
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

MG_DL_PER_MMOL_L = 18.01559
# Latin words a Chinese page may show: data (the user "dr-a", the zone "UTC"), units, abbreviations
# used as such in Chinese clinical text (GMI, CV, AGP, a meter's HI/LO, guideline societies), and the
# names of file formats (CSV, PDF).
LATIN_IN_CHINESE = frozenset(
    {
        "dr",
        "UTC",
        "mmHg",
        "mmol",
        "mg",
        "dL",
        "GMI",
        "CV",
        "AGP",
        "HI",
        "LO",
        "ESH",
        "ESC",
        "ACC",
        "AHA",
        "CSV",
        "PDF",
    }
)


# --- readings --------------------------------------------------------------------------------------


def _days_ago(days: int, hour: int, minute: int = 0) -> datetime:
    """`hour`:`minute` UTC (the clinic's time zone) on the day `days` (>= 1) days before today."""
    assert days >= 1
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days) + timedelta(hours=hour, minutes=minute)


def cuff(
    patient_id: str,
    when: datetime,
    systolic: float,
    diastolic: float,
    pulse: float | None = 70,
    status: frozenset[BloodPressureStatus] = frozenset(),
) -> BloodPressureReading:
    device = CUFF.model_copy(update={"serial_number": f"cuff-{patient_id}"})  # one cuff per home
    rid = blood_pressure_reading_id(
        device,
        when.replace(tzinfo=None),
        1,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial=None,
        pulse_bpm=pulse,
    )
    return BloodPressureReading(
        reading_id=rid,
        device=device,
        patient_id=patient_id,
        measured_at=when,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=pulse,
        user_id=1,
        measurement_status=status,
    )


_sequence = iter(range(10_000, 10_000_000))


def meter(
    patient_id: str,
    when: datetime,
    mg_dl: float,
    meal: Meal | None = None,
    sample_type: SampleType | None = None,
) -> GlucoseReading:
    seq = next(_sequence)
    device = METER.model_copy(update={"serial_number": f"meter-{patient_id}"})  # one meter per home
    return GlucoseReading(
        reading_id=glucose_reading_id(device, seq, when.replace(tzinfo=None)),
        device=device,
        patient_id=patient_id,
        measured_at=when,
        sequence_number=seq,
        glucose=mg_dl,
        sample_type=sample_type,
        context=None if meal is None else GlucoseContext(meal=meal),
    )


def week_of_blood_pressure(patient_id: str, base: float = 142) -> list[AnyReading]:
    """Morning (07:00) and evening (19:05) cuff readings on each of the 7 days before today."""
    readings: list[AnyReading] = []
    for day in range(1, 8):
        readings.append(cuff(patient_id, _days_ago(day, 7), base + day % 3, 88 - day % 2))
        readings.append(cuff(patient_id, _days_ago(day, 19, 5), base - 6 + day % 2, 84))
    return readings


def cuff_errors(patient_id: str) -> list[AnyReading]:
    """A cuff's error readings: one sent as 0/0 (pulse 0), one with nothing measured (NaN)."""
    return [
        cuff(patient_id, _days_ago(2, 8, 30), 0, 0, pulse=0),
        cuff(patient_id, _days_ago(1, 20, 15), math.nan, math.nan, pulse=None),
    ]


def glucose_week(patient_id: str) -> list[AnyReading]:
    """Fasting, post-meal and bedtime meter readings on the 7 days before today, and one
    control-solution test."""
    readings: list[AnyReading] = []
    for day in range(1, 8):
        readings.append(meter(patient_id, _days_ago(day, 6, 30), 110 + day * 3, Meal.FASTING))
        readings.append(meter(patient_id, _days_ago(day, 13, 30), 170 + day * 6, Meal.POSTPRANDIAL))
        readings.append(meter(patient_id, _days_ago(day, 22), 130, Meal.BEDTIME))
    readings.append(meter(patient_id, _days_ago(3, 9), 112, sample_type=SampleType.CONTROL_SOLUTION))
    return readings


# --- the page ----------------------------------------------------------------------------------------


def open_patient(page: Page, clinic: WebClinic, patient_id: str, days: int = 14, email: str = DOCTOR) -> None:
    """Sign in with the patient's page as the way in, and wait until its name is shown."""
    from playwright.sync_api import expect

    sign_in(page, clinic, email, path=f"/app/patients/{patient_id}?days={days}")
    expect(page.get_by_test_id("patient-name")).to_be_visible()


def go_to(page: Page, path: str) -> None:
    """Navigate inside the running app (vue-router), as a link would: the page is not reloaded."""
    page.evaluate(
        "(path) => document.querySelector('#app').__vue_app__.config.globalProperties.$router.push(path)",
        path,
    )


# The ECharts instance of the chart with `data-testid=id` (ECharts draws into an element inside it).
CHART_JS = """(id) => {
    const host = document.querySelector(`[data-testid="${id}"] [_echarts_instance_]`);
    return host && window.vitalgateCharts.getInstanceByDom(host);
}"""


def wait_until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = 10_000) -> None:
    """Wait until the JavaScript function `predicate`, called with `arg` in the page, returns truthy:
    checked on every animation frame, failing after `timeout_ms`. (Playwright's wait_for_function
    compiles its predicate inside the page, which the app's Content-Security-Policy refuses; a
    function given to evaluate is not compiled there.)"""
    page.evaluate(
        f"""([arg, timeout]) => new Promise((resolve, reject) => {{
            const predicate = {predicate};
            const deadline = performance.now() + timeout;
            const check = () => {{
                let met = false;
                try {{ met = Boolean(predicate(arg)); }} catch (error) {{ met = false; }}
                if (met) resolve(true);
                else if (performance.now() > deadline) reject(new Error("condition not met in time"));
                else requestAnimationFrame(check);
            }};
            check();
        }})""",
        [arg, timeout_ms],
    )


def chart_option(page: Page, test_id: str) -> dict[str, Any]:
    """The option of the ECharts instance drawn in the element with `data-testid=test_id`."""
    wait_until(page, f"(id) => ({CHART_JS})(id) != null", test_id)
    option: dict[str, Any] = page.evaluate(
        f"(id) => JSON.parse(JSON.stringify(({CHART_JS})(id).getOption()))", test_id
    )
    return option


def series(option: dict[str, Any], series_id: str) -> dict[str, Any]:
    for entry in option["series"]:
        if entry.get("id") == series_id:
            return dict(entry)
    raise AssertionError(f"no series {series_id!r} in {[s.get('id') for s in option['series']]}")


def values(entry: dict[str, Any]) -> list[Any]:
    return [item["value"] if isinstance(item, dict) else item for item in entry["data"]]


def bp_goal_lines(option: dict[str, Any]) -> tuple[float, float]:
    systolic = series(option, "systolic")["markLine"]["data"]
    diastolic = series(option, "diastolic")["markLine"]["data"]
    return systolic[0]["yAxis"], diastolic[0]["yAxis"]


# --- tests ---------------------------------------------------------------------------------------------


def test_a_cuff_error_is_a_marker_with_its_reason_and_never_a_value(
    web_clinic: WebClinic, page: Page
) -> None:
    """A cuff's error readings (0/0 and nothing measured) are marks with their reason, never BP values."""
    from playwright.sync_api import expect

    web_clinic.add_readings(week_of_blood_pressure("p-1") + cuff_errors("p-1"))
    open_patient(page, web_clinic, "p-1")
    option = chart_option(page, "bp-chart")

    for series_id in ("systolic", "diastolic", "pulse"):
        plotted = values(series(option, series_id))
        assert len(plotted) == 14, series_id
        assert all(isinstance(y, (int, float)) and y > 0 for _x, y in plotted), series_id
    errors = values(series(option, "errors"))
    assert len(errors) == 2
    assert all(y == "errors" for _x, y in errors)  # a row of their own, no value

    # The tooltip of an error mark says why, and shows no pressure.
    page.evaluate(
        f"""() => {{
            const chart = ({CHART_JS})("bp-chart");
            const index = chart.getOption().series.findIndex((s) => s.id === "errors");
            chart.dispatchAction({{ type: "showTip", seriesIndex: index, dataIndex: 0 }});
        }}"""
    )
    tooltip = page.get_by_test_id("bp-chart").locator("div", has_text="Error readings").last
    expect(tooltip).to_contain_text("implausibly low")
    assert "0/0" not in tooltip.inner_text()

    # The table, the chart's accessible alternative, lists them with their reasons and no value.
    page.get_by_test_id("bp-table-toggle").click()
    table = page.get_by_test_id("bp-table")
    invalid = table.locator("tr[data-valid=false]")
    expect(invalid).to_have_count(2)
    expect(invalid.nth(0)).to_contain_text("Systolic not measured")
    expect(invalid.nth(1)).to_contain_text("Systolic implausibly low (below 40 mmHg)")
    expect(table.locator("tr[data-valid=true]")).to_have_count(14)
    assert "0/0" not in page.inner_text("main")
    screenshot(page, "patient-bp-cuff-errors")


def test_the_bp_goal_lines_are_the_patients_targets_and_move_when_the_doctor_saves_new_ones(
    web_clinic: WebClinic, page: Page
) -> None:
    """The BP chart's goal lines are the targets the rules use, and move as soon as the doctor saves others."""
    from playwright.sync_api import expect

    web_clinic.add_readings(week_of_blood_pressure("p-1"))
    open_patient(page, web_clinic, "p-1")
    status, patient = web_clinic.api("GET", "/api/v1/patients/p-1")
    assert status == 200
    rules = patient["targets"]
    assert bp_goal_lines(chart_option(page, "bp-chart")) == (
        rules["bp_goal_systolic_mmhg"],
        rules["bp_goal_diastolic_mmhg"],
    )
    assert (rules["bp_goal_systolic_mmhg"], rules["bp_goal_diastolic_mmhg"]) != (130, 80)

    editor = page.get_by_test_id("targets-editor")
    editor.locator("input[name=bp_goal_systolic_mmhg]").fill("130")
    editor.locator("input[name=bp_goal_diastolic_mmhg]").fill("80")
    editor.get_by_role("button", name="Save targets").click()
    expect(page.get_by_test_id("targets-saved")).to_contain_text("Saved.")
    expect(page.get_by_test_id("bp-goal")).to_have_text("below 130/80 mmHg")
    wait_until(
        page,
        f"""() => {{
            const chart = ({CHART_JS})("bp-chart");
            const goal = (id) => chart.getOption().series.find((s) => s.id === id).markLine.data[0].yAxis;
            return goal("systolic") === 130 && goal("diastolic") === 80;
        }}""",
    )
    assert web_clinic.api("GET", "/api/v1/patients/p-1")[1]["targets"]["bp_goal_systolic_mmhg"] == 130

    # A goal past its bound is refused, worded from the API's code, and nothing moves.
    editor.locator("input[name=bp_goal_diastolic_mmhg]").fill("135")
    editor.get_by_role("button", name="Save targets").click()
    expect(page.get_by_test_id("targets-error")).to_contain_text(
        "The diastolic BP goal must be at most 90 mmHg."
    )
    assert bp_goal_lines(chart_option(page, "bp-chart")) == (130, 80)
    screenshot(page, "patient-targets-saved")


def test_a_nurse_sees_the_targets_read_only_and_is_told_so_before_typing(
    web_clinic: WebClinic, page: Page
) -> None:
    """Clinic staff see the targets read-only, with the reason shown above the disabled fields."""
    from playwright.sync_api import expect

    open_patient(page, web_clinic, "p-1", email=NURSE)
    editor = page.get_by_test_id("targets-editor")
    expect(editor.get_by_test_id("targets-read-only")).to_have_text(
        "Only the patient's family doctor can change these targets. They are shown here read-only."
    )
    expect(editor.locator("input[name=bp_goal_systolic_mmhg]")).to_be_disabled()
    expect(editor.get_by_role("button", name="Save targets")).to_have_count(0)


def test_a_failed_readings_request_shows_an_error_and_never_the_previous_patients_data(
    web_clinic: WebClinic, page: Page
) -> None:
    """Switching from patient A to B with B's readings request aborted: B's name, errors, none of A's data."""
    from playwright.sync_api import expect

    web_clinic.add_readings(week_of_blood_pressure("p-1") + glucose_week("p-1"))
    web_clinic.add_readings(week_of_blood_pressure("p-2", base=128))
    open_patient(page, web_clinic, "p-1")
    chart_option(page, "bp-chart")
    chart_option(page, "glucose-chart")

    readings_of_b = re.compile(r".*/api/v1/patients/p-2/readings.*")
    page.route(readings_of_b, lambda route: route.abort())
    go_to(page, "/patients/p-2?days=14")
    expect(page.get_by_test_id("patient-name")).to_have_text("Zhou Yu")
    expect(page.get_by_test_id("bp-error")).to_contain_text(
        "The blood pressure readings could not be loaded."
    )
    expect(page.get_by_test_id("glucose-error")).to_contain_text("The glucose readings could not be loaded.")
    expect(page.get_by_test_id("bp-chart")).to_have_count(0)
    expect(page.get_by_test_id("glucose-chart")).to_have_count(0)
    expect(page.get_by_test_id("bp-empty")).to_have_count(0)  # an error, not "no readings"
    assert "Wang" not in page.inner_text("main")
    screenshot(page, "patient-readings-error")

    # Once B's readings answer, "Try again" draws B's own readings.
    page.unroute(readings_of_b)
    page.get_by_test_id("bp-card").get_by_role("button", name="Try again").click()
    systolic = values(series(chart_option(page, "bp-chart"), "systolic"))
    assert sorted(y for _x, y in systolic)[0] == 122  # p-2's readings (base 128), not p-1's


def test_an_answer_for_the_previous_patient_arriving_late_is_never_shown(
    web_clinic: WebClinic, page: Page
) -> None:
    """Patient A's readings answer held back until B is shown: B's page keeps B's charts only."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Route, expect

    web_clinic.add_readings(week_of_blood_pressure("p-1", base=160))
    web_clinic.add_readings(week_of_blood_pressure("p-2", base=128))
    held: list[Route] = []
    readings_of_a = re.compile(r".*/api/v1/patients/p-1/readings.*")
    page.route(readings_of_a, lambda route: held.append(route))
    open_patient(page, web_clinic, "p-1")
    expect(page.get_by_test_id("bp-card")).to_contain_text("Loading blood pressure readings")

    go_to(page, "/patients/p-2?days=14")
    expect(page.get_by_test_id("patient-name")).to_have_text("Zhou Yu")
    before = values(series(chart_option(page, "bp-chart"), "systolic"))
    assert max(y for _x, y in before) < 140  # B's readings (base 128); A's are 160 and more

    assert held, "A's readings request was not made"
    for route in held:
        # A's answers come now; the page may already have cancelled those requests (that is the point).
        with contextlib.suppress(PlaywrightError):
            route.continue_()
    page.unroute(readings_of_a)
    # A round trip after A's answers: B's page is unchanged.
    page.get_by_test_id("bp-card").get_by_role("button", name="Show as table").click()
    expect(page.get_by_test_id("bp-table").locator("tr[data-valid=true]")).to_have_count(14)
    after = values(series(chart_option(page, "bp-chart"), "systolic"))
    assert after == before
    expect(page.get_by_test_id("patient-name")).to_have_text("Zhou Yu")
    assert "Wang" not in page.inner_text("main")


def test_the_glucose_chart_shows_meals_the_target_band_time_in_ranges_and_why_no_agp(
    web_clinic: WebClinic, page: Page
) -> None:
    """Glucose by meal over the patient's target band, a control-solution test as an error mark, the
    summary's time in ranges, and the reason the AGP is not drawn for a week of meter readings."""
    from playwright.sync_api import expect

    web_clinic.add_readings(glucose_week("p-1"))
    open_patient(page, web_clinic, "p-1")
    option = chart_option(page, "glucose-chart")
    assert len(values(series(option, "meal-fasting"))) == 7
    assert len(values(series(option, "meal-postprandial"))) == 7
    assert len(values(series(option, "meal-bedtime"))) == 7
    assert len(values(series(option, "errors"))) == 1

    status, summary = web_clinic.api("GET", "/api/v1/patients/p-1/summary?days=14")
    assert status == 200
    target = summary["glucose"]["target"]
    band = series(option, "target-range")["markArea"]["data"][0]
    assert band[0]["yAxis"] == pytest.approx(target["low_mg_dl"] / MG_DL_PER_MMOL_L)  # mmol/L, the CN default
    assert band[1]["yAxis"] == pytest.approx(target["high_mg_dl"] / MG_DL_PER_MMOL_L)

    ranges = summary["glucose"]["ranges"]
    tir = page.get_by_test_id("tir-list")
    for name in ("very_low", "low", "in_range", "high", "very_high"):
        expect(tir.locator(f"li[data-range={name}] strong")).to_have_text(f"{round(ranges[name])}%")
    assert [s["data"][0] for s in chart_option(page, "tir-chart")["series"]] == [
        ranges[name] for name in ("very_low", "low", "in_range", "high", "very_high")
    ]
    # A week of meter readings is not the 70 % of 15-minute intervals the AGP needs (Battelino 2019).
    assert summary["glucose"]["agp_reason"] == "wear_below_70_percent"
    expect(page.get_by_test_id("agp-reason")).to_contain_text(
        "The profile is not shown: it needs readings in at least 70% of the period's 15-minute intervals"
    )

    page.get_by_test_id("glucose-table-toggle").click()
    control = page.get_by_test_id("glucose-table").locator("tr[data-valid=false]")
    expect(control).to_have_count(1)
    expect(control).to_contain_text("control-solution test, not the patient's blood")
    screenshot(page, "patient-glucose")


def test_the_agp_is_drawn_from_the_summarys_percentiles_when_the_data_suffices(
    web_clinic: WebClinic, page: Page
) -> None:
    """With 14 days of 15-minute readings the AGP shows the summary's median and percentile bands."""
    readings: list[AnyReading] = []
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=14)
    for slot in range(14 * 96):
        when = start + timedelta(minutes=15 * slot, seconds=30)
        readings.append(meter("p-1", when, 100 + 60 * math.sin(slot / 96 * 2 * math.pi) + slot % 7))
    web_clinic.services.reading_store.write_batch(readings)
    open_patient(page, web_clinic, "p-1", days=14)

    status, summary = web_clinic.api("GET", "/api/v1/patients/p-1/summary?days=14")
    assert status == 200 and summary["glucose"]["agp_sufficient"] is True
    option = chart_option(page, "agp-chart")
    median = series(option, "agp-median")["data"]
    outer_base = series(option, "agp-p5-base")["data"]
    outer = series(option, "agp-p5-p95")["data"]
    for row in summary["glucose"]["agp"]:
        hour = row["hour"]
        assert median[hour] == pytest.approx(row["p50"] / MG_DL_PER_MMOL_L)
        assert outer_base[hour] + outer[hour] == pytest.approx(row["p95"] / MG_DL_PER_MMOL_L)
    screenshot(page, "patient-agp")


def test_the_alert_history_shows_each_step_with_who_when_and_the_note(
    web_clinic: WebClinic, page: Page
) -> None:
    """A resolved alert is listed with its steps: who acknowledged and resolved it, when, and the note."""
    from playwright.sync_api import expect

    status, _ = web_clinic.api(
        "POST", "/api/v1/alerts/reports", NURSE, {"patient_id": "p-1", "kind": "severe_hypo_event"}
    )
    assert status == 202
    [alert] = web_clinic.alerts("active")
    assert web_clinic.api("POST", f"/api/v1/alerts/{alert['alert_id']}/ack", NURSE)[0] == 200
    note = "Called the family; glucose 6.1 mmol/L after treatment."
    assert (
        web_clinic.api("POST", f"/api/v1/alerts/{alert['alert_id']}/resolve", NURSE, {"note": note})[0] == 200
    )

    open_patient(page, web_clinic, "p-1")
    history = page.get_by_test_id("alert-history")
    expect(history.get_by_test_id("alerts-empty-active")).to_be_visible()
    item = history.locator(f"li[data-alert-id='{alert['alert_id']}']")
    expect(item).to_contain_text("Level 3 hypoglycaemia")
    item.get_by_role("button", name="Show history").click()
    events = item.get_by_test_id("alert-events")
    expect(events.locator("li[data-event=acknowledged]")).to_contain_text(NURSE_NAME)
    expect(events.locator("li[data-event=resolved]")).to_contain_text(NURSE_NAME)
    expect(events.locator("li[data-event=resolved]")).to_contain_text(note)
    screenshot(page, "patient-alert-history")


def test_a_failed_alerts_request_is_an_error_never_no_alerts(web_clinic: WebClinic, page: Page) -> None:
    """With the alerts request aborted the history says it could not load them, never that there are none."""
    from playwright.sync_api import expect

    page.route(re.compile(r".*/api/v1/alerts\?.*"), lambda route: route.abort())
    open_patient(page, web_clinic, "p-1")
    history = page.get_by_test_id("alert-history")
    expect(history.get_by_test_id("alerts-error")).to_contain_text("Do not take this as no alerts.")
    expect(history.get_by_test_id("alerts-empty-active")).to_have_count(0)


def test_in_chinese_the_patient_page_has_no_english_text_of_its_own(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """zh-CN: every word of the patient page's own text, labels and chart names is Chinese."""
    from playwright.sync_api import expect

    web_clinic.add_readings(week_of_blood_pressure("p-1") + cuff_errors("p-1") + glucose_week("p-1"))
    zh, _outside = open_page(locale="zh-CN")
    open_patient(zh, web_clinic, "p-1")
    chart_option(zh, "bp-chart")
    chart_option(zh, "glucose-chart")
    zh.get_by_test_id("bp-table-toggle").click()
    zh.get_by_test_id("glucose-table-toggle").click()
    expect(zh.get_by_test_id("bp-table")).to_contain_text("错误读数")
    assert visible_latin_words(zh, set(LATIN_IN_CHINESE)) == []
    screenshot(zh, "patient-zh-CN")


def test_on_a_phone_nothing_scrolls_sideways_and_the_charts_fit(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """At 390x844 the patient page has no horizontal scroll, and each chart is as wide as the screen allows."""
    web_clinic.add_readings(week_of_blood_pressure("p-1") + cuff_errors("p-1") + glucose_week("p-1"))
    phone, _outside = open_page(viewport=PHONE)
    open_patient(phone, web_clinic, "p-1")
    for chart in ("bp-chart", "glucose-chart", "tir-chart"):
        chart_option(phone, chart)
        box = phone.get_by_test_id(chart).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], chart
    phone.get_by_test_id("bp-table-toggle").click()
    phone.get_by_test_id("glucose-table-toggle").click()
    assert scroll_width(phone) <= PHONE["width"]
    screenshot(phone, "patient-phone")


def test_the_period_and_the_tables_work_from_the_keyboard(web_clinic: WebClinic, page: Page) -> None:
    """Arrow keys change the period (the URL and the charts follow); Enter opens a readings table."""
    from playwright.sync_api import expect

    web_clinic.add_readings(week_of_blood_pressure("p-1"))
    open_patient(page, web_clinic, "p-1")
    page.locator("input[name=range][data-days='14']").focus()
    page.keyboard.press("ArrowRight")
    expect(page).to_have_url(re.compile(r"days=30"))
    expect(page.locator("input[name=range][data-days='30']")).to_be_checked()
    chart_option(page, "bp-chart")
    page.get_by_test_id("bp-table-toggle").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("bp-table")).to_be_visible()
    expect(page.get_by_test_id("bp-table-toggle")).to_have_attribute("aria-expanded", "true")


def test_axe_finds_no_serious_or_critical_violation_on_the_patient_page(
    web_clinic: WebClinic, page: Page
) -> None:
    """axe-core: no serious or critical WCAG 2.2 AA violation with charts, tables and the editor shown."""
    web_clinic.add_readings(week_of_blood_pressure("p-1") + cuff_errors("p-1") + glucose_week("p-1"))
    open_patient(page, web_clinic, "p-1")
    chart_option(page, "bp-chart")
    chart_option(page, "glucose-chart")
    page.get_by_test_id("bp-table-toggle").click()
    page.get_by_test_id("glucose-table-toggle").click()
    # axe-core given to the page as evaluate does: the app's Content-Security-Policy refuses inline scripts.
    page.evaluate(f"() => {{ {AXE_JS.read_text()}\n }}")
    assert page.evaluate("() => typeof window.axe") == "object"
    assert serious_axe_violations(page) == []

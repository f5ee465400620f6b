"""The administration pages of the web app in Debian's Chromium, against a real uvicorn server, clinic
database and a private broker running the dynamic security plugin (deploy/mosquitto as shipped)."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from storage.clinic.models import AuditLogEntry
from tests.fixtures.mosquitto import BrokerAccount, DeployedRig
from vitalgate.administration import ClinicMqttAccount, GatewayConfigSender
from vitals.payload import GatewayConfig
from vitals.topics import config_topic

from .web_fixtures import (  # noqa: F401  (pytest fixtures)
    ADMIN,
    AXE_JS,
    DOCTOR,
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

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto, browser_required, web_app_required]

REFUSED = 0x80
WAIT_MS = 10_000
ADMIN_PAGES = ("patients", "meters", "gateways", "accounts", "settings")
# Latin words a Chinese administration page may show: data (people's and gateways' names, ids, the
# zone "UTC", the meter's maker), units and the guideline profiles' codes.
LATIN_IN_CHINESE = frozenset(
    {"dr", "admin", "nurse", "Zhang", "Min", "Wang", "Wei", "Zhou", "Yu", "Lin", "Ma", "Qi", "An", "Jie", "Sun",
     "UTC", "mmol", "mg", "dL", "CN", "EU", "US", "IANA", "Asia", "Shanghai", "example"}
)  # fmt: skip
_numbers = itertools.count(1)


@pytest.fixture
def clinic(web_clinic: WebClinic, deployed_broker: DeployedRig) -> Iterator[WebClinic]:
    """The web clinic with the broker's gateway accounts and a config sender on the clinic's account."""
    broker = deployed_broker.broker
    cert = broker.clinic_certificate("vitalgate-clinic")
    services = web_clinic.services
    services.gateway_accounts = deployed_broker.accounts()
    services.gateway_configs = GatewayConfigSender(
        ClinicMqttAccount(
            host=broker.host,
            port=broker.clinic_port,
            username=None,
            password=None,
            tls_ca_file=str(broker.server_tls.ca_file),
            tls_cert_file=str(cert.cert_file),
            tls_key_file=str(cert.key_file),
        ),
        services.clinic_sessions,
    )
    yield web_clinic
    services.gateway_accounts = None
    services.gateway_configs = None


def _axe_violations(page: Page) -> list[dict[str, object]]:
    """axe-core's serious findings; axe is given to the page by evaluate, since the app's
    Content-Security-Policy refuses inline scripts."""
    if page.evaluate("() => typeof window.axe") != "object":
        page.evaluate(f"() => {{ {AXE_JS.read_text()}\n }}")
    return [dict(v) for v in serious_axe_violations(page)]


def _admin_actions(clinic: WebClinic) -> list[tuple[str, str, str | None]]:
    """admin-1's allowed changes (not reads, logins or the live alert stream)."""
    with clinic.services.clinic_sessions() as session:
        rows = (
            session.query(AuditLogEntry)
            .filter_by(actor="admin-1", outcome="allowed")
            .order_by(AuditLogEntry.audit_id)
        )
        return [
            (e.action, e.object_type, e.object_id)
            for e in rows
            if not e.action.startswith(("read_", "subscribe_")) and e.action != "login"
        ]


def test_an_administrator_enrols_provisions_binds_unbinds_and_discharges(
    clinic: WebClinic, page: Page, deployed_broker: DeployedRig, tmp_path: object
) -> None:
    """The whole path through the pages, each step audited; the downloaded settings file logs the
    gateway in, and the binding reaches its retained config with the memory choice left at no."""
    from playwright.sync_api import expect

    gateway_id = f"gw-web-{next(_numbers)}"
    sign_in(page, clinic, ADMIN, "/app/admin")
    expect(page.get_by_role("heading", name="Enrol a patient")).to_be_visible()

    # Enrol.
    form = page.get_by_test_id("enrol-patient")
    form.get_by_label("Family name").fill("Guo")
    form.get_by_label("Given name").fill("Lan")
    form.get_by_label("Date of birth").fill("1948-09-30")
    form.locator("select[name=family_doctor_id]").select_option(label="dr-a")
    form.get_by_role("button", name="Enrol").click()
    expect(form.get_by_role("status")).to_have_text("Guo Lan enrolled.")
    [patient_id] = [
        p["patient_id"]
        for p in clinic.api("GET", "/api/v1/admin/patients", ADMIN)[1]
        if p["family_name"] == "Guo"
    ]

    # Provision: the file is shown once, downloaded, and logs the gateway in at the broker.
    page.get_by_role("link", name="Gateways").click()
    provision = page.get_by_test_id("provision-gateway")
    provision.get_by_label("Gateway identifier").fill(gateway_id)
    provision.get_by_role("button", name="Provision").click()
    notice = page.get_by_test_id("installer-file")
    expect(notice).to_be_focused()
    with page.expect_download() as download_info:
        notice.get_by_test_id("download-installer-file").click()
    download = download_info.value
    assert download.suggested_filename == f"vitalgate-gateway-{gateway_id}.toml"
    settings = tomllib.loads(download.path().read_text(encoding="utf-8"))
    account = BrokerAccount(settings["mqtt"]["username"], settings["mqtt"]["password"])
    probe = deployed_broker.probe(account, "gateway", client_id=gateway_id)
    try:
        assert probe.connect()
        assert probe.subscribe(config_topic(gateway_id)) < REFUSED
        notice.get_by_role("button", name="I have downloaded it").click()
        expect(page.get_by_test_id("installer-file")).to_have_count(0)

        # Register a meter and bind it; the memory choice stays at "not this patient's".
        page.get_by_role("link", name="Meters").click()
        register = page.get_by_test_id("register-meter")
        register.locator("select[name=kind]").select_option("glucose")
        register.get_by_label("Manufacturer").fill("Roche")
        register.get_by_label("Model").fill("Guide")
        register.get_by_label("Serial number", exact=True).fill(f"loaner-{gateway_id}")
        register.get_by_role("button", name="Register").click()
        expect(register.get_by_role("status")).to_have_text("Meter registered.")
        bind = page.get_by_test_id("bind-meter")
        bind.locator("select[name=patient_id]").select_option(label="Guo Lan")
        bind.locator("select[name=gateway_id]").select_option(gateway_id)
        expect(bind.locator("input[name=prior_memory_belongs][value=no]")).to_be_checked()
        bind.get_by_role("button", name="Bind").click()
        expect(bind.get_by_role("status")).to_contain_text(
            "Meter bound from now on. The gateway was sent its new bindings."
        )
        assert probe.wait_messages(1)
        config = GatewayConfig.model_validate_json(probe.messages[-1].payload)
        assert [(b.patient_id, b.prior_memory_belongs) for b in config.bindings] == [(patient_id, False)]

        # Unbind.
        binding = page.get_by_test_id(f"meter-loaner-{gateway_id}")
        expect(binding).to_contain_text("Bound to Guo Lan via")
        binding.get_by_text("Unbind", exact=True).first.click()
        binding.get_by_role("button", name="Unbind").click()
        expect(binding).to_contain_text("Not bound")
    finally:
        probe.close()

    # Discharge, confirmed; the patient stays in the list, discharged.
    page.get_by_role("link", name="Patients").click()
    page.get_by_test_id(f"patient-{patient_id}").get_by_role("link", name="Manage").click()
    page.get_by_role("button", name="Discharge").click()
    page.get_by_test_id("confirm-discharge").click()
    expect(page.get_by_text("Patient discharged; 0 meter binding(s) ended.")).to_be_visible()
    expect(page.get_by_role("button", name="Re-admit")).to_be_visible()
    screenshot(page, "admin-discharged")

    assert [(a, o) for a, o, _ in _admin_actions(clinic)] == [
        ("enrol_patient", "patient"),
        ("provision_gateway", "gateway"),
        ("register_meter", "meter"),
        ("bind_meter", "meter"),
        ("unbind_meter", "meter"),
        ("discharge_patient", "patient"),
    ]


def test_a_refused_change_is_worded_in_chinese_and_marks_the_field(
    clinic: WebClinic, open_page: PageOpener
) -> None:
    """A gateway id that exists: the API's code in Chinese, the field marked invalid, nothing added."""
    from playwright.sync_api import expect

    gateway_id = f"gw-web-{next(_numbers)}"
    assert clinic.api("POST", "/api/v1/admin/gateways", ADMIN, {"gateway_id": gateway_id})[0] == 201
    page, _outside = open_page(locale="zh-CN")
    sign_in(page, clinic, ADMIN, "/app/admin/gateways")
    form = page.get_by_test_id("provision-gateway")
    field = form.locator("input[name=gateway_id]")
    field.fill(gateway_id)
    field.press("Enter")
    expect(form.get_by_role("alert")).to_have_text("已存在使用此标识的网关。")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "provision-error")
    assert [g["gateway_id"] for g in clinic.api("GET", "/api/v1/admin/gateways", ADMIN)[1]] == [gateway_id]


def test_every_administration_page_is_in_chinese_fits_a_phone_and_passes_axe(
    clinic: WebClinic, open_page: PageOpener
) -> None:
    """At 390 px nothing scrolls sideways; no English word of the app's own text; no serious axe finding."""
    from playwright.sync_api import expect

    page, _outside = open_page(viewport=PHONE, locale="zh-CN")
    sign_in(page, clinic, ADMIN, "/app/admin")
    for name in ADMIN_PAGES:
        page.locator(f"nav.admin-nav a[href='/app/admin/{name}']").click()
        expect(page).to_have_url(f"{clinic.url}/app/admin/{name}")
        expect(page.locator("main h2").first).to_be_visible()
        expect(page.locator(".status-loading")).to_have_count(0)
        for details in page.locator("main details").all():
            details.evaluate("element => { element.open = true; }")
        assert scroll_width(page) <= PHONE["width"], name
        assert visible_latin_words(page, set(LATIN_IN_CHINESE)) == [], name
        assert _axe_violations(page) == [], name
        screenshot(page, f"admin-{name}-zh-phone")


def test_keyboard_alone_enrols_a_patient(clinic: WebClinic, page: Page) -> None:
    """Tab to each field, type, choose the doctor with the arrow keys, Enter submits."""
    from playwright.sync_api import expect

    sign_in(page, clinic, ADMIN, "/app/admin/patients")
    form = page.get_by_test_id("enrol-patient")
    form.get_by_label("Family name").focus()
    page.keyboard.type("Tan")
    page.keyboard.press("Tab")
    page.keyboard.type("Hui")
    focused_doctor = False
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "family_doctor_id":
            focused_doctor = True
            break
    assert focused_doctor
    page.keyboard.press("ArrowDown")
    expect(form.locator("select[name=family_doctor_id]")).not_to_have_value("")
    form.get_by_label("Patient identifier").focus()
    page.keyboard.press("Enter")
    expect(form.get_by_role("status")).to_have_text("Tan Hui enrolled.")


def test_a_doctor_is_kept_out_of_administration(clinic: WebClinic, page: Page) -> None:
    """A family doctor opening /app/admin lands on the panel; the API refuses them too."""
    from playwright.sync_api import expect

    sign_in(page, clinic, DOCTOR, "/app/admin/accounts")
    expect(page).not_to_have_url(f"{clinic.url}/app/admin/accounts")
    status, body = clinic.api("GET", "/api/v1/admin/accounts", DOCTOR)
    assert (status, body["code"]) == (403, "forbidden")

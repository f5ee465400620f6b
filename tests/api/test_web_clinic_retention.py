"""The clinic settings page's readings retention field in Debian's Chromium, against a real uvicorn
server and clinic database: too short a period is refused on the field, a valid one and an empty one
(the deployment's period) are saved."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .web_fixtures import (  # noqa: F401  (pytest fixtures)
    ADMIN,
    PageOpener,
    WebClinic,
    browser_fixture,
    browser_required,
    open_page_fixture,
    sign_in,
    web_app_required,
    web_clinic_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = [pytest.mark.browser, browser_required, web_app_required]

SETTINGS = "/api/v1/admin/clinic"


def test_the_administrator_sets_and_clears_the_clinics_readings_retention(
    web_clinic: WebClinic, open_page: PageOpener
) -> None:
    """The range 90-730 days is shown; 30 days is refused in Chinese on the marked field; 365 is saved; an empty field returns to the platform's period."""
    from playwright.sync_api import expect

    page, _outside = open_page(locale="zh-CN")
    sign_in(page, web_clinic, ADMIN, "/app/admin/settings")
    form = page.locator("form.admin-form")
    field = form.locator("input[name=readings_retention_days]")
    expect(field).to_have_value("")
    # The allowed range, up to the operator's ceiling (by default the platform's 730 days).
    expect(form.locator("#retention-hint")).to_contain_text("可设 90 至 730 天")
    expect(field).to_have_attribute("max", "730")

    def save(days: str) -> Locator:
        """Type `days`, save, and wait for the server's answer to the PATCH."""
        field.fill(days)
        with page.expect_response(lambda r: r.url.endswith(SETTINGS) and r.request.method == "PATCH"):
            form.get_by_role("button", name="保存").click()
        return form

    expect(save("30").get_by_role("alert")).to_have_text("有一项内容无效，请检查标出的字段。")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert web_clinic.api("GET", SETTINGS, ADMIN)[1]["readings_retention_days"] is None

    expect(save("365").get_by_role("status")).to_have_text("设置已保存。")
    assert web_clinic.api("GET", SETTINGS, ADMIN)[1]["readings_retention_days"] == 365
    page.reload()
    expect(field).to_have_value("365")

    expect(save("").get_by_role("status")).to_have_text("设置已保存。")
    assert web_clinic.api("GET", SETTINGS, ADMIN)[1]["readings_retention_days"] is None

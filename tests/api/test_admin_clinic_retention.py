"""A clinic's own readings retention through the administration API: at least 90 days and at most
the operator's ceiling, or null (the deployment's period), refused otherwise with 422 and nothing
changed, audited from and to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from vitalgate.settings import RetentionSettings, load_settings
from vitalgate.wiring import open_api_services

from .admin_helpers import ADMIN_1, ADMIN_2, audit_entries, refused
from .conftest import ClinicApi, _clinic_api

URL = "/api/v1/admin/clinic"


def _refused_days(api: ClinicApi, days: int) -> str:
    """PATCH `days`: refused with 422 on the field, nothing changed, audited as denied; the reason."""
    denials = len(audit_entries(api, action="update_clinic_settings", outcome="denied"))
    body = refused(
        api, "PATCH", URL, ADMIN_1, 422, "admin.invalid_field", json={"readings_retention_days": days}
    )
    assert body["field"] == "readings_retention_days"
    denied = audit_entries(api, action="update_clinic_settings", outcome="denied")
    assert len(denied) == denials + 1
    assert denied[-1].details == {"code": "admin.invalid_field"}
    return str(body["detail"])


def test_readings_retention_is_90_days_or_more_or_the_deployments(clinic_api: ClinicApi) -> None:
    """30 days is refused with 422 and a reason; 365 and then null are kept, each audited from and to."""
    assert (
        clinic_api.client.get(URL, headers=clinic_api.auth(ADMIN_1)).json()["readings_retention_days"] is None
    )
    assert "90" in _refused_days(clinic_api, 30)

    answer = clinic_api.client.patch(
        URL, headers=clinic_api.auth(ADMIN_1), json={"readings_retention_days": 365}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["readings_retention_days"] == 365
    renamed = clinic_api.client.patch(URL, headers=clinic_api.auth(ADMIN_1), json={"name": "Clinic One East"})
    assert renamed.json()["readings_retention_days"] == 365  # a body without the field leaves it
    cleared = clinic_api.client.patch(
        URL, headers=clinic_api.auth(ADMIN_1), json={"readings_retention_days": None}
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["readings_retention_days"] is None
    changes = [
        e.details["changed"].get("readings_retention_days")
        for e in audit_entries(clinic_api, action="update_clinic_settings", outcome="allowed")
    ]
    assert changes == [{"from": None, "to": 365}, None, {"from": 365, "to": None}]
    other = clinic_api.client.get(URL, headers=clinic_api.auth(ADMIN_2)).json()
    assert (other["clinic_id"], other["readings_retention_days"]) == ("c2", None)


def test_the_default_ceiling_is_the_deployments_readings_retention(clinic_api: ClinicApi) -> None:
    """With no ceiling set a clinic may only shorten: 731 days is refused (422, naming the 730-day ceiling, audited), 730 is kept."""
    shown = clinic_api.client.get(URL, headers=clinic_api.auth(ADMIN_1)).json()
    assert (shown["readings_retention_min_days"], shown["readings_retention_max_days"]) == (90, 730)
    detail = _refused_days(clinic_api, 731)
    assert "clinic_readings_max_days" in detail and "730" in detail
    kept = clinic_api.client.patch(
        URL, headers=clinic_api.auth(ADMIN_1), json={"readings_retention_days": 730}
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["readings_retention_days"] == 730


@pytest.fixture
def raised_ceiling_api(tmp_path: Path) -> Iterator[ClinicApi]:
    """The API of a deployment whose operator lets clinics keep readings up to 1000 days."""
    settings = load_settings(
        None, data_dir=tmp_path, retention={"readings_days": 730, "clinic_readings_max_days": 1000}
    )
    with open_api_services(settings, jwt_secret="test-secret-" + "x" * 32) as services:
        yield from _clinic_api(services)


def test_an_operator_raises_the_ceiling(raised_ceiling_api: ClinicApi) -> None:
    """retention.clinic_readings_max_days 1000: the page's range ends at 1000, 1000 is kept and 1001 refused."""
    api = raised_ceiling_api
    assert api.client.get(URL, headers=api.auth(ADMIN_1)).json()["readings_retention_max_days"] == 1000
    kept = api.client.patch(URL, headers=api.auth(ADMIN_1), json={"readings_retention_days": 1000})
    assert kept.status_code == 200, kept.text
    assert "1000" in _refused_days(api, 1001)


def test_a_ceiling_below_the_deployments_period_is_a_settings_error() -> None:
    """A ceiling under readings_days (or under kept-for-ever) is refused when the settings load."""
    with pytest.raises(ValidationError, match="clinic_readings_max_days"):
        RetentionSettings(readings_days=730, clinic_readings_max_days=365)
    with pytest.raises(ValidationError, match="clinic_readings_max_days"):
        RetentionSettings(readings_days=None, clinic_readings_max_days=1000)
    assert RetentionSettings(readings_days=None).clinic_readings_ceiling_days is None

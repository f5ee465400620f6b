"""A clinic's own readings retention through the administration API: at least 90 days or null (the
deployment's period), refused otherwise with 422 and nothing changed, audited from and to."""

from __future__ import annotations

from .admin_helpers import ADMIN_1, ADMIN_2, audit_entries, refused
from .conftest import ClinicApi

URL = "/api/v1/admin/clinic"


def test_readings_retention_is_90_days_or_more_or_the_deployments(clinic_api: ClinicApi) -> None:
    """30 days is refused with 422 and a reason; 365 and then null are kept, each audited from and to."""
    assert (
        clinic_api.client.get(URL, headers=clinic_api.auth(ADMIN_1)).json()["readings_retention_days"] is None
    )
    body = refused(
        clinic_api, "PATCH", URL, ADMIN_1, 422, "admin.invalid_field", json={"readings_retention_days": 30}
    )
    assert body["field"] == "readings_retention_days"
    assert "90" in body["detail"]
    [denied] = audit_entries(clinic_api, action="update_clinic_settings", outcome="denied")
    assert denied.details == {"code": "admin.invalid_field"}

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

"""An API over a real clinic database (SQLite, migrated by Alembic) and a real SQLite reading store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import ApiServices
from storage.clinic.models import GuidelineProfile, UserRole
from vitalgate.administration import add_clinic, add_patient, add_user
from vitalgate.settings import load_settings
from vitalgate.wiring import open_api_services

PASSWORD = "correct horse battery staple"


@dataclass
class ClinicApi:
    client: TestClient
    services: ApiServices

    def token(self, email: str, password: str = PASSWORD) -> str:
        response = self.client.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def auth(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(email)}"}


@pytest.fixture
def clinic_api(tmp_path: Path) -> Iterator[ClinicApi]:
    settings = load_settings(None, data_dir=tmp_path)
    with open_api_services(settings, jwt_secret="test-secret-" + "x" * 32) as services:
        yield from _clinic_api(services)


def _clinic_api(services: ApiServices) -> Iterator[ClinicApi]:
    with services.clinic_sessions() as session:
        add_clinic(session, "c1", "Clinic One", profile=GuidelineProfile.CN)
        add_clinic(session, "c2", "Clinic Two", profile=GuidelineProfile.EU)
        session.flush()
        for user_id, clinic, email, role in [
            ("dr-a", "c1", "a@c1.example", UserRole.FAMILY_DOCTOR),
            ("dr-b", "c1", "b@c1.example", UserRole.FAMILY_DOCTOR),
            ("admin-1", "c1", "admin@c1.example", UserRole.CLINIC_ADMIN),
            ("admin-2", "c2", "admin@c2.example", UserRole.CLINIC_ADMIN),
        ]:
            add_user(
                session,
                clinic_id=clinic,
                user_id=user_id,
                email=email,
                display_name=user_id,
                roles=[role],
                password=PASSWORD,
            )
        session.flush()
        add_patient(
            session,
            clinic_id="c1",
            patient_id="p-1",
            given_name="Wei",
            family_name="Wang",
            family_doctor_id="dr-a",
        )
        session.commit()
    with TestClient(create_app(services)) as client:
        yield ClinicApi(client, services)

"""Schemathesis against the API's own OpenAPI schema: generated requests to every operation, with a
valid token of each role, never get a server error (5xx).

Bounded in time: a few examples per operation (VITALGATE_SCHEMATHESIS_EXAMPLES, default 5), each
sent once with each role's token,
over the whole clinic API as `vitalgate api` builds it (alert engine included, no MQTT), on a clinic
database with a patient, a meter, readings and an alert. A failure prints the request as a curl
command to replay it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings

from api.app import create_app
from storage.clinic.models import GuidelineProfile, MeterKind, UserRole
from vitalgate.administration import add_clinic, add_gateway, add_patient, add_user, bind_meter
from vitalgate.clinic import ClinicServer, build_clinic_server
from vitalgate.settings import load_settings
from vitals.identity import glucose_reading_id
from vitals.readings import DeviceIdentity, GlucoseReading

EXAMPLES = int(os.environ.get("VITALGATE_SCHEMATHESIS_EXAMPLES", "5"))
PASSWORD = "schemathesis correct horse battery"
ROLES = {
    "family_doctor": ("doc@c1.example", UserRole.FAMILY_DOCTOR),
    "clinic_staff": ("staff@c1.example", UserRole.CLINIC_STAFF),
    "clinic_admin": ("admin@c1.example", UserRole.CLINIC_ADMIN),
}
METER = DeviceIdentity(manufacturer="Acme Medical", model="GL-2", serial_number="SCHEMA-1")


def _seed(server: ClinicServer) -> None:
    sessions = server.api.clinic_sessions
    with sessions() as session:
        add_clinic(session, "c1", "Clinic One", profile=GuidelineProfile.EU)
        add_clinic(session, "c2", "Clinic Two", profile=GuidelineProfile.CN)
        session.flush()
        for name, (email, role) in ROLES.items():
            add_user(
                session,
                clinic_id="c1",
                user_id=name,
                email=email,
                display_name=name,
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
            family_doctor_id="family_doctor",
            staff_ids=["clinic_staff"],
        )
        add_gateway(session, clinic_id="c1", gateway_id="gw-1")
        bind_meter(session, gateway_id="gw-1", device=METER, kind=MeterKind.GLUCOSE, patient_id="p-1")
        session.commit()
    now = datetime.now(UTC).replace(microsecond=0)
    readings = []
    for i in range(20):
        at = now - timedelta(hours=6 * i)
        readings.append(
            GlucoseReading(
                reading_id=glucose_reading_id(METER, i, at.replace(tzinfo=None)),
                device=METER,
                patient_id="p-1",
                measured_at=at,
                device_time=at.replace(tzinfo=None),
                sequence_number=i,
                unit="mg/dL",
                glucose=40.0 if i == 0 else 110.0 + i,
            )
        )
    server.api.reading_store.write_batch(readings)
    asyncio.run(server.engine.on_readings_committed(readings))  # an open alert to act on


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    settings_ = load_settings(None, data_dir=data_dir)
    server = asyncio.run(
        build_clinic_server(settings_, jwt_secret="schemathesis-" + "x" * 40, with_ingest=False)
    )
    _seed(server)
    with TestClient(create_app(server.api)) as client:
        tokens = {}
        for name, (email, _role) in ROLES.items():
            answer = client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            tokens[name] = answer.json()["access_token"]
        yield client, tokens
    asyncio.run(server.close())


def test_no_generated_request_gets_a_server_error(clinic: tuple[TestClient, dict[str, str]]) -> None:
    """Whatever a signed-in user of any role sends to any operation, the answer is not a 5xx."""
    client, tokens = clinic
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, "the schema lists too few operations: is it the whole API?"
    failures: list[str] = []
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its request
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def each_role(case: schemathesis.Case) -> None:
            nonlocal calls
            for role, token in sorted(tokens.items()):
                headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
                response = case.call(headers=headers)
                calls += 1
                if response.status_code >= 500 and len(failures) < 20:
                    failures.append(
                        f"{case.method} {case.formatted_path} as {role}: {response.status_code}"
                        f" {response.text[:300]}\n  {case.as_curl_command(headers=headers)}"
                    )

        each_role()
    print(
        f"\nschemathesis: {calls} requests over {len(operations)} operations, {len(failures)} server errors"
    )
    assert not failures, "server errors:\n" + "\n".join(failures)

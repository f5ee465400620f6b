"""`vitalgate admin` for scripts: every change audited under the operator's account or cli:<os user>,
refusals coded and changing nothing, and gateways provisioned on the broker's dynamic security plugin."""

from __future__ import annotations

import io
import stat
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.clinic.models import AuditLogEntry, Gateway, MeterBinding, Patient, User
from tests.fixtures.mosquitto import BrokerAccount, DeployedRig
from vitalgate.administration import cli_actor_id
from vitalgate.cli import main
from vitalgate.settings import load_settings
from vitalgate.wiring import open_clinic_database

METER = ["--kind", "glucose", "--manufacturer", "Roche", "--model", "Guide", "--serial-number", "GLU-5"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A settings file with the clinic database under the test's directory."""
    path = tmp_path / "vitalgate.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return path


def admin(
    config: Path, *argv: str, password: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None
) -> int:
    if password is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["--config", str(config), "admin", *argv])


def entries(config: Path) -> list[AuditLogEntry]:
    with open_clinic_database(load_settings(config)) as database, database.sessions() as session:
        return list(session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.audit_id)))


def counts(config: Path) -> dict[str, int]:
    with open_clinic_database(load_settings(config)) as database, database.sessions() as session:
        return {
            m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0
            for m in (User, Patient, Gateway, MeterBinding)
        }


@pytest.fixture
def clinic(config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clinics c1 and c2 with an administrator each, a doctor, a patient and a gateway in c1."""
    assert admin(config, "add-clinic", "--clinic-id", "c1", "--name", "One", "--profile", "cn") == 0
    assert admin(config, "add-clinic", "--clinic-id", "c2", "--name", "Two", "--profile", "eu") == 0
    for clinic_id, user_id, role in (
        ("c1", "admin-1", "clinic_admin"),
        ("c2", "admin-2", "clinic_admin"),
        ("c1", "dr-a", "family_doctor"),
    ):
        code = admin(
            config, "add-user", "--clinic-id", clinic_id, "--user-id", user_id, "--email", f"{user_id}@example.org",
            "--name", user_id, "--role", role, password="a password of length", monkeypatch=monkeypatch,
        )  # fmt: skip
        assert code == 0
    assert admin(config, "add-patient", "--actor", "admin-1", "--patient-id", "p1", "--given-name", "Wei",
                 "--family-name", "Wang", "--doctor", "dr-a") == 0  # fmt: skip
    assert admin(config, "add-gateway", "--actor", "admin-1", "--gateway-id", "gw1") == 0
    return config


def test_every_change_is_audited_under_the_operator(clinic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --actor the entries name cli:<os user>; with it, the administrator's account."""
    assert (
        admin(clinic, "bind-meter", "--actor", "admin-1", "--gateway-id", "gw1", "--patient-id", "p1", *METER)
        == 0
    )
    binding_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert admin(clinic, "unbind-meter", "--binding-id", binding_id) == 0
    assert admin(clinic, "discharge-patient", "--patient-id", "p1") == 0
    written = [(e.actor, e.action, e.clinic_id) for e in entries(clinic) if e.outcome == "allowed"]
    me = cli_actor_id()
    assert written == [
        (me, "add_clinic", "c1"),
        (me, "add_clinic", "c2"),
        (me, "create_account", "c1"),
        (me, "create_account", "c2"),
        (me, "create_account", "c1"),
        ("admin-1", "enrol_patient", "c1"),
        ("admin-1", "provision_gateway", "c1"),
        ("admin-1", "register_meter", "c1"),
        ("admin-1", "bind_meter", "c1"),
        (me, "unbind_meter", "c1"),
        (me, "discharge_patient", "c1"),
    ]
    bind = next(e for e in entries(clinic) if e.action == "bind_meter")
    assert bind.details["prior_memory_belongs"] is False


def test_an_administrator_acts_in_their_own_clinic_only(
    clinic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--actor of clinic c2 cannot enrol into c1 or discharge c1's patient; nothing changes; denial audited."""
    before = counts(clinic)
    assert admin(clinic, "add-patient", "--actor", "admin-2", "--clinic-id", "c1", "--given-name", "X",
                 "--family-name", "Y", "--doctor", "dr-a") == 2  # fmt: skip
    assert "administers clinic c2, not clinic c1" in capsys.readouterr().err
    assert admin(clinic, "discharge-patient", "--actor", "admin-2", "--patient-id", "p1") == 2
    assert "admin.not_found" in capsys.readouterr().err
    assert (
        admin(
            clinic,
            "add-patient",
            "--actor",
            "dr-a",
            "--given-name",
            "X",
            "--family-name",
            "Y",
            "--doctor",
            "dr-a",
        )
        == 2
    )
    assert "not an active clinic administrator" in capsys.readouterr().err
    assert counts(clinic) == before
    [denied] = [e for e in entries(clinic) if e.outcome == "denied"]
    assert (denied.actor, denied.action, denied.clinic_id, denied.details) == (
        "admin-2",
        "discharge_patient",
        "c2",
        {"code": "admin.not_found"},
    )


def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    clinic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A meter bound already, an unbind before the bind, an unknown zone, a gateway id that exists."""
    assert admin(clinic, "add-patient", "--clinic-id", "c1", "--patient-id", "p2", "--given-name", "Li",
                 "--family-name", "Na", "--doctor", "dr-a") == 0  # fmt: skip
    assert admin(clinic, "bind-meter", "--gateway-id", "gw1", "--patient-id", "p1", *METER) == 0
    binding_id = capsys.readouterr().out.split("binding ")[1].split(":")[0]
    before, audited = counts(clinic), len(entries(clinic))
    for argv, code in (
        (["bind-meter", "--gateway-id", "gw1", "--patient-id", "p2", *METER], "admin.meter_already_bound"),
        (
            ["unbind-meter", "--binding-id", binding_id, "--at", "2000-01-01T00:00:00Z"],
            "admin.unbind_before_bind",
        ),
        (["set-clinic", "--clinic-id", "c1", "--timezone", "Mars/Olympus"], "admin.unknown_timezone"),
        (["add-gateway", "--clinic-id", "c2", "--gateway-id", "gw1"], "admin.gateway_exists"),
    ):
        assert admin(clinic, *argv) == 2, argv
        assert f"({code})" in capsys.readouterr().err
    assert counts(clinic) == before
    assert [e.details["code"] for e in entries(clinic)[audited:]] == [
        "admin.meter_already_bound",
        "admin.unbind_before_bind",
        "admin.unknown_timezone",
        "admin.gateway_exists",
    ]


def test_a_one_time_code_replaces_a_password_on_the_command_line(
    clinic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """add-user --issue-code and reset-password print a code, never read or show a password."""
    assert admin(clinic, "add-user", "--clinic-id", "c1", "--user-id", "nurse", "--email", "n@example.org",
                 "--name", "N", "--role", "clinic_staff", "--issue-code") == 0  # fmt: skip
    assert "one-time code for nurse" in capsys.readouterr().out
    assert admin(clinic, "reset-password", "--user-id", "dr-a") == 0
    assert "one-time code for dr-a" in capsys.readouterr().out
    assert [e.action for e in entries(clinic)][-3:] == [
        "create_account",
        "issue_password_reset",
        "issue_password_reset",
    ]


@pytest.mark.mosquitto
def test_a_gateway_is_provisioned_on_the_dynamic_security_plugin(
    clinic: Path, deployed_broker: DeployedRig, tmp_path: Path
) -> None:
    """The settings file is private, logs the gateway in; deactivation refuses it at the broker; audited."""
    admin_config = deployed_broker.admin_config()
    broker = deployed_broker.broker
    clinic.write_text(
        clinic.read_text()
        + "\n[broker_accounts]\n"
        + f'host = "{admin_config.host}"\nport = {admin_config.port}\n'
        + f'tls_ca_file = "{admin_config.tls_ca_file}"\ntls_cert_file = "{admin_config.tls_cert_file}"\n'
        + f'tls_key_file = "{admin_config.tls_key_file}"\n'
        + f'gateway_host = "{broker.host}"\ngateway_port = {broker.gateway_port}\n'
        + f'gateway_ca_file = "{broker.server_tls.ca_file}"\n'
    )
    output = tmp_path / "gw-cli-1.toml"
    assert (
        admin(
            clinic,
            "provision-gateway",
            "--actor",
            "admin-1",
            "--gateway-id",
            "gw-cli-1",
            "--output",
            str(output),
        )
        == 0
    )
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    mqtt = tomllib.loads(output.read_text())["mqtt"]
    account = BrokerAccount(mqtt["username"], mqtt["password"])
    probe = deployed_broker.probe(account, "gateway", client_id="gw-cli-1")
    try:
        assert probe.connect()
    finally:
        probe.close()
    assert (
        admin(
            clinic,
            "provision-gateway",
            "--actor",
            "admin-1",
            "--gateway-id",
            "gw-cli-1",
            "--output",
            str(tmp_path / "again.toml"),
        )
        == 2
    )
    assert admin(clinic, "deactivate-gateway", "--actor", "admin-1", "--gateway-id", "gw-cli-1") == 0
    refused = deployed_broker.probe(account, "gateway", client_id="gw-cli-1")
    try:
        assert not refused.connect()
    finally:
        refused.close()
    actions = [(e.action, e.outcome) for e in entries(clinic) if e.object_id == "gw-cli-1"]
    assert actions == [
        ("provision_gateway", "allowed"),
        ("provision_gateway", "denied"),
        ("deactivate_gateway", "allowed"),
    ]

"""The clinic's deployment files say what they mean: deploy/compose.yaml runs two ingest and two API
replicas on PostgreSQL, InfluxDB and the broker, with settings vitalgate accepts; deploy/Dockerfile
copies what exists; the systemd units pass systemd's own check and start commands vitalgate parses.

Docker does not run on this machine: the compose file is checked by Debian's `docker-compose config`
(which parses and validates without a daemon) and read with PyYAML; no image is built or pulled.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vitalgate.cli import build_parser
from vitalgate.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
# What an operator puts in deploy/.env (deploy/compose/env.example lists the same names).
ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "INFLUXDB_USER": "vitalgate",
    "INFLUXDB_PASSWORD": "influx-secret",
    "JWT_SECRET": "j" * 48,
    "WEB_BASE_URL": "https://clinic.example",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}, from ENV."""

    def one(match: re.Match[str]) -> str:
        name, rest = match.group(1), match.group(2)
        if name in ENV:
            return ENV[name]
        assert rest is not None and ":?" not in match.group(0), f"{name} is required and not in ENV"
        return rest

    return _VARIABLE.sub(one, value)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _clinic_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("vitalgate-clinic")
    }


def test_compose_file_passes_docker_compose_config() -> None:
    """Debian's docker-compose parses and validates the file (anchors, variables, depends_on)."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        cwd=DEPLOY,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    env_example = (DEPLOY / "compose" / "env.example").read_text()
    assert all(f"{name}=" in env_example for name in ENV)  # every required variable is documented


def test_compose_runs_two_ingest_and_two_api_replicas_on_shared_stores() -> None:
    """Two ingest replicas (own client ids, one group) and two API replicas share the stores and the broker."""
    compose = _compose()
    services = compose["services"]
    clinic = _clinic_services(compose)
    ingest = {n: s for n, s in clinic.items() if s["command"][0] == "ingest"}
    api = {n: s for n, s in clinic.items() if s["command"][0] == "api"}
    assert len(ingest) == 2 and sum(s.get("deploy", {}).get("replicas", 1) for s in api.values()) == 2
    parser = build_parser()
    seen: dict[str, Any] = {}
    for name, service in clinic.items():
        env = {key: _interpolate(str(value)) for key, value in service["environment"].items()}
        old = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            settings = load_settings(None)  # every variable names a real setting with a valid value
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        args = parser.parse_args(service["command"])
        assert args.func is not None
        seen[name] = (settings, args)
        assert (
            settings.clinic_database_url.startswith("postgresql+psycopg://")
            and "@postgres:5432/" in settings.clinic_database_url
        )
        assert (
            settings.storage.reading_store == "influxdb"
            and settings.storage.influx_url == "http://influxdb:8086"
        )
        assert settings.mqtt.host == "broker" and settings.mqtt.port == 8884
        account = "vitalgate-ingest" if name in ingest else "vitalgate-clinic"
        assert str(settings.mqtt.tls_cert_file).endswith(f"/{account}.crt")
        assert set(service["depends_on"]) == {"broker", "postgres", "influxdb"}
    client_ids = {seen[n][0].ingest.client_id for n in ingest}
    assert len(client_ids) == 2
    assert {seen[n][0].ingest.shared_group for n in ingest} == {"ingest"}
    assert all(seen[n][1].no_ingest for n in api)
    for name in ("broker", "postgres", "influxdb", "proxy"):
        assert name in services
    assert services["broker"]["build"]["target"] == "broker"
    assert services["broker"]["ports"] == ["8883:8883"]  # gateways only; the clinic listener stays inside


def test_compose_files_and_the_proxy_point_at_what_exists() -> None:
    """Mounted files exist, the Dockerfile has the targets named, nginx reaches the API's port."""
    compose = _compose()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.MULTILINE))
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
            assert build["target"] in targets
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./compose/"):
                assert (DEPLOY / source).is_file(), source
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    [api] = [s for s in _clinic_services(compose).values() if s["command"][0] == "api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert f"server api:{port};" in nginx
    assert "proxy_buffering off" in nginx  # the live alert stream is not held back


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    """Every COPY source (outside other stages) exists, and the build context lets it in."""
    text = (DEPLOY / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _target = line.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


@pytest.mark.parametrize(
    ("unit", "instance"), [("vitalgate-ingest@.service", "1"), ("vitalgate-api@.service", "8000")]
)
def test_systemd_units_pass_systemd_analyze_and_start_valid_commands(
    tmp_path: Path, unit: str, instance: str
) -> None:
    """systemd-analyze verify finds nothing to say, and ExecStart is a command vitalgate parses."""
    text = (DEPLOY / "systemd" / unit).read_text()
    [exec_start] = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = exec_start.replace("%i", instance).split()
    assert argv[0] == "/opt/vitalgate/bin/vitalgate" and argv[1:3] == [
        "--config",
        "/etc/vitalgate/clinic.toml",
    ]
    args = build_parser().parse_args(argv[3:])
    if args.command == "ingest":
        assert (
            load_settings(None, ingest={"client_id": args.client_id}).ingest.client_id == "vitalgate-ingest-1"
        )
    else:
        assert args.no_ingest and args.port == int(instance)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    installed = shutil.which("vitalgate") or str(REPO / ".venv" / "bin" / "vitalgate")
    (tmp_path / unit).write_text(text.replace("/opt/vitalgate/bin/vitalgate", installed))
    (tmp_path / unit.replace("@.", f"@{instance}.")).symlink_to(tmp_path / unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / unit.replace("@.", f"@{instance}."))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr

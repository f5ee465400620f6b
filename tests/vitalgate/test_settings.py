"""One Settings object: a TOML file plus VITALGATE_* environment variables, environment winning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from vitalgate.settings import SettingsFileError, load_settings

TOML = """
data_dir = "/srv/vitalgate"
log_format = "json"

[mqtt]
host = "broker.clinic.internal"
port = 8883
username = "ingest"

[alerts]
profile = "cn"
"""


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vitalgate.toml"
    path.write_text(TOML, encoding="utf-8")
    monkeypatch.setenv("VITALGATE_MQTT__PORT", "18883")
    monkeypatch.setenv("VITALGATE_STORAGE__READING_STORE", "influxdb")
    settings = load_settings(path)
    assert settings.mqtt.host == "broker.clinic.internal"  # from the file
    assert settings.mqtt.port == 18883  # the environment wins over the file
    assert settings.storage.reading_store == "influxdb"
    assert settings.alerts.profile == "cn"
    assert settings.outbox_path == Path("/srv/vitalgate/gateway/outbox.sqlite3")
    assert settings.clinic_database_url == "sqlite:////srv/vitalgate/clinic.sqlite3"


def test_unknown_keys_and_bad_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[mqtt]\nhots = "x"\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="hots"):
        load_settings(path)
    path.write_text('[alerts]\nprofile = "uk"\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="profile"):
        load_settings(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsFileError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_cli_reports_bad_settings_in_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[mqtt]\nport = 70000\n", encoding="utf-8")
    vitalgate = Path(sys.executable).with_name("vitalgate")
    result = subprocess.run(
        [str(vitalgate), "--config", str(path), "schema"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("vitalgate: invalid settings:")
    assert "port" in result.stderr

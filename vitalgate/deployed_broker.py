"""The shipped Mosquitto configuration (deploy/mosquitto/: dynamic security plugin, TLS, client
certificates), run by a private mosquitto for the tests and the demo; `vitalgate.mosquitto` holds the
plain private broker and the certificate helpers this one uses."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vitalgate.mosquitto import (
    MOSQUITTO_BINARY,
    MOSQUITTO_PASSWD_BINARY,
    START_TIMEOUT_S,
    BrokerError,
    BrokerProcess,
    free_port,
    issue_certificate,
    make_ca,
    make_test_ca,
    wait_for_port,
)

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
CLINIC_ACCOUNTS = ("vitalgate-ingest", "vitalgate-clinic", "vitalgate-broker-admin")
SHIPPED_GATEWAY_PORT = 8883
SHIPPED_CLINIC_PORT = 8884
DYNSEC_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    cert_file: Path
    key_file: Path


class DeployedBroker(BrokerProcess):
    """deploy/mosquitto/vitalgate.conf and dynamic-security.json as shipped, run by a private mosquitto.

    Only paths (certificates, state, log, pid file, the plugin's library) and the two listener ports
    differ from a clinic's installation (docs/broker.md). The directory gets a server CA and
    certificate, the clinic's client CA and one client certificate per clinic account. Started as
    root, mosquitto drops to its own user before it reads its files, so the directory is handed to
    that user, as /etc/mosquitto and /var/lib/mosquitto are: it must lie where that user can reach it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        config_file: Path = DEPLOY_DIR / "vitalgate.conf",
        dynsec_file: Path = DEPLOY_DIR / "dynamic-security.json",
        gateway_passwords: dict[str, str] | None = None,
    ) -> None:
        """`gateway_passwords` fill the password file of the fallback without the plugin
        (deploy/mosquitto/without-plugin/), which takes new gateways only on a reload."""
        binary = shutil.which(MOSQUITTO_BINARY) or shutil.which(MOSQUITTO_BINARY, path="/usr/sbin")
        plugins = sorted(Path("/").glob(DYNSEC_PLUGIN_GLOB.lstrip("/")))
        if binary is None or not plugins:
            raise BrokerError(
                "mosquitto with its dynamic security plugin is not installed (Debian: mosquitto)"
            )
        self._binary = binary
        self.directory = directory
        self.host = host
        self.gateway_port = free_port(host)
        self.clinic_port = free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        data = directory / "data"
        data.mkdir(exist_ok=True)
        self.log_file = directory / "mosquitto.log"
        self.dynsec_state = data / "dynamic-security.json"
        shutil.copyfile(dynsec_file, self.dynsec_state)
        self.server_tls = make_test_ca(directory / "server-tls", host)
        self.clinic_ca = make_ca(directory / "clinic-ca", "clinic-clients-ca")
        self.clinic_certificates = {
            name: ClientCertificate(*issue_certificate(self.clinic_ca, directory / "clinic-ca", name))
            for name in CLINIC_ACCOUNTS
        }
        passwd = directory / "gateways.passwd"
        self._write_password_file(passwd, gateway_passwords or {})
        acl = directory / "vitalgate.acl"
        if (config_file.parent / "vitalgate.acl").exists():
            shutil.copyfile(config_file.parent / "vitalgate.acl", acl)
        paths = {
            "/run/mosquitto/mosquitto.pid": directory / "mosquitto.pid",
            "/etc/mosquitto/gateways.passwd": passwd,
            "/etc/mosquitto/vitalgate.acl": acl,
            "/var/log/mosquitto/mosquitto.log": self.log_file,
            DYNSEC_PLUGIN_GLOB.replace("*", "x86_64-linux-gnu"): plugins[0],
            "/var/lib/mosquitto/dynamic-security.json": self.dynsec_state,
            "/var/lib/mosquitto/": data,
            "/etc/mosquitto/certs/server.crt": self.server_tls.cert_file,
            "/etc/mosquitto/certs/server.key": self.server_tls.key_file,
            "/etc/mosquitto/certs/clinic-clients-ca.crt": self.clinic_ca.cert_file,
        }
        ports = {SHIPPED_GATEWAY_PORT: self.gateway_port, SHIPPED_CLINIC_PORT: self.clinic_port}
        self.config_file = directory / "mosquitto.conf"
        self.config_file.write_text(
            _substitute(config_file.read_text(encoding="utf-8"), paths, ports), encoding="utf-8"
        )
        if os.geteuid() == 0:
            owner = pwd.getpwnam("mosquitto")
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    @staticmethod
    def _write_password_file(path: Path, passwords: dict[str, str]) -> None:
        passwd = shutil.which(MOSQUITTO_PASSWD_BINARY)
        if passwd is None:
            raise BrokerError("mosquitto_passwd is not installed (Debian package: mosquitto)")
        path.write_text("", encoding="utf-8")
        os.chmod(path, 0o600)
        for username, password in passwords.items():
            subprocess.run(  # noqa: S603
                [passwd, "-b", str(path), username, password], check=True, capture_output=True, timeout=30
            )

    # -- what clients need ------------------------------------------------------------------------
    @property
    def gateway_ca_pem(self) -> str:
        return self.server_tls.ca_file.read_text(encoding="ascii")

    def clinic_certificate(self, account: str) -> ClientCertificate:
        return self.clinic_certificates[account]

    # -- process -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        stderr = (self.directory / "mosquitto.stderr").open("ab")
        self._process = subprocess.Popen(  # noqa: S603
            [self._binary, "-c", str(self.config_file)], stdout=subprocess.DEVNULL, stderr=stderr
        )
        stderr.close()
        try:
            wait_for_port(self.host, self.gateway_port, START_TIMEOUT_S, self._process)
            wait_for_port(self.host, self.clinic_port, START_TIMEOUT_S, self._process)
        except BrokerError as exc:
            raise BrokerError(f"{exc}; its log: {self.log_tail()}") from exc

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.directory / "mosquitto.stderr", self.log_file):
            with contextlib.suppress(OSError):
                text += path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _substitute(config: str, paths: dict[str, Path], ports: dict[int, int]) -> str:
    """The shipped config with its paths and listener ports replaced, and nothing else: a path or a
    listener this does not know is an error, so a change to the shipped file cannot go untested."""
    out = []
    for line in config.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            out.append(line)
            continue
        if words[0] == "listener":
            port = int(words[1])
            if port not in ports:
                raise BrokerError(f"the shipped config has a listener this rig does not know: {line}")
            out.append(" ".join(["listener", str(ports[port]), *words[2:]]))
            continue
        values = []
        for word in words[1:]:
            if word.startswith("/"):
                if word not in paths:
                    raise BrokerError(f"the shipped config has a path this rig does not know: {line}")
                value = str(paths[word])
                values.append(value + "/" if word.endswith("/") else value)
            else:
                values.append(word)
        out.append(" ".join([words[0], *values]))
    return "\n".join(out) + "\n"

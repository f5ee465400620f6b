"""Gateway commands: provisioning (the broker account and the installer's settings file), registering,
deactivation and reactivation, credential rotation, and publishing a gateway's config."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitalgate.commands.admin.runner import actor_command, fail, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storage.clinic.administration.common import Actor


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add the gateway commands, `provision-gateway` to `publish-config`."""
    p = command(
        "provision-gateway",
        "make a gateway's broker account (dynamic security) and write its settings file for the installer",
    )
    p.add_argument("--clinic-id")
    p.add_argument("--gateway-id", required=True)
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="new file for `vitalgate gateway run --config` ('-': stdout)",
    )
    p.set_defaults(
        func=actor_command(
            _provision_gateway, "provision_gateway", "gateway", "gateway_id", clinic_from_object=False
        )
    )

    p = command(
        "add-gateway",
        "register a gateway for a broker with a password file (no dynamic security); prints its password once",
    )
    p.add_argument("--clinic-id")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(
        func=actor_command(
            _add_gateway, "provision_gateway", "gateway", "gateway_id", clinic_from_object=False
        )
    )

    p = command("deactivate-gateway", "disable a gateway's broker account and mark it inactive")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=actor_command(_deactivate_gateway, "deactivate_gateway", "gateway", "gateway_id"))

    p = command("reactivate-gateway", "enable a deactivated gateway's broker account again")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=actor_command(_reactivate_gateway, "reactivate_gateway", "gateway", "gateway_id"))

    p = command(
        "rotate-gateway-credentials", "give a gateway a new broker password; write its new settings file"
    )
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--output", type=Path, required=True, help="new settings file ('-': stdout)")
    p.set_defaults(func=actor_command(_rotate_gateway, "rotate_gateway_credentials", "gateway", "gateway_id"))

    p = sub.add_parser("publish-config", help="publish a gateway's bindings on its retained config topic")
    p.add_argument("--gateway-id", required=True)
    p.set_defaults(func=_publish_config)


def _gateway_accounts(args: argparse.Namespace, *, required: bool) -> Any:
    """The broker's gateway accounts from `broker_accounts` settings; None when they are not set and
    not `required` (a broker with a password file)."""
    from vitalgate.administration import AdminError
    from vitalgate.broker_accounts import accounts_from_settings

    if args.settings.broker_accounts.gateway_host is None:
        if required:
            raise AdminError(
                "broker_accounts.gateway_host is not set: this needs the dynamic security plugin"
            )
        return None
    return accounts_from_settings(args.settings)


def _write_settings_file(output: Path, text: str) -> None:
    """A new file only the operator can read (it holds the gateway's password); never overwritten."""
    if str(output) == "-":
        sys.stdout.write(text)
        return
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _check_output(output: Path) -> None:
    from vitalgate.administration import AdminError

    if str(output) != "-" and output.exists():
        raise AdminError(f"{output} exists; the settings file is written to a new file only")


def _provision_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import provision_gateway

    _check_output(args.output)
    credentials = provision_gateway(sessions, actor, _gateway_accounts(args, required=True), args.gateway_id)
    _write_settings_file(args.output, credentials.settings_toml)
    if str(args.output) != "-":
        print(
            f"gateway {args.gateway_id} provisioned; its settings file (with its password) is {args.output}"
        )
    return 0


def _add_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    import secrets

    from storage.clinic.administration.gateways import register_gateway
    from vitalgate.administration import RESERVED_BROKER_USERNAMES

    password = secrets.token_urlsafe(24)
    in_transaction(
        sessions,
        lambda s: register_gateway(
            s, actor, gateway_id=args.gateway_id, mqtt_password=password, reserved=RESERVED_BROKER_USERNAMES
        ),
    )
    print(f"gateway {args.gateway_id} registered")
    print(f"MQTT username: {args.gateway_id}")
    print(f"MQTT password (shown once; add it to the broker with mosquitto_passwd): {password}")
    return 0


def _deactivate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import deactivate_gateway

    accounts = _gateway_accounts(args, required=False)
    deactivate_gateway(sessions, actor, accounts, args.gateway_id)
    print(f"gateway {args.gateway_id} deactivated")
    if accounts is None:
        print(
            "broker_accounts is not set: remove the gateway from the broker's password file", file=sys.stderr
        )
    return 0


def _reactivate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import reactivate_gateway

    reactivate_gateway(sessions, actor, _gateway_accounts(args, required=False), args.gateway_id)
    print(f"gateway {args.gateway_id} reactivated")
    return 0


def _rotate_gateway(args: argparse.Namespace, sessions: sessionmaker[Session], actor: Actor) -> int:
    from vitalgate.administration import rotate_gateway_credentials

    _check_output(args.output)
    credentials = rotate_gateway_credentials(
        sessions, actor, _gateway_accounts(args, required=True), args.gateway_id
    )
    _write_settings_file(args.output, credentials.settings_toml)
    if str(args.output) != "-":
        print(f"gateway {args.gateway_id}: new password; its new settings file is {args.output}")
    return 0


def _publish_config(args: argparse.Namespace) -> int:
    from vitalgate.administration import ClinicMqttAccount, GatewayConfigSender
    from vitalgate.wiring import open_clinic_database

    account = ClinicMqttAccount.from_settings(args.settings)
    if account is None:
        return fail(
            "a clinic broker account is needed: mqtt.username and mqtt.password, or mqtt.tls_cert_file"
        )
    with open_clinic_database(args.settings) as database:
        config = GatewayConfigSender(account, database.sessions).send(args.gateway_id)
    print(f"config with {len(config.bindings)} binding(s) published for gateway {args.gateway_id}")
    return 0

"""`vitalgate admin`: clinic administration from a shell, for scripts: the clinic's settings,
accounts, patients, gateways (on the broker's dynamic security accounts), meters and bindings; the
gateways' configurations; the audit trail (`vitalgate admin audit`).

Every change is written with its audit entry in one transaction (storage.clinic.administration), as
from the web app. The entry's actor is the operator's own administrator account, given with
`--actor USER_ID` (which then acts in that account's clinic only), or else "cli:<os user>". A refused
change prints its code (`admin.meter_already_bound`, ...), changes nothing, is recorded as denied,
and exits 2; a broker that does not answer exits 3.

Passwords are read from standard input (never from the command line, where `ps` would show them).
Commands that list records print one JSON object a line.
"""

from __future__ import annotations

import argparse

from vitalgate.commands.admin import accounts, clinic, gateways, listings, meters, patients, stores


def _actor_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--actor",
        metavar="USER_ID",
        help="your clinic administrator account, as the audit log records you (default: cli:<os user>)",
    )
    return common


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="clinic administration: settings, accounts, patients, gateways, meters",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    actor = _actor_options()

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[actor])

    # In help order.
    for subject in (stores, clinic, accounts, patients, gateways, meters, listings):
        subject.add_commands(sub, command)

"""The BlueZ agent's D-Bus surface (no BlueZ here: signatures and the one-device rule only)."""

from __future__ import annotations

import pytest
from dbus_fast import DBusError
from dbus_fast.service import ServiceInterface

from gateway.bluez_agent import PairingAgent, address_of


async def _passkey(_address: str) -> int | None:
    return 123456


async def _confirm(_address: str, _passkey: int) -> bool:
    return True


def test_methods_have_the_signatures_bluez_calls() -> None:
    # BlueZ doc/org.bluez.Agent.rst: a wrong signature makes BlueZ's call fail at runtime.
    agent = PairingAgent("AA:BB:CC:DD:EE:FF", _passkey, _confirm)
    methods = {m.name: (m.in_signature, m.out_signature) for m in ServiceInterface._get_methods(agent)}
    assert methods == {
        "Release": ("", ""),
        "RequestPinCode": ("o", "s"),
        "DisplayPinCode": ("os", ""),
        "RequestPasskey": ("o", "u"),
        "DisplayPasskey": ("ouq", ""),
        "RequestConfirmation": ("ou", ""),
        "RequestAuthorization": ("o", ""),
        "AuthorizeService": ("os", ""),
        "Cancel": ("", ""),
    }


def test_only_the_meter_being_paired_is_answered() -> None:
    agent = PairingAgent("AA:BB:CC:DD:EE:FF", _passkey, _confirm)
    assert address_of("/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF") == "AA:BB:CC:DD:EE:FF"
    agent._only_ours("/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF")
    with pytest.raises(DBusError):
        agent._only_ours("/org/bluez/hci0/dev_11_22_33_44_55_66")

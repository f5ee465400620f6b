"""The security level of a meter's bond: recorded when the meter is paired, checked at every session.

A bond has three properties that set how well it protects the link (Core Vol 3, Part H, 2.3.1 and
2.3.4): whether it is authenticated, i.e. made with MITM protection (passkey entry, numeric
comparison, OOB) rather than Just Works; whether it is an LE Secure Connections (P-256) key or a
legacy one; and the encryption key size (7 to 16 octets).

A meter enrolled with a passkey whose address later holds a Just Works bond (an impostor that got
itself paired, or a meter that lost its bond and was paired again without a person) encrypts the
link with that new bond, so the encryption checks in :mod:`gateway.meters` pass. The gateway
compares the link's bond with the level recorded at pairing and refuses a lower one
(:class:`gateway.session_failures.DowngradedBondError`) before any measurement is read; only
``vitalgate gateway pair`` records a new level.

Where the level is read:

- the virtual radio: the bumble connection's peer keys in the central's key store (bumble
  ``PairingKeys``: an SC pairing stores ``ltk``, a legacy one ``ltk_central``/``ltk_peripheral``;
  each key's ``authenticated`` is false for Just Works, bumble/smp.py ``on_pairing``); key size from
  the encryption change event when the controller reports it (HCI Encryption Change v2);
- BlueZ: the bond's ``info`` file (``/var/lib/bluetooth/ADAPTER/DEVICE/info``, section
  ``[LongTermKey]``: ``Authenticated`` is the mgmt LTK type, 0 unauthenticated, 1 authenticated,
  2 P-256 unauthenticated, 3 P-256 authenticated, 4 P-256 debug; ``EncSize``; BlueZ
  src/adapter.c ``store_ltk_group``). The kernel's link mode cannot tell: it sets ``HCI_LM_AUTH``
  on any encrypted link ("Encryption implies authentication", net/bluetooth/hci_event.c
  ``hci_encrypt_change_evt``). The directory is readable by root only, so a gateway running under
  its own account reads no level there and checks nothing (docs/gateway.md).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BLUEZ_STORAGE_DIR = Path("/var/lib/bluetooth")
#: mgmt LTK types (BlueZ lib/mgmt.h MGMT_LTK_*), as stored in the info file's ``Authenticated``.
LTK_AUTHENTICATED_TYPES = {1, 3}
LTK_P256_TYPES = {2, 3, 4}


class BondSecurity(BaseModel):
    """How a bond protects the link (Core Vol 3, Part H, 2.3.1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Made with MITM protection (passkey entry, numeric comparison, OOB); false for Just Works.
    authenticated: bool
    #: An LE Secure Connections (P-256) key; false for legacy pairing; None where not known.
    secure_connections: bool | None = None
    #: Encryption key size in octets; None where not known.
    key_size: int | None = Field(default=None, ge=7, le=16)

    def shortfalls(self, current: BondSecurity) -> list[str]:
        """What ``current`` lacks against this (enrolled) level; empty when it is as strong.
        A property not known on either side is not compared."""
        lacking = []
        if self.authenticated and not current.authenticated:
            lacking.append("not authenticated (Just Works)")
        if self.secure_connections and current.secure_connections is False:
            lacking.append("legacy pairing, not Secure Connections")
        if self.key_size is not None and current.key_size is not None and current.key_size < self.key_size:
            lacking.append(f"key size {current.key_size} < {self.key_size}")
        return lacking

    def describe(self) -> str:
        parts = [
            "authenticated" if self.authenticated else "unauthenticated",
            {True: "secure connections", False: "legacy", None: "pairing kind unknown"}[
                self.secure_connections
            ],
        ]
        if self.key_size is not None:
            parts.append(f"key size {self.key_size}")
        return ", ".join(parts)


async def virtual_bond_security(client: Any) -> BondSecurity | None:
    """The bond on a virtual-radio link (bleak client over device_drivers.virtual), or None where
    the client is another backend or the link holds no bond."""
    backend = getattr(client, "_backend", None)
    connection = getattr(backend, "connection", None)
    device = getattr(connection, "device", None)
    keystore = getattr(device, "keystore", None)
    if connection is None or keystore is None or not connection.is_encrypted:
        return None
    keys = await keystore.get(str(connection.peer_address))
    if keys is None:
        return None
    if keys.ltk is not None:
        key, secure_connections = keys.ltk, True
    else:
        key = keys.ltk_central or keys.ltk_peripheral
        secure_connections = False
    if key is None:
        return None
    size = int(connection.encryption_key_size or 0)
    return BondSecurity(
        authenticated=bool(key.authenticated),
        secure_connections=secure_connections,
        key_size=size if 7 <= size <= 16 else None,
    )


def bluez_bond_security(
    adapter_address: str, device_address: str, storage_dir: Path = BLUEZ_STORAGE_DIR
) -> BondSecurity | None:
    """The bond BlueZ stored for ``device_address``, from its info file; None when there is no
    long-term key there or the file cannot be read (root only by default).

    BlueZ keeps an adapter with a static random address under ``static-ADDRESS``
    (src/adapter.c ``btd_adapter_get_storage_dir``), and the key the gateway encrypts with as central
    under ``LongTermKey`` (older files: a peripheral's under ``SlaveLongTermKey``, newer
    ``PeripheralLongTermKey``).
    """
    adapter = adapter_address.upper()
    parser = configparser.ConfigParser(interpolation=None)
    for adapter_dir in (adapter, f"static-{adapter}"):
        path = storage_dir / adapter_dir / device_address.upper() / "info"
        try:
            parser.read_string(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, configparser.Error):
            continue
        break
    group = next(
        (g for g in ("LongTermKey", "PeripheralLongTermKey", "SlaveLongTermKey") if parser.has_section(g)),
        None,
    )
    if group is None:
        return None
    try:
        kind = int(parser[group].get("Authenticated", ""))
        size = int(parser[group].get("EncSize", "0"))
    except ValueError:
        return None
    return BondSecurity(
        authenticated=kind in LTK_AUTHENTICATED_TYPES,
        secure_connections=kind in LTK_P256_TYPES,
        key_size=size if 7 <= size <= 16 else None,
    )

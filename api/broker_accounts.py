"""Gateway accounts on the MQTT broker, as the API sees them: an interface, its result and its errors.

The API provisions, disables and rotates a gateway's broker account without knowing which broker
mechanism serves it; the composition root (`vitalgate/`) hands it an implementation (for Mosquitto's
dynamic security plugin: `vitalgate.broker_accounts.DynsecGatewayAccounts`). Every account a gateway
gets is confined to its own topics and bound to the client id of its gateway id (DESIGN.md, MQTT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """What a gateway needs to log in, once: the password is not kept anywhere else in the clinic.

    `settings_toml` is the file the installer gives the gateway (`vitalgate --config FILE gateway
    run`): broker address and CA certificate, username, password and client id, gateway id.
    """

    gateway_id: str
    username: str
    client_id: str
    password: str = field(repr=False)
    settings_toml: str = field(repr=False)


class BrokerAccountsError(Exception):
    """A broker account operation did not happen as asked. Messages carry gateway ids, never secrets."""


class BrokerUnavailableError(BrokerAccountsError):
    """The broker could not be reached or did not answer in time; whether the change was made is
    unknown, so the caller may look again (a retried provisioning answers AlreadyProvisioned if the
    first one went through, and `rotate_password` then issues a fresh credential)."""


class BrokerAccountsDeniedError(BrokerAccountsError):
    """The broker refused the clinic's administration account (its certificate, or its rights)."""


class InvalidGatewayIdError(BrokerAccountsError, ValueError):
    """Not a gateway id: wrong characters or length, or a name reserved for clinic accounts."""


class GatewayAlreadyProvisionedError(BrokerAccountsError):
    """The gateway id already has a broker account; nothing was changed."""


class GatewayNotProvisionedError(BrokerAccountsError):
    """The gateway id has no broker account."""


class BrokerCommandError(BrokerAccountsError):
    """The broker answered a command with an error this interface has no name for."""


class GatewayAccounts(Protocol):
    """Broker accounts of gateways, changed at run time: no restart, no reload.

    Each method raises a subclass of :class:`BrokerAccountsError` when it cannot do what it says.
    """

    async def provision_gateway(self, gateway_id: str) -> GatewayCredentials:
        """Create the gateway's account: a random password, the client id fixed to the gateway id,
        rights to its own topics only. Raises GatewayAlreadyProvisionedError, changing nothing, if the
        account exists."""
        ...

    async def disable_gateway(self, gateway_id: str) -> None:
        """Refuse the gateway's logins from now on and disconnect it if it is connected."""
        ...

    async def enable_gateway(self, gateway_id: str) -> None:
        """Accept the gateway's logins again (with its current password)."""
        ...

    async def rotate_password(self, gateway_id: str) -> GatewayCredentials:
        """Give the gateway a new random password; the old one stops working at once and a connected
        gateway is disconnected."""
        ...

    async def delete_gateway(self, gateway_id: str) -> None:
        """Remove the gateway's account and its rights; a connected gateway is disconnected."""
        ...

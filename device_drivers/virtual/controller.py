"""bumble's emulated controller, with LE Create Connection Cancel that really cancels.

bumble 0.0.236's ``Controller.on_hci_le_create_connection_cancel_command`` answers success but
keeps the pending connection and never sends the LE Connection Complete the host waits for, so a
connection attempt to a meter that is not advertising hangs the central for good. A real
controller ends the attempt with an LE Connection Complete event whose status is "Unknown
Connection Identifier" (Core Specification Vol 4, Part E, 7.8.13). This subclass does that; every
controller on a virtual link (central, meters, served controllers) is one.
"""

from __future__ import annotations

import asyncio
import logging

from bumble import hci
from bumble.controller import Controller

#: How long a virtual meter or central, switching off, waits for each HCI step: a peer already gone
#: never answers (VirtualMeter.stop, VirtualCentral.close).
STOP_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)

#: Connection Complete fields that carry no meaning on a failed attempt.
NO_CONNECTION_HANDLE = 0x0000


class VirtualController(Controller):
    """bumble ``Controller`` whose LE connection attempts can be cancelled."""

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        failure = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=NO_CONNECTION_HANDLE,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # After the Command Complete this method's return value produces.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, failure)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def on_hci_disconnect_command(self, command: hci.HCI_Disconnect_Command) -> None:
        logger.debug(
            "host of %s asks to disconnect handle %s (reason %s); LE links: %s",
            self.name,
            command.connection_handle,
            command.reason,
            {str(address): c.handle for address, c in self.le_connections.items()},
        )
        super().on_hci_disconnect_command(command)

"""bumble's emulated controller, with the three LE connection behaviours hosts rely on.

* LE Create Connection Cancel that really cancels. bumble 0.0.236's
  ``Controller.on_hci_le_create_connection_cancel_command`` answers success but keeps the pending
  connection and never sends the LE Connection Complete the host waits for, so a connection attempt
  to a meter that is not advertising hangs the central for good. A real controller ends the
  attempt with an LE Connection Complete event whose status is "Unknown Connection Identifier"
  (Core Specification Vol 4, Part E, 7.8.13).
* The connection event the host asked for. bumble 0.0.236 records the host's LE event mask
  (``on_hci_le_set_event_mask_command``) but always reports a new or failed LE connection with LE
  Connection Complete (``create_le_connection``, ``on_ll_connect_ind``). The specification says
  that when the host has unmasked LE Enhanced Connection Complete, only that event is sent
  (Vol 4, Part E, 7.7.65.10). Linux unmasks it on a controller with LL Privacy or Extended
  Advertising, as bumble's is, and its ``hci_le_create_conn_sync`` (net/bluetooth/hci_sync.c)
  waits for that event: given the other one it brings the link up but keeps the connect request
  pending until its timeout, then sends LE Create Connection Cancel for a connection that exists
  (``Opcode 0x200e failed: -16`` in the kernel log), and the kernel and BlueZ lose track of the
  link: BlueZ reports it disconnected, the kernel keeps it, and no HCI Disconnect ever reaches the
  meter, which therefore never advertises again.
* A Reset that ends every LE link (:meth:`VirtualController.on_hci_reset_command`).

Every controller on a virtual link (central, meters, the controller served to Linux over
/dev/vhci) is one of these, on a :class:`VirtualLink`: bumble's ``LocalLink.send_acl_data`` labels
LE data with the sending controller's current random address, which is the connection's own
address only for a controller that connects from its random address and never changes it. Linux
connects from the adapter's public address where it has one, and changes the random address for
each active scan, so the peer would drop every packet of the connection as coming from no
connection it has. The link labels each packet with the address the connection was made from, as
the air does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bumble import core, hci, ll
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.link import LocalLink

#: How long a virtual meter or central, switching off, waits for each HCI step: a peer already gone
#: never answers (VirtualMeter.stop, VirtualCentral.close).
STOP_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)

#: Connection Complete fields that carry no meaning on a failed attempt.
NO_CONNECTION_HANDLE = 0x0000
#: The LE event mask bit of LE Enhanced Connection Complete (bit n-1 for subevent code n, Vol 4,
#: Part E, 7.8.1).
LE_ENHANCED_CONNECTION_COMPLETE_MASK = 1 << (hci.HCI_LE_ENHANCED_CONNECTION_COMPLETE_EVENT - 1)


def enhanced_connection_complete(
    event: hci.HCI_LE_Connection_Complete_Event,
) -> hci.HCI_LE_Enhanced_Connection_Complete_Event:
    """The same connection outcome as LE Enhanced Connection Complete; no resolvable private
    addresses are in use on the virtual link, which the event says with all-zero addresses."""
    return hci.HCI_LE_Enhanced_Connection_Complete_Event(
        status=event.status,
        connection_handle=event.connection_handle,
        role=event.role,
        peer_address_type=event.peer_address_type,
        peer_address=event.peer_address,
        local_resolvable_private_address=hci.Address.ANY_RANDOM,
        peer_resolvable_private_address=hci.Address.ANY_RANDOM,
        connection_interval=event.connection_interval,
        peripheral_latency=event.peripheral_latency,
        supervision_timeout=event.supervision_timeout,
        central_clock_accuracy=event.central_clock_accuracy,
    )


class VirtualController(Controller):
    """bumble ``Controller`` whose LE connection attempts can be cancelled and whose connection
    events follow the host's LE event mask."""

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if (
            isinstance(packet, hci.HCI_LE_Connection_Complete_Event)
            and self.le_event_mask & LE_ENHANCED_CONNECTION_COMPLETE_MASK
        ):
            packet = enhanced_connection_complete(packet)
        super().send_hci_packet(packet)

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

    def on_hci_reset_command(self, command: hci.HCI_Reset_Command) -> hci.HCI_StatusReturnParameters:
        """Reset returns the link layer to standby (Vol 4, Part E, 7.3.2): no LE link and no
        connection attempt survive it. bumble 0.0.236 keeps them, so a host restarted after a crash
        (kill -9 of the gateway) inherits the link its predecessor left open, which keeps the meter
        from advertising for good. A real peer hears nothing more on the link and reports a
        supervision timeout (Vol 6, Part B, 4.5.2); the virtual air delivers that at once. The
        resetting host is told nothing: its stack starts from an empty state."""
        self.pending_le_connection = None
        for connection in list(self.le_connections.values()):
            with contextlib.suppress(core.InvalidArgumentError):  # the peer is off the air already
                connection.send_ll_control_pdu(ll.TerminateInd(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR))
            del self.le_connections[connection.peer_address]
        return super().on_hci_reset_command(command)

    def on_hci_disconnect_command(self, command: hci.HCI_Disconnect_Command) -> None:
        logger.debug(
            "host of %s asks to disconnect handle %s (reason %s); LE links: %s",
            self.name,
            command.connection_handle,
            command.reason,
            {str(address): c.handle for address, c in self.le_connections.items()},
        )
        super().on_hci_disconnect_command(command)


class VirtualLink(LocalLink):
    """bumble ``LocalLink`` that labels LE data with the connection's own address."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        connection = (
            sender_controller.le_connections.get(destination_address)
            if transport == PhysicalTransport.LE
            else None
        )
        receiver = None if connection is None else self.find_le_controller(destination_address)
        if connection is None or receiver is None:
            super().send_acl_data(sender_controller, destination_address, transport, data)
            return
        source = connection.self_address
        asyncio.get_running_loop().call_soon(receiver.on_link_acl_data, source, transport, data)

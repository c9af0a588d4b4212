"""INFORMATIONAL (RFC 7296 1.4): Delete of the IKE SA or of Child SAs, and liveness checks.

Requests always get a response, even an empty one (1.4: an empty INFORMATIONAL request is a
liveness check).  A Delete of the IKE SA closes it on both sides; a Delete of our Child SA's
peer SPI is answered with our own SPI (1.4.1) and reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ...packets.enums import ExchangeType, ProtocolId
from ...packets.message import Message
from ...packets.payloads import DeletePayload, Payload
from ..events import ChildSaDeleted, IkeSaDeleted
from ..state import IkeState, Trigger

if TYPE_CHECKING:
    from ..connection import IkeConnection


def send_delete(conn: IkeConnection, now: float) -> None:
    """The Delete of the IKE SA; the state moves to DELETING when it goes out (after any request in flight)."""
    conn.send_request(ExchangeType.INFORMATIONAL, [DeletePayload(ProtocolId.IKE)], now, trigger=Trigger.SEND_DELETE)


def send_liveness(conn: IkeConnection, now: float) -> None:
    """An empty INFORMATIONAL request (dead peer detection); the answer needs no handling."""
    conn.send_request(ExchangeType.INFORMATIONAL, [], now)


def on_request(conn: IkeConnection, msg: Message, now: float) -> None:
    if conn.state not in (IkeState.ESTABLISHED, IkeState.DELETING):
        raise LocalProtocolError(f"an INFORMATIONAL request before the IKE SA is established ({conn.state})")
    deletes = [p for p in msg.all_payloads() if isinstance(p, DeletePayload)]
    answer: list[Payload] = []
    if any(d.protocol == ProtocolId.IKE for d in deletes):
        conn.send_response(ExchangeType.INFORMATIONAL, [], msg.message_id)
        conn.step(Trigger.RECV_DELETE)
        conn.emit(IkeSaDeleted(by_peer=True))
        return
    child = conn.neg.child
    for d in deletes:
        if child is None or d.protocol != child.protocol:
            continue
        if child.spi_out.to_bytes(4, "big") in d.spis:
            answer.append(DeletePayload(child.protocol, [child.spi_in.to_bytes(4, "big")]))
            conn.emit(ChildSaDeleted(child.spi_in, child.spi_out, by_peer=True))
            conn.neg.child = None
    conn.send_response(ExchangeType.INFORMATIONAL, answer, msg.message_id)


def on_response(conn: IkeConnection, msg: Message, now: float) -> None:
    if conn.state == IkeState.DELETING:
        conn.step(Trigger.DELETE_ANSWERED)
        conn.emit(IkeSaDeleted(by_peer=False))

"""INFORMATIONAL (RFC 7296 1.4): Delete of an IKE SA or of Child SAs, and liveness checks.

Requests always get a response, even an empty one (1.4: an empty INFORMATIONAL request is a liveness check).
A Delete of the current IKE SA closes the connection on both sides; a Delete of an old IKE SA after a rekey
(2.18) only retires that SA.  A Delete of Child SAs names the SPIs the sender receives on; the answer names
ours (1.4.1), except for pairs we are deleting ourselves at the same time, which are deleted without being
named again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...packets.enums import ExchangeType, ProtocolId
from ...packets.message import Message
from ...packets.payloads import DeletePayload, Payload
from ..child import LIVE, ChildSa, ChildState, ChildTrigger
from ..events import ChildSaDeleted, ChildSaOutbound, IkeSaDeleted, OldIkeSaDeleted
from ..sa import IkeSa
from ..state import IkeState, Trigger

if TYPE_CHECKING:
    from ..connection import IkeConnection


@dataclass(frozen=True, slots=True)
class ChildDelete:
    """Our Delete of Child SAs in flight: the pairs its answer finishes."""

    children: tuple[ChildSa, ...]


def send_delete(conn: IkeConnection, sa: IkeSa, now: float) -> None:
    """The Delete of ``sa``; its state moves to DELETING when it goes out (after any request in flight)."""
    conn.send_request(ExchangeType.INFORMATIONAL, [DeletePayload(ProtocolId.IKE)], now, trigger=Trigger.SEND_DELETE,
                      sa=sa)


def send_liveness(conn: IkeConnection, now: float) -> None:
    """An empty INFORMATIONAL request (dead peer detection); the answer needs no handling."""
    conn.send_request(ExchangeType.INFORMATIONAL, [], now)


def send_child_delete(conn: IkeConnection, children: list[ChildSa], now: float) -> None:
    """One Delete payload per protocol naming our inbound SPIs; the pairs are DELETING until answered."""
    for c in children:
        c.step(ChildTrigger.SEND_DELETE)
    payloads: list[Payload] = []
    for proto in sorted({c.protocol for c in children}):
        payloads.append(DeletePayload(proto, [c.spi_in for c in children if c.protocol == proto]))
    conn.send_request(ExchangeType.INFORMATIONAL, payloads, now, context=ChildDelete(tuple(children)))


def _forget(conn: IkeConnection, child: ChildSa, *, by_peer: bool) -> None:
    conn.children.pop(child.key, None)
    _hand_over(conn, child)
    conn.emit(ChildSaDeleted(child.key, int.from_bytes(child.spi_out, "big"), by_peer=by_peer))


def _hand_over(conn: IkeConnection, old: ChildSa) -> None:
    """The pair that replaces ``old`` takes our outbound traffic now that ``old`` is gone, unless one of its
    successors already does (the surviving pair of a collision we started) or none is live (2.8, 2.8.1)."""
    successors = [c for c in conn.children.values()
                  if c.state in LIVE and c.sa is not None and c.sa.rekeyed == old.key]
    if not successors or any(c.outbound for c in successors):
        return
    new = successors[0]
    new.outbound = True
    conn.emit(ChildSaOutbound(new.key, int.from_bytes(new.spi_out, "big"), old.key))


def on_request(conn: IkeConnection, sa: IkeSa, msg: Message, now: float) -> None:
    deletes = [p for p in msg.all_payloads() if isinstance(p, DeletePayload)]
    if any(d.protocol == ProtocolId.IKE for d in deletes):
        conn.send_response(ExchangeType.INFORMATIONAL, [], msg.message_id, sa=sa)
        sa.step(Trigger.RECV_DELETE)
        if sa is conn.ike:
            conn.emit(IkeSaDeleted(by_peer=True))
        else:  # an old IKE SA after a rekey: the connection goes on under the new one
            conn.retired.remove(sa)
            conn.emit(OldIkeSaDeleted(sa.spi_i, sa.spi_r, by_peer=True))
        return
    answer: list[Payload] = []
    by_peer_spi = {(c.protocol, c.spi_out): c for c in conn.children.values()}
    for d in deletes:
        ours: list[bytes] = []
        for spi in d.spis:
            child = by_peer_spi.get((d.protocol, spi))
            if child is None or child.state == ChildState.DELETED:
                continue
            if child.state != ChildState.DELETING:  # 1.4.1: crossed Deletes are not named again
                ours.append(child.spi_in)
            child.step(ChildTrigger.RECV_DELETE)
            _forget(conn, child, by_peer=True)
        if ours:
            answer.append(DeletePayload(d.protocol, ours))
    conn.send_response(ExchangeType.INFORMATIONAL, answer, msg.message_id, sa=sa)


def on_response(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, ctx: Any) -> None:
    if sa.state == IkeState.DELETING:
        sa.step(Trigger.DELETE_ANSWERED)
        if sa is conn.ike:
            conn.emit(IkeSaDeleted(by_peer=False))
        elif sa in conn.retired:
            conn.retired.remove(sa)
            conn.emit(OldIkeSaDeleted(sa.spi_i, sa.spi_r, by_peer=False))
    elif isinstance(ctx, ChildDelete):
        for child in ctx.children:
            if child.state == ChildState.DELETING:
                child.step(ChildTrigger.DELETE_ANSWERED)
                _forget(conn, child, by_peer=False)

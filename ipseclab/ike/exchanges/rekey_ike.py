"""CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 1.3.2, 2.18): new SPIs, a new key exchange, new keys.

Request ``SA (an IKE proposal carrying the new initiator SPI), Ni, KEi``; response the same with the new
responder SPI.  The new IKE SA's keys come from SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old
IKE SA's PRF, split by the new suite's prf+ over Ni | Nr | SPIi | SPIr (2.18, 2.14).  Whoever started the rekey
is the new IKE SA's original initiator (its I flag).  The Child SAs belong to the connection and so move over
by being left alone; requests still waiting for the old IKE SA's window move to the new one; the initiator of
the rekey then deletes the old IKE SA.

Simultaneous IKE rekeys (2.8.2): a side whose own IKE rekey is in flight answers the peer's as usual but
does not switch yet; when its own answer comes, the new IKE SA of the exchange with the lowest of the four
nonces is redundant and deleted by the side that started that exchange, and the other side (the winner)
deletes the old IKE SA.  A request to rekey the IKE SA while a Child SA exchange of ours is in flight gets
TEMPORARY_FAILURE (2.25).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...crypto import KeyExchange, get_ke_group
from ...crypto.keys import IkeSaKeys, IkeSuite, ike_sa_keys, rekey_skeyseed
from ...errors import LocalProtocolError, RemoteProtocolError
from ...packets.enums import ExchangeType, NotifyType, ProtocolId, enum_name
from ...packets.message import IkeSaCrypto, Message
from ...packets.payloads import KePayload, NoncePayload, NotifyPayload, Payload, SaPayload
from ..events import IkeSaRekeyed, IkeSaRekeyFailed
from ..negotiate import check_choice, choose, group_asked_for, ike_suite, offer, offered_groups
from ..sa import IkeSa
from ..state import IkeState, Trigger
from . import informational
from .ike_auth import established_event
from .ike_sa_init import NONCE_RANGE, NONCE_SIZE

if TYPE_CHECKING:
    from ..connection import IkeConnection

_GROUP = struct.Struct("!H")


@dataclass(slots=True)
class Pending:
    """Our IKE rekey request in flight."""

    spi_i: bytes
    offer: SaPayload
    group: int
    nonce: bytes = b""
    ke: KeyExchange | None = None
    tried: list[int] = field(default_factory=list)
    collision: tuple[bytes, bytes, IkeSa] | None = None  # the peer's rekey at the same time: Ni, Nr, its new SA


def is_ike_rekey(msg: Message) -> bool:
    """A CREATE_CHILD_SA request whose SA payload proposes IKE (not ESP/AH)."""
    sa = next((p for p in msg.all_payloads() if isinstance(p, SaPayload)), None)
    return sa is not None and any(p.protocol == ProtocolId.IKE for p in sa.proposals)


def start(conn: IkeConnection, now: float) -> None:
    """Queue our rekey request; the KE group is the current IKE SA's if we still offer it (no retry needed)."""
    conn.require_window_room()
    spi = conn.rng(8)
    the_offer = offer(conn.config.ike_proposals, "ike", spi)
    groups = offered_groups(the_offer)
    current = conn.neg.suite.ke.id if conn.neg.suite is not None and conn.neg.suite.ke is not None else 0
    _send(conn, Pending(spi, the_offer, current if current in groups else groups[0]), now)


def _send(conn: IkeConnection, p: Pending, now: float) -> None:
    p.nonce = conn.rng(NONCE_SIZE)
    p.ke = get_ke_group(p.group).generate()
    p.tried.append(p.group)
    payloads: list[Payload] = [p.offer, NoncePayload(p.nonce), KePayload(p.group, p.ke.public_bytes)]
    conn.send_request(ExchangeType.CREATE_CHILD_SA, payloads, now, context=p)


def _new_sa(conn: IkeConnection, old: IkeSa, suite: IkeSuite, g_ir: bytes, nonce_i: bytes, nonce_r: bytes,
            spi_i: bytes, spi_r: bytes, *, initiator: bool) -> IkeSa:
    """The new IKE SA's keys (2.18) with the old SA's PRF and SK_d; nothing is changed yet."""
    if old.neg.suite is None or old.neg.keys is None:
        raise LocalProtocolError("an IKE rekey of an IKE SA without keys")
    seed = rekey_skeyseed(old.neg.suite.prf, old.neg.keys.sk_d, nonce_i, nonce_r, g_ir)
    keys: IkeSaKeys = ike_sa_keys(suite, seed, nonce_i, nonce_r, spi_i, spi_r)
    new = IkeSa(initiator, conn.budget, spi_i, spi_r)
    n, o = new.neg, old.neg
    n.suite, n.keys, n.crypto = suite, keys, IkeSaCrypto.from_keys(suite, keys)
    n.nonce_i, n.nonce_r, n.ke_group = nonce_i, nonce_r, suite.ke.id if suite.ke is not None else 0
    n.peer_fragmentation, n.nat_local, n.nat_remote = o.peer_fragmentation, o.nat_local, o.nat_remote
    return new


def _switch(conn: IkeConnection, old: IkeSa, new: IkeSa, now: float, *, by_peer: bool) -> None:
    """The new IKE SA takes over: state, waiting requests, lifetimes; the old one waits for its Delete."""
    if new.state == IkeState.INITIAL:
        new.step(Trigger.REKEY_CREATED)
    if new in conn.retired:
        conn.retired.remove(new)
    old.step(Trigger.REKEYED)
    new.requests.extend(old.requests)
    old.requests.clear()
    conn.ike = new
    conn.retired.append(old)
    from .. import lifecycle

    lifecycle.schedule_ike(conn, now)
    conn.emit(established_event(conn))
    conn.emit(IkeSaRekeyed(old.spi_i, old.spi_r, new.spi_i, new.spi_r, by_peer))
    conn.announce_window(new, now)  # RFC 7296 2.3: the new IKE SA starts with window size 1
    conn.send_next(new, now)


class Refused(RemoteProtocolError):
    def __init__(self, message: str, notify: int, data: bytes = b"") -> None:
        super().__init__(message, notify)
        self.data = data


def on_request(conn: IkeConnection, sa: IkeSa, msg: Message, now: float) -> None:
    """The responder: check the whole request, answer on the old IKE SA, then switch; or refuse with one notify."""
    inner = msg.all_payloads()
    try:
        new, payloads = _check_request(conn, sa, inner)
    except Refused as exc:
        conn.notify_only_response(ExchangeType.CREATE_CHILD_SA, msg.message_id, exc.notify, exc.data, sa=sa)
        return
    conn.send_response(ExchangeType.CREATE_CHILD_SA, payloads, msg.message_id, sa=sa)
    ours = next((c for c in sa.contexts() if isinstance(c, Pending)), None)
    if ours is not None:  # 2.8.2: our own rekey is in flight; its answer decides which new SA stays
        new.step(Trigger.REKEY_CREATED)
        conn.retired.append(new)  # reachable by its SPIs meanwhile
        ours.collision = (new.neg.nonce_i, new.neg.nonce_r, new)
        return
    _switch(conn, sa, new, now, by_peer=True)


def _check_request(conn: IkeConnection, sa: IkeSa, inner: list[Payload]) -> tuple[IkeSa, list[Payload]]:
    if sa is not conn.ike or sa.state != IkeState.ESTABLISHED:
        raise Refused("an IKE rekey of an IKE SA that is not the current one", NotifyType.TEMPORARY_FAILURE)
    if any(out.exchange == ExchangeType.CREATE_CHILD_SA and not isinstance(out.context, Pending)
           for out in sa.in_flight.values()):
        raise Refused("a Child SA exchange of ours is in flight", NotifyType.TEMPORARY_FAILURE)  # 2.25
    sa_p, nonce, ke = _find(inner, SaPayload), _find(inner, NoncePayload), _find(inner, KePayload)
    if not isinstance(sa_p, SaPayload) or not isinstance(nonce, NoncePayload) or not isinstance(ke, KePayload):
        raise Refused("IKE rekey without SA, Ni and KEi", NotifyType.INVALID_SYNTAX)
    if len(nonce.data) not in NONCE_RANGE:
        raise Refused(f"a {len(nonce.data)}-byte nonce (RFC 7296 2.10: 16 to 256 bytes)", NotifyType.INVALID_SYNTAX)
    spi_r = conn.rng(8)
    try:
        chosen = choose(sa_p, conn.config.ike_proposals, "ike", spi_r)
        suite = ike_suite(chosen)
    except RemoteProtocolError as exc:
        raise Refused(str(exc), exc.notify or NotifyType.NO_PROPOSAL_CHOSEN) from None
    spi_i = next(p.spi for p in sa_p.proposals if p.num == chosen.num)
    if len(spi_i) != 8 or spi_i == bytes(8):
        raise Refused(f"an IKE proposal with a {len(spi_i)}-byte SPI", NotifyType.INVALID_SYNTAX)
    if suite.ke is None or ke.group != suite.ke.id:
        group = suite.ke.id if suite.ke is not None else 0
        raise Refused(f"KE payload of group {ke.group}, we want {group}", NotifyType.INVALID_KE_PAYLOAD,
                      _GROUP.pack(group))
    our_ke = suite.ke.generate()
    nonce_r = conn.rng(NONCE_SIZE)
    try:
        g_ir = our_ke.shared_secret(ke.data)
    except RemoteProtocolError as exc:
        raise Refused(str(exc), NotifyType.INVALID_SYNTAX) from None
    new = _new_sa(conn, sa, suite, g_ir, nonce.data, nonce_r, spi_i, spi_r, initiator=False)
    return new, [SaPayload([chosen]), NoncePayload(nonce_r), KePayload(suite.ke.id, our_ke.public_bytes)]


def on_response(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, p: Pending) -> None:
    """The initiator: take the answer, switch to the new IKE SA and delete the old one (or report a refusal)."""
    inner = msg.all_payloads()
    err = next((n for n in inner if isinstance(n, NotifyPayload) and n.is_error), None)
    if err is not None:
        if (group := group_asked_for(err, p.offer, p.tried)) is not None:
            p.group = group  # RFC 7296 1.3: again, with the group the responder asks for
            _send(conn, p, now)
            return
        conn.emit(IkeSaRekeyFailed(f"the responder refused the IKE rekey: {enum_name(NotifyType, err.notify_type)}",
                                   err.notify_type, remote=True))
        return
    try:
        new = _check_response(conn, sa, p, inner)
    except RemoteProtocolError as exc:
        conn.emit(IkeSaRekeyFailed(str(exc), exc.notify))
        return
    if sa is not conn.ike or sa.state != IkeState.ESTABLISHED:
        conn.emit(IkeSaRekeyFailed(f"the IKE SA is {sa.state} by the time the rekey was answered"))
        return
    if p.collision is None:
        _switch(conn, sa, new, now, by_peer=False)
        informational.send_delete(conn, sa, now)
        return
    peer_ni, our_nr, theirs = p.collision
    new.step(Trigger.REKEY_CREATED)
    if min(new.neg.nonce_i, new.neg.nonce_r) < min(peer_ni, our_nr):
        # 2.8.2: ours has the lowest nonce: it is redundant and ours to delete; the peer deletes the old SA
        _switch(conn, sa, theirs, now, by_peer=True)
        new.step(Trigger.REKEYED)
        conn.retired.append(new)
        informational.send_delete(conn, new, now)
    else:  # ours stays: we delete the old SA, the peer deletes its redundant one
        theirs.step(Trigger.REKEYED)
        _switch(conn, sa, new, now, by_peer=False)
        informational.send_delete(conn, sa, now)


def _check_response(conn: IkeConnection, sa: IkeSa, p: Pending, inner: list[Payload]) -> IkeSa:
    sa_p, nonce, ke = _find(inner, SaPayload), _find(inner, NoncePayload), _find(inner, KePayload)
    if not isinstance(sa_p, SaPayload) or not isinstance(nonce, NoncePayload) or not isinstance(ke, KePayload):
        raise RemoteProtocolError("IKE rekey response without SA, Nr and KEr", NotifyType.INVALID_SYNTAX)
    if len(nonce.data) not in NONCE_RANGE:
        raise RemoteProtocolError(f"a {len(nonce.data)}-byte nonce", NotifyType.INVALID_SYNTAX)
    chosen = check_choice(sa_p, p.offer, "ike")
    suite = ike_suite(chosen)
    if suite.ke is None or ke.group != suite.ke.id or ke.group != p.group or p.ke is None:
        raise RemoteProtocolError(f"the responder's KE is group {ke.group}, we sent {p.group}",
                                  NotifyType.INVALID_KE_PAYLOAD)
    if len(chosen.spi) != 8 or chosen.spi == bytes(8):
        raise RemoteProtocolError(f"the responder's new IKE SPI has {len(chosen.spi)} bytes", NotifyType.INVALID_SYNTAX)
    g_ir = p.ke.shared_secret(ke.data)
    return _new_sa(conn, sa, suite, g_ir, p.nonce, nonce.data, p.spi_i, chosen.spi, initiator=True)


def _find(payloads: list[Payload], cls: type) -> Payload | None:
    return next((p for p in payloads if isinstance(p, cls)), None)

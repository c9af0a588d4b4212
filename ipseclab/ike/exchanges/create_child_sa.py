"""CREATE_CHILD_SA for Child SAs (RFC 7296 1.3.1, 1.3.3): an additional pair, or the rekey of one (REKEY_SA).

Each exchange has its own nonces and, when the chosen proposal has a KE transform (PFS), its own key exchange:
KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) with the nonces of this exchange, the keys of its initiator's
direction first (2.17).  The state of our request in flight (``Pending``) rides with it in the connection's
window and comes back with the answer, so nothing about it lives anywhere else.

The responder checks the whole request before it changes anything and answers what it cannot take with one
notify (1.3, 2.21.3): INVALID_KE_PAYLOAD naming the group it wants (the initiator retries once per group),
CHILD_SA_NOT_FOUND for a rekey of a pair it does not have (2.25), NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE,
INVALID_SYNTAX.  A refused or failed Child SA leaves the IKE SA up (``ChildSaFailed``).

Handing a rekeyed pair over (2.8, 2.8.1): the rekey's initiator sends on the new pair as soon as it has the
answer, and deletes the old pair.  Its responder installs the new pair inbound-only (the initiator may not have
it yet: the answer can be lost) and keeps sending on the old pair until that pair is deleted; then
``ChildSaOutbound`` moves its traffic over (``informational``).  The old pair's inbound SA takes traffic on both
sides until its ``ChildSaDeleted``.  In a collision the redundant pair never carries outbound traffic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...crypto import KeyExchange, get_ke_group
from ...crypto.keys import IkeSaKeys, IkeSuite
from ...errors import LocalProtocolError, RemoteProtocolError
from ...packets.enums import ExchangeType, NotifyType, ProtocolId, enum_name
from ...packets.message import Message
from ...packets.payloads import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)
from ..child import LIVE, ChildSa, ChildState, ChildTrigger
from ..events import ChildSaEstablished, ChildSaFailed
from ..negotiate import check_choice, choose, group_asked_for, ke_group, offer, offered_groups
from ..sa import IkeSa
from ..selectors import from_cidrs, narrow, within
from . import informational
from .ike_auth import add_child, child_event, child_spi
from .ike_sa_init import NONCE_RANGE, NONCE_SIZE

if TYPE_CHECKING:
    from ..connection import IkeConnection

_GROUP = struct.Struct("!H")
_NAMES = {ProtocolId.ESP: "esp", ProtocolId.AH: "ah"}


@dataclass(slots=True)
class Pending:
    """Our CREATE_CHILD_SA request for a Child SA in flight: the new pair (CREATING) and what the answer needs."""

    child: ChildSa
    old: ChildSa | None  # the pair a rekey replaces
    offer: SaPayload
    local_ts: list[TrafficSelector]
    remote_ts: list[TrafficSelector]
    group: int = 0  # KE group sent (0: no PFS)
    nonce: bytes = b""
    ke: KeyExchange | None = None
    tried: list[int] = field(default_factory=list)
    collision: tuple[bytes, bytes, ChildSa] | None = None  # the peer's rekey of the same pair: its Ni, our Nr, its pair


class Refused(RemoteProtocolError):
    """A request the responder answers with ``notify`` (and ``data``) alone, changing nothing."""

    def __init__(self, message: str, notify: int, data: bytes = b"") -> None:
        super().__init__(message, notify)
        self.data = data


def _keys(sa: IkeSa) -> tuple[IkeSuite, IkeSaKeys]:
    if sa.neg.suite is None or sa.neg.keys is None:
        raise LocalProtocolError("CREATE_CHILD_SA on an IKE SA without keys")
    return sa.neg.suite, sa.neg.keys


def _proposals(conn: IkeConnection, protocol: int) -> tuple[str, ...]:
    return conn.config.ah_proposals if protocol == ProtocolId.AH else conn.config.esp_proposals


# -- the initiator ---------------------------------------------------------------------------------------------

def start_child(conn: IkeConnection, now: float, *, local_ts: tuple[str, ...] | None = None,
                remote_ts: tuple[str, ...] | None = None, old: ChildSa | None = None,
                like: ChildSa | None = None) -> int:
    """Queue our request for a new pair (or the rekey of ``old``, or a pair with the protocol, mode and agreed
    selectors of ``like``, another connection's, when reauthenticating); returns the new pair's inbound SPI."""
    cfg = conn.config
    conn.require_window_room()
    model = old or like
    if model is not None:
        if model.sa is None:
            raise LocalProtocolError("a Child SA without its agreed algorithms cannot be rekeyed or re-created")
        protocol, mode = model.protocol, model.mode
        lts, rts = list(model.sa.local_ts), list(model.sa.remote_ts)
    else:
        protocol = ProtocolId.AH if cfg.protocol == "ah" else ProtocolId.ESP
        mode = cfg.mode
        lts, rts = from_cidrs(local_ts or cfg.local_ts), from_cidrs(remote_ts or cfg.remote_ts)
    spi = child_spi(conn)
    the_offer = offer(_proposals(conn, protocol), _NAMES[ProtocolId(protocol)], spi)
    groups = offered_groups(the_offer)
    child = ChildSa(protocol, spi, mode)
    conn.children[child.key] = child
    pending = Pending(child, old, the_offer, lts, rts, groups[0] if groups else 0)
    if old is not None:
        old.step(ChildTrigger.REKEY)
        old.rekey = pending
    _send(conn, pending, now)
    return child.key


def _send(conn: IkeConnection, p: Pending, now: float) -> None:
    """The request (1.3.1/1.3.3): [N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr."""
    p.nonce = conn.rng(NONCE_SIZE)
    p.ke = get_ke_group(p.group).generate() if p.group else None
    if p.group:
        p.tried.append(p.group)
    payloads: list[Payload] = []
    if p.old is not None:
        payloads.append(NotifyPayload(NotifyType.REKEY_SA, protocol=p.old.protocol, spi=p.old.spi_in))
    if p.child.mode == "transport":
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [p.offer, NoncePayload(p.nonce)]
    if p.ke is not None:
        payloads.append(KePayload(p.group, p.ke.public_bytes))
    payloads += [TsiPayload(p.local_ts), TsrPayload(p.remote_ts)]
    conn.send_request(ExchangeType.CREATE_CHILD_SA, payloads, now, context=p)


def _failed(conn: IkeConnection, p: Pending, reason: str, notify: int, remote: bool) -> None:
    p.child.step(ChildTrigger.FAIL)
    conn.children.pop(p.child.key, None)
    if p.old is not None:
        p.old.rekey = None
        if p.old.state == ChildState.REKEYING and p.collision is None:  # (the peer's rekey replaced it anyway)
            p.old.step(ChildTrigger.REKEY_FAILED)
    conn.emit(ChildSaFailed(reason, notify, remote))


def on_response(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, ctx: object) -> None:
    if not isinstance(ctx, Pending):
        raise LocalProtocolError("a CREATE_CHILD_SA response without our request's context")
    p = ctx
    inner = msg.all_payloads()
    err = next((n for n in inner if isinstance(n, NotifyPayload) and n.is_error), None)
    if err is not None:
        if (group := group_asked_for(err, p.offer, p.tried)) is not None:
            p.group = group  # RFC 7296 1.3: again, with the group the responder asks for
            _send(conn, p, now)
            return
        _failed(conn, p, f"the responder refused the Child SA: {enum_name(NotifyType, err.notify_type)}",
                err.notify_type, True)
        return
    try:
        event = _check_response(conn, sa, p, inner)
    except RemoteProtocolError as exc:
        _failed(conn, p, str(exc), exc.notify, False)
        return
    lost = p.old is not None and p.collision is not None and _lost(p, nonce_r=_nonce(inner))
    if lost:
        event = replace(event, outbound=False)  # redundant: never carries our traffic
    new = add_child(conn, event, now)
    new.outbound = event.outbound
    if p.old is None:
        return
    p.old.rekey = None
    if lost:
        # RFC 7296 2.8.1: both sides rekeyed the pair at once; the new pair of the exchange with the lowest of
        # the four nonces is redundant and its initiator (we) deletes it; the peer deletes the old pair
        informational.send_child_delete(conn, [new], now)
    elif p.old.state in LIVE:  # 2.8: the initiator of the (surviving) rekey uses the new pair, deletes the old
        informational.send_child_delete(conn, [p.old], now)


def _nonce(inner: list[Payload]) -> bytes:
    nonce = _find(inner, NoncePayload)
    return nonce.data if isinstance(nonce, NoncePayload) else b""


def _lost(p: Pending, *, nonce_r: bytes) -> bool:
    """Whether the lowest of the four nonces of two colliding rekeys is in our exchange (2.8.1, 2.8.2)."""
    assert p.collision is not None
    peer_ni, our_nr, _ = p.collision
    return min(p.nonce, nonce_r) < min(peer_ni, our_nr)


def _check_response(conn: IkeConnection, sa: IkeSa, p: Pending, inner: list[Payload]) -> ChildSaEstablished:
    sa_p, nonce, ke = _find(inner, SaPayload), _find(inner, NoncePayload), _find(inner, KePayload)
    tsi, tsr = _find(inner, TsiPayload), _find(inner, TsrPayload)
    if not isinstance(sa_p, SaPayload) or not isinstance(nonce, NoncePayload) \
            or not isinstance(tsi, TsiPayload) or not isinstance(tsr, TsrPayload):
        raise RemoteProtocolError("CREATE_CHILD_SA response without SA, Nr, TSi and TSr", NotifyType.INVALID_SYNTAX)
    if len(nonce.data) not in NONCE_RANGE:
        raise RemoteProtocolError(f"a {len(nonce.data)}-byte nonce", NotifyType.INVALID_SYNTAX)
    chosen = check_choice(sa_p, p.offer, _NAMES[ProtocolId(p.child.protocol)])
    group = ke_group(chosen)
    g_ir: bytes | None = None
    if group != p.group:
        raise RemoteProtocolError(f"the responder chose KE group {group}, we sent {p.group}",
                                  NotifyType.INVALID_KE_PAYLOAD)
    if group:
        if not isinstance(ke, KePayload) or ke.group != group or p.ke is None:
            raise RemoteProtocolError("CREATE_CHILD_SA response without the KE payload of the chosen group",
                                      NotifyType.INVALID_KE_PAYLOAD)
        g_ir = p.ke.shared_secret(ke.data)
    transport = any(isinstance(n, NotifyPayload) and n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in inner)
    if transport != (p.child.mode == "transport"):
        raise RemoteProtocolError("the responder agreed another mode", NotifyType.NO_PROPOSAL_CHOSEN)
    if not within(tsi.selectors, p.local_ts) or not within(tsr.selectors, p.remote_ts):
        raise RemoteProtocolError("the responder's selectors are not inside what we proposed",
                                  NotifyType.TS_UNACCEPTABLE)
    if len(chosen.spi) != 4:
        raise RemoteProtocolError(f"a {len(chosen.spi)}-byte SPI", NotifyType.INVALID_SYNTAX)
    return child_event(conn, _keys(sa), chosen, p.child.spi_in, chosen.spi, p.child.mode, tsi.selectors,
                       tsr.selectors, nonce_i=p.nonce, nonce_r=nonce.data, we_initiated=True, g_ir=g_ir,
                       rekeyed=p.old.key if p.old is not None else None)


# -- the responder ---------------------------------------------------------------------------------------------

def _find(payloads: list[Payload], cls: type) -> Payload | None:
    return next((p for p in payloads if isinstance(p, cls)), None)


@dataclass(slots=True)
class _Taken:
    chosen: Proposal
    peer_spi: bytes
    nonce_i: bytes
    ke: KeyExchange | None
    g_ir: bytes | None
    old: ChildSa | None
    mode: str
    tsi: list[TrafficSelector]
    tsr: list[TrafficSelector]


def _check_request(conn: IkeConnection, inner: list[Payload], spi: bytes) -> _Taken:
    cfg = conn.config
    sa_p, nonce, ke = _find(inner, SaPayload), _find(inner, NoncePayload), _find(inner, KePayload)
    tsi, tsr = _find(inner, TsiPayload), _find(inner, TsrPayload)
    if not isinstance(sa_p, SaPayload) or not isinstance(nonce, NoncePayload) \
            or not isinstance(tsi, TsiPayload) or not isinstance(tsr, TsrPayload):
        raise Refused("CREATE_CHILD_SA request without SA, Ni, TSi and TSr", NotifyType.INVALID_SYNTAX)
    if len(nonce.data) not in NONCE_RANGE:
        raise Refused(f"a {len(nonce.data)}-byte nonce (RFC 7296 2.10: 16 to 256 bytes)", NotifyType.INVALID_SYNTAX)
    rekey = next((n for n in inner if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.REKEY_SA), None)
    old: ChildSa | None = None
    protocol = ProtocolId.AH if cfg.protocol == "ah" else ProtocolId.ESP
    if rekey is not None:
        old = next((c for c in conn.children.values()
                    if c.protocol == rekey.protocol and c.spi_out == rekey.spi and c.state in LIVE), None)
        if old is None:  # 2.25: gone, or being deleted
            raise Refused(f"REKEY_SA for SPI {rekey.spi.hex()}, which names no Child SA of ours",
                          NotifyType.CHILD_SA_NOT_FOUND)
        protocol = ProtocolId(old.protocol)
    try:
        chosen = choose(sa_p, _proposals(conn, protocol), _NAMES[protocol], spi)
    except RemoteProtocolError as exc:
        raise Refused(str(exc), exc.notify or NotifyType.NO_PROPOSAL_CHOSEN) from None
    peer_spi = next(p.spi for p in sa_p.proposals if p.num == chosen.num)
    if len(peer_spi) != 4:
        raise Refused(f"a {len(peer_spi)}-byte SPI", NotifyType.INVALID_SYNTAX)
    group = ke_group(chosen)
    our_ke: KeyExchange | None = None
    g_ir: bytes | None = None
    if group:
        if not isinstance(ke, KePayload) or ke.group != group:
            # RFC 7296 1.3: name the group we want; the initiator tries again with it
            raise Refused(f"KE payload of group {ke.group if isinstance(ke, KePayload) else 'none'}, we want "
                          f"{group}", NotifyType.INVALID_KE_PAYLOAD, _GROUP.pack(group))
        our_ke = get_ke_group(group).generate()
        try:
            g_ir = our_ke.shared_secret(ke.data)
        except RemoteProtocolError as exc:
            raise Refused(str(exc), NotifyType.INVALID_SYNTAX) from None
    transport = any(isinstance(n, NotifyPayload) and n.notify_type == NotifyType.USE_TRANSPORT_MODE for n in inner)
    mode = old.mode if old is not None else cfg.mode
    if transport != (mode == "transport"):
        raise Refused(f"the initiator asks for {'transport' if transport else 'tunnel'} mode, configured is "
                      f"{mode}", NotifyType.NO_PROPOSAL_CHOSEN)
    allowed = [(cfg.local_ts, cfg.remote_ts), *cfg.extra_ts]
    n_tsi: list[TrafficSelector] = []
    n_tsr: list[TrafficSelector] = []
    for local_ts, remote_ts in allowed:  # the first configured pair both selectors fit (RFC 7296 2.9)
        n_tsi = narrow(tsi.selectors, from_cidrs(remote_ts))
        n_tsr = narrow(tsr.selectors, from_cidrs(local_ts))
        if n_tsi and n_tsr:
            break
    if not n_tsi or not n_tsr:
        raise Refused("traffic selectors outside the configured ones", NotifyType.TS_UNACCEPTABLE)
    return _Taken(chosen, peer_spi, nonce.data, our_ke, g_ir, old, mode, n_tsi, n_tsr)


def on_request(conn: IkeConnection, sa: IkeSa, msg: Message, now: float) -> None:
    """The responder: check the whole request, then answer and install the new pair; or refuse, changing nothing."""
    inner = msg.all_payloads()
    suite_keys = _keys(sa)
    try:
        t = _check_request(conn, inner, child_spi(conn))
    except Refused as exc:
        conn.notify_only_response(ExchangeType.CREATE_CHILD_SA, msg.message_id, exc.notify, exc.data, sa=sa)
        if exc.notify != NotifyType.INVALID_KE_PAYLOAD:  # that one is a step of the negotiation, not a failure
            conn.emit(ChildSaFailed(str(exc), exc.notify, remote=False))
        return
    spi = t.chosen.spi
    nonce_r = conn.rng(NONCE_SIZE)
    payloads: list[Payload] = []
    if t.mode == "transport":
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [SaPayload([t.chosen]), NoncePayload(nonce_r)]
    if t.ke is not None:
        payloads.append(KePayload(t.ke.group.id, t.ke.public_bytes))
    payloads += [TsiPayload(t.tsi), TsrPayload(t.tsr)]
    event = child_event(conn, suite_keys, t.chosen, spi, t.peer_spi, t.mode, t.tsi, t.tsr, nonce_i=t.nonce_i,
                        nonce_r=nonce_r, we_initiated=False, g_ir=t.g_ir,
                        rekeyed=t.old.key if t.old is not None else None)
    if t.old is not None:
        # 2.8: the peer may not have the new pair until it reads this answer; our outbound traffic stays on the
        # old pair until the peer deletes it (strongSwan does the same), its inbound SA works at once
        event = replace(event, outbound=False)
    conn.send_response(ExchangeType.CREATE_CHILD_SA, payloads, msg.message_id, sa=sa)
    if t.old is not None and t.old.state == ChildState.INSTALLED:
        t.old.step(ChildTrigger.REKEY)  # it carries traffic until the peer deletes it
    conn.children[int.from_bytes(spi, "big")] = ChildSa(t.chosen.protocol, spi, t.mode, outbound=event.outbound)
    new = add_child(conn, event, now)
    if t.old is not None and isinstance(t.old.rekey, Pending):  # we are rekeying it too: a collision (2.8.1)
        t.old.rekey.collision = (t.nonce_i, nonce_r, new)

"""IKE_SA_INIT (RFC 7296 1.2): proposals, key exchange, nonces, NAT detection, fragmentation support.

Initiator: ``start`` sends the request; ``on_response`` either retries (INVALID_KE_PAYLOAD with the
group the responder wants, or a COOKIE to echo, RFC 7296 1.2 and 2.6) or derives the IKE SA keys
and moves on to IKE_AUTH.  Responder: ``on_request`` chooses a proposal and answers, or answers
with the error notify alone and keeps no state.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...crypto import get_ke_group
from ...crypto.keys import derive_ike_sa
from ...crypto.natd import nat_detection_hash
from ...crypto.proposals import parse_proposal
from ...crypto.registry import TransformType
from ...errors import RemoteProtocolError
from ...packets.enums import ExchangeType, NotifyType, enum_name
from ...packets.message import IkeSaCrypto, Message
from ...packets.payloads import KePayload, NoncePayload, NotifyPayload, Payload, SaPayload
from ..events import NatDetected
from ..negotiate import check_choice, choose, ike_suite, offer
from ..state import Trigger

if TYPE_CHECKING:
    from ..connection import IkeConnection

NONCE_SIZE = 32
_GROUP = struct.Struct("!H")


def _offered_groups(conn: IkeConnection) -> list[int]:
    return [s.id for p in conn.config.ike_proposals for s in parse_proposal(p, "ike") if s.type == TransformType.KE]


def _peer_endpoint(conn: IkeConnection) -> tuple[str, int] | None:
    """The peer's address as we see it: the request's source for a responder, the configured one otherwise."""
    if not conn.initiator and conn.source is not None:
        return conn.source
    return conn.config.remote_endpoint or conn.source


def _nat_notifies(conn: IkeConnection, spi_r: bytes) -> list[Payload]:
    local, remote = conn.config.local_endpoint, _peer_endpoint(conn)
    if local is None or remote is None:
        return []
    return [
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, data=nat_detection_hash(conn.spi_i, spi_r, *local)),
        NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, data=nat_detection_hash(conn.spi_i, spi_r, *remote)),
    ]


def _detect_nat(conn: IkeConnection, msg: Message) -> None:
    """Compare the peer's NAT_DETECTION notifies with the addresses (RFC 7296 2.23); emit NatDetected if off."""
    src = [p.data for p in msg.payloads
           if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
    dst = [p.data for p in msg.payloads
           if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_DESTINATION_IP]
    local, seen = conn.config.local_endpoint, conn.source
    if not src or not dst or local is None or seen is None:
        return  # the peer does not do NAT-T, or the driver did not say where things came from
    spi_r = msg.spi_r if msg.response else bytes(8)
    neg = conn.neg
    neg.nat_remote = nat_detection_hash(conn.spi_i, spi_r, *seen) not in src
    neg.nat_local = nat_detection_hash(conn.spi_i, spi_r, *local) not in dst
    if neg.nat_local or neg.nat_remote:
        conn.emit(NatDetected(neg.nat_local, neg.nat_remote))


def _extras(conn: IkeConnection, spi_r: bytes) -> list[Payload]:
    out = _nat_notifies(conn, spi_r)
    if conn.config.fragmentation:
        out.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    return out


def start(conn: IkeConnection, now: float) -> None:
    neg = conn.neg
    if not neg.ke_group:
        neg.ke_group = _offered_groups(conn)[0]
    neg.ke = get_ke_group(neg.ke_group).generate()
    if not neg.nonce_i:
        neg.nonce_i = conn.rng(NONCE_SIZE)
    neg.ike_offer = neg.ike_offer or offer(conn.config.ike_proposals, "ike")
    payloads: list[Payload] = []
    if neg.cookie:
        payloads.append(NotifyPayload(NotifyType.COOKIE, data=neg.cookie))  # RFC 7296 2.6: the cookie goes first
    payloads += [neg.ike_offer, KePayload(neg.ke_group, neg.ke.public_bytes), NoncePayload(neg.nonce_i)]
    payloads += _extras(conn, bytes(8))
    neg.init_request = conn.send_request(ExchangeType.IKE_SA_INIT, payloads, now, message_id=0, encrypted=False)


def _has_fragmentation(msg: Message) -> bool:
    return any(isinstance(p, NotifyPayload) and p.notify_type == NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
               for p in msg.payloads)


def _derive(conn: IkeConnection, peer_ke: KePayload) -> None:
    neg = conn.neg
    assert neg.ke is not None and neg.suite is not None
    g_ir = neg.ke.shared_secret(peer_ke.data)
    _, neg.keys = derive_ike_sa(neg.suite, neg.nonce_i, neg.nonce_r, g_ir, conn.spi_i, conn.spi_r)
    neg.crypto = IkeSaCrypto.from_keys(neg.suite, neg.keys)


def _one(msg: Message, cls: type) -> Payload | None:
    return next((p for p in msg.payloads if isinstance(p, cls)), None)


def on_response(conn: IkeConnection, msg: Message, data: bytes, now: float) -> None:
    neg = conn.neg
    notifies = [p for p in msg.payloads if isinstance(p, NotifyPayload)]
    for n in notifies:
        if n.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(n.data) == 2:
            group = _GROUP.unpack(n.data)[0]
            if group not in _offered_groups(conn) or group == neg.ke_group:
                raise RemoteProtocolError(f"the responder asks for key exchange group {group}, which we did not "
                                          f"offer (or already used)", NotifyType.INVALID_KE_PAYLOAD)
            conn.step(Trigger.RETRY_INIT)
            neg.ke_group = group
            start(conn, now)
            return
        if n.notify_type == NotifyType.COOKIE:
            if neg.cookie:
                raise RemoteProtocolError("the responder asked for a second cookie", NotifyType.COOKIE)
            conn.step(Trigger.RETRY_INIT)
            neg.cookie = n.data
            start(conn, now)
            return
        if n.is_error:
            raise RemoteProtocolError(f"the responder refused IKE_SA_INIT: {enum_name(NotifyType, n.notify_type)}",
                                      n.notify_type, from_peer=True)
    sa, ke, nonce = _one(msg, SaPayload), _one(msg, KePayload), _one(msg, NoncePayload)
    if not isinstance(sa, SaPayload) or not isinstance(ke, KePayload) or not isinstance(nonce, NoncePayload):
        raise RemoteProtocolError("IKE_SA_INIT response without SA, KE and Nonce payloads", NotifyType.INVALID_SYNTAX)
    assert neg.ike_offer is not None
    chosen = check_choice(sa, neg.ike_offer, "ike")
    neg.suite = ike_suite(chosen)
    if neg.suite.ke is None or ke.group != neg.suite.ke.id or ke.group != neg.ke_group:
        raise RemoteProtocolError(f"the responder's KE payload is group {ke.group}, not the {neg.ke_group} we sent",
                                  NotifyType.INVALID_KE_PAYLOAD)
    if msg.spi_r == bytes(8):
        raise RemoteProtocolError("IKE_SA_INIT response with a zero responder SPI", NotifyType.INVALID_SYNTAX)
    conn.spi_r = msg.spi_r
    neg.nonce_r = nonce.data
    neg.init_response = data
    neg.peer_fragmentation = _has_fragmentation(msg)
    _derive(conn, ke)
    _detect_nat(conn, msg)
    conn.step(Trigger.RECV_INIT_RESPONSE)
    from . import ike_auth

    ike_auth.start(conn, now)


def on_request(conn: IkeConnection, msg: Message, data: bytes, now: float) -> None:
    neg = conn.neg
    sa, ke, nonce = _one(msg, SaPayload), _one(msg, KePayload), _one(msg, NoncePayload)
    if msg.spi_r != bytes(8) or not isinstance(sa, SaPayload) or not isinstance(ke, KePayload) \
            or not isinstance(nonce, NoncePayload):
        raise RemoteProtocolError("IKE_SA_INIT request without SA, KE and Nonce (or with a responder SPI)",
                                  NotifyType.INVALID_SYNTAX)
    conn.spi_i = msg.spi_i
    try:
        chosen = choose(sa, conn.config.ike_proposals, "ike")
    except RemoteProtocolError as exc:
        conn.notify_only_response(ExchangeType.IKE_SA_INIT, msg.message_id, exc.notify)
        raise
    suite = ike_suite(chosen)
    assert suite.ke is not None
    if ke.group != suite.ke.id:
        # RFC 7296 1.2: tell the initiator which group we want; keep no state, it starts again
        conn.send_response(ExchangeType.IKE_SA_INIT, [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD,
                                                                    data=_GROUP.pack(suite.ke.id))],
                           msg.message_id, encrypted=False, cache=False)
        conn.spi_i = b""  # no state kept: the retry may come with a new SPI
        return
    if not 16 <= len(nonce.data) <= 256:
        raise RemoteProtocolError(f"a {len(nonce.data)}-byte nonce (RFC 7296 3.9: 16 to 256 bytes)",
                                  NotifyType.INVALID_SYNTAX)
    neg.suite = suite
    neg.ke_group = suite.ke.id
    neg.ke = suite.ke.generate()
    neg.nonce_i = nonce.data
    neg.nonce_r = conn.rng(NONCE_SIZE)
    neg.init_request = data
    neg.peer_fragmentation = _has_fragmentation(msg)
    _detect_nat(conn, msg)
    conn.spi_r = conn.rng(8)
    payloads: list[Payload] = [SaPayload([chosen]), KePayload(neg.ke_group, neg.ke.public_bytes),
                               NoncePayload(neg.nonce_r)]
    payloads += _nat_notifies(conn, conn.spi_r)
    if conn.config.fragmentation and neg.peer_fragmentation:
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    conn.step(Trigger.RECV_INIT_REQUEST)
    neg.init_response = conn.send_response(ExchangeType.IKE_SA_INIT, payloads, msg.message_id, encrypted=False)
    _derive(conn, ke)

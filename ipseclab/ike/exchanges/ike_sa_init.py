"""IKE_SA_INIT (RFC 7296 1.2): proposals, key exchange, nonces, NAT detection, fragmentation support.

Initiator: ``start`` sends the request; ``on_response`` either retries (INVALID_KE_PAYLOAD with the
group the responder wants, or a COOKIE to echo, RFC 7296 1.2 and 2.6) or derives the IKE SA keys
and moves on to IKE_AUTH.  Responder: ``on_request`` chooses a proposal and answers, or answers
with the error notify alone and keeps no state.

Nothing in this exchange is authenticated, so both handlers check the whole message first (payloads,
proposal, group, nonce, the peer's KE value through the shared secret itself) and only then change
the SA.  What they cannot take raises an IpsecLabError with nothing changed: the connection drops the
datagram, and an initiator keeps waiting for a valid response (RFC 7296 2.21.1: an unauthenticated
error notify counts only if no valid answer comes before the retransmissions give up).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...crypto import KeGroup, KeyExchange, get_ke_group
from ...crypto.keys import IkeSaKeys, IkeSuite, derive_ike_sa
from ...crypto.natd import nat_detection_hash
from ...crypto.proposals import parse_proposal
from ...crypto.registry import TransformType
from ...errors import LocalProtocolError, RemoteProtocolError
from ...packets.enums import ExchangeType, NotifyType, enum_name
from ...packets.message import IkeSaCrypto, Message
from ...packets.payloads import KePayload, NoncePayload, NotifyPayload, Payload, Proposal, SaPayload
from ..auth import proof
from ..events import IkeSaKeysDerived, NatDetected
from ..negotiate import check_choice, choose, ike_suite, offer
from ..state import Trigger

if TYPE_CHECKING:
    from ..connection import IkeConnection

NONCE_SIZE = 32
NONCE_RANGE = range(16, 257)  # RFC 7296 2.10: at least 16 and at most 256 bytes
COOKIE_RANGE = range(1, 65)  # RFC 7296 2.6: 1 to 64 bytes
_GROUP = struct.Struct("!H")


class Refused(RemoteProtocolError):
    """An IKE_SA_INIT request the responder answers with ``notify`` (and ``data``) alone, keeping no state."""

    def __init__(self, message: str, notify: int, data: bytes = b"") -> None:
        super().__init__(message, notify)
        self.data = data


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
    return out + proof.init_payloads(conn, response=False)


def start(conn: IkeConnection, now: float) -> None:
    neg = conn.neg
    if not neg.ke_group:
        neg.ke_group = _offered_groups(conn)[0]
    if neg.ke is None or neg.ke.group.id != neg.ke_group:  # a COOKIE retry keeps the KE value (RFC 7296 2.6)
        neg.tried_groups.append(neg.ke_group)
        neg.ke = get_ke_group(neg.ke_group).generate()
    if not neg.nonce_i:
        neg.nonce_i = conn.rng(NONCE_SIZE)
    neg.ike_offer = neg.ike_offer or offer(conn.config.ike_proposals, "ike")
    payloads: list[Payload] = []
    if neg.cookie:
        payloads.append(NotifyPayload(NotifyType.COOKIE, data=neg.cookie))  # RFC 7296 2.6: the cookie goes first
    payloads += [neg.ike_offer, KePayload(neg.ke_group, neg.ke.public_bytes), NoncePayload(neg.nonce_i)]
    payloads += _extras(conn, bytes(8))
    neg.init_request = conn.send_init_request(payloads, now)


def _has_fragmentation(msg: Message) -> bool:
    return any(isinstance(p, NotifyPayload) and p.notify_type == NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
               for p in msg.payloads)


def _keys(suite: IkeSuite, ke: KeyExchange, peer_ke: KePayload, nonce_i: bytes, nonce_r: bytes, spi_i: bytes,
          spi_r: bytes) -> tuple[IkeSaKeys, IkeSaCrypto]:
    """The IKE SA's keys; the peer's KE value is checked by the shared secret (RemoteProtocolError if invalid)."""
    g_ir = ke.shared_secret(peer_ke.data)
    _, keys = derive_ike_sa(suite, nonce_i, nonce_r, g_ir, spi_i, spi_r)
    return keys, IkeSaCrypto.from_keys(suite, keys)


def _keys_derived(conn: IkeConnection, suite: IkeSuite, keys: IkeSaKeys) -> IkeSaKeysDerived:
    return IkeSaKeysDerived(conn.spi_i, conn.spi_r, conn.ike.initiator, int(suite.encr.id), suite.encr.key_bits,
                            int(suite.integ.id) if suite.integ else None, keys)


def _one(msg: Message, cls: type) -> Payload | None:
    return next((p for p in msg.payloads if isinstance(p, cls)), None)


def _check_nonce(nonce: NoncePayload) -> None:
    if len(nonce.data) not in NONCE_RANGE:
        raise RemoteProtocolError(f"a {len(nonce.data)}-byte nonce (RFC 7296 2.10: 16 to 256 bytes)",
                                  NotifyType.INVALID_SYNTAX)


def _retry(conn: IkeConnection, msg: Message, now: float) -> bool:
    """Send IKE_SA_INIT again if the response asks for another group or a cookie (the corrective actions of
    RFC 7296 2.21.1); raises for any other error notify.  False: the response carries no error notify."""
    neg = conn.neg
    for n in msg.payloads:
        if not isinstance(n, NotifyPayload):
            continue
        if n.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(n.data) == 2:
            group = _GROUP.unpack(n.data)[0]
            if group not in _offered_groups(conn) or group in neg.tried_groups:
                raise RemoteProtocolError(f"the responder asks for key exchange group {group}, which we did not "
                                          f"offer (or already sent)", NotifyType.INVALID_KE_PAYLOAD, from_peer=True)
            conn.step(Trigger.RETRY_INIT)
            neg.ke_group = group
            start(conn, now)
            return True
        if n.notify_type == NotifyType.COOKIE:
            if neg.cookie or len(n.data) not in COOKIE_RANGE:
                raise RemoteProtocolError(f"a second cookie, or one of {len(n.data)} bytes (RFC 7296 2.6: 1 to 64)",
                                          NotifyType.INVALID_SYNTAX)
            conn.step(Trigger.RETRY_INIT)
            neg.cookie = n.data
            start(conn, now)
            return True
        if n.is_error:
            raise RemoteProtocolError(f"the responder refused IKE_SA_INIT: {enum_name(NotifyType, n.notify_type)}",
                                      n.notify_type, from_peer=True)
    return False


def on_response(conn: IkeConnection, msg: Message, data: bytes, now: float) -> None:
    """The initiator: check the whole response, then derive the keys and start IKE_AUTH (or retry)."""
    neg = conn.neg
    if neg.ke is None or neg.ike_offer is None:
        raise LocalProtocolError("an IKE_SA_INIT response before our request was made")
    if _retry(conn, msg, now):
        return
    sa, ke, nonce = _one(msg, SaPayload), _one(msg, KePayload), _one(msg, NoncePayload)
    if not isinstance(sa, SaPayload) or not isinstance(ke, KePayload) or not isinstance(nonce, NoncePayload):
        raise RemoteProtocolError("IKE_SA_INIT response without SA, KE and Nonce payloads", NotifyType.INVALID_SYNTAX)
    suite = ike_suite(check_choice(sa, neg.ike_offer, "ike"))
    if suite.ke is None or ke.group != suite.ke.id or ke.group != neg.ke_group:
        raise RemoteProtocolError(f"the responder's KE payload is group {ke.group}, not the {neg.ke_group} we sent",
                                  NotifyType.INVALID_KE_PAYLOAD)
    if msg.spi_r == bytes(8):
        raise RemoteProtocolError("IKE_SA_INIT response with a zero responder SPI", NotifyType.INVALID_SYNTAX)
    _check_nonce(nonce)
    keys, crypto = _keys(suite, neg.ke, ke, neg.nonce_i, nonce.data, conn.spi_i, msg.spi_r)
    # everything checked: from here on the response is taken
    conn.complete_request()
    conn.ike.spi_r = msg.spi_r
    neg.suite, neg.keys, neg.crypto = suite, keys, crypto
    neg.nonce_r = nonce.data
    neg.init_response = data
    neg.init_refusal = None
    neg.peer_fragmentation = _has_fragmentation(msg)
    _detect_nat(conn, msg)
    proof.take_init(conn, msg)
    conn.step(Trigger.RECV_INIT_RESPONSE)
    conn.emit(_keys_derived(conn, suite, keys))
    from . import ike_auth

    ike_auth.start(conn, now)


def _check_request(conn: IkeConnection, msg: Message) -> tuple[Proposal, IkeSuite, KeGroup, KePayload, NoncePayload]:
    """The proposal we choose and the payloads we take, or Refused naming the notify to answer with."""
    sa, ke, nonce = _one(msg, SaPayload), _one(msg, KePayload), _one(msg, NoncePayload)
    if not isinstance(sa, SaPayload) or not isinstance(ke, KePayload) or not isinstance(nonce, NoncePayload):
        raise Refused("IKE_SA_INIT request without SA, KE and Nonce", NotifyType.INVALID_SYNTAX)
    try:
        chosen = choose(sa, conn.config.ike_proposals, "ike")
        suite = ike_suite(chosen)
        _check_nonce(nonce)
    except RemoteProtocolError as exc:
        raise Refused(str(exc), exc.notify or NotifyType.INVALID_SYNTAX) from None
    group = suite.ke
    if group is None:
        raise Refused("the chosen proposal has no key exchange method", NotifyType.NO_PROPOSAL_CHOSEN)
    if ke.group != group.id:
        # RFC 7296 1.2: tell the initiator which group we want; it starts again
        raise Refused(f"KE payload of group {ke.group}, we want {group.id}", NotifyType.INVALID_KE_PAYLOAD,
                      _GROUP.pack(group.id))
    return chosen, suite, group, ke, nonce


def on_request(conn: IkeConnection, msg: Message, data: bytes, now: float) -> None:
    """The responder: check the whole request, then answer and keep the half-open SA; or refuse, keeping none.

    The peer's KE value is checked before any state is made (RFC 7296 3.4, RFC 6989): a value of the wrong
    length or not on the curve gets INVALID_SYNTAX, a group other than the chosen one INVALID_KE_PAYLOAD.
    """
    neg = conn.neg
    try:
        chosen, suite, group, ke, nonce = _check_request(conn, msg)
        our_ke = group.generate()
        nonce_r, spi_r = conn.rng(NONCE_SIZE), conn.rng(8)
        try:
            keys, crypto = _keys(suite, our_ke, ke, nonce.data, nonce_r, msg.spi_i, spi_r)
        except RemoteProtocolError as exc:
            raise Refused(str(exc), exc.notify or NotifyType.INVALID_SYNTAX) from None
    except Refused as exc:
        conn.refuse_init(msg, exc.notify, exc.data)
        raise
    # everything checked: from here on the request is taken
    conn.ike.spi_i, conn.ike.spi_r = msg.spi_i, spi_r
    neg.suite, neg.keys, neg.crypto = suite, keys, crypto
    neg.ke_group, neg.ke = group.id, our_ke
    neg.nonce_i, neg.nonce_r = nonce.data, nonce_r
    neg.init_request = data
    neg.peer_fragmentation = _has_fragmentation(msg)
    _detect_nat(conn, msg)
    payloads: list[Payload] = [SaPayload([chosen]), KePayload(neg.ke_group, our_ke.public_bytes),
                               NoncePayload(nonce_r)]
    payloads += _nat_notifies(conn, spi_r)
    if conn.config.fragmentation and neg.peer_fragmentation:
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    proof.take_init(conn, msg)
    payloads += proof.init_payloads(conn, response=True)
    conn.step(Trigger.RECV_INIT_REQUEST)
    if conn.config.half_open_timeout:
        conn.half_open_until = now + conn.config.half_open_timeout
    neg.init_response = conn.send_response(ExchangeType.IKE_SA_INIT, payloads, msg.message_id, encrypted=False)
    conn.emit(_keys_derived(conn, suite, keys))

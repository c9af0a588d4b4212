"""IKE_AUTH (RFC 7296 1.2, 2.15): identities, authentication and the first Child SA.

Each side proves its identity over its SignedOctets (its IKE_SA_INIT message, the peer's nonce and
prf(SK_p, ID')) with its own authenticator (``ike.auth``): a pre-shared key, a certificate's signature with
CERT payloads, or, for the initiator, EAP.  Without EAP this is one round trip; with EAP the exchange module
``ike_auth_eap`` runs the further round trips (2.16) and comes back here to finish.  The Child SA's KEYMAT
is prf+(SK_d, Ni | Nr), the initiator-to-responder keys first (2.17).

A failed AUTH fails the IKE SA (AUTHENTICATION_FAILED, 2.21.2); a Child SA that cannot be agreed
(no proposal, unacceptable selectors, a mode mismatch) leaves the IKE SA up and is reported as
``ChildSaFailed`` (2.21.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...crypto import child_sa_keys
from ...crypto.keys import IkeSaKeys, IkeSuite
from ...crypto.x509 import dn_from_der
from ...errors import LocalProtocolError, RemoteProtocolError
from ...packets.enums import ExchangeType, IdType, NotifyType, enum_name
from ...packets.message import Message
from ...packets.payloads import (
    AuthPayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)
from ..auth import proof
from ..auth.credentials import EapClient, EapServer
from ..auth.proof import AuthFailed
from ..child import ChildSa, ChildTrigger
from ..config import ANY_ID, identity
from ..events import ChildSaEstablished, ChildSaFailed, IkeSaEstablished
from ..negotiate import check_choice, child_algorithms, choose, offer
from ..selectors import from_cidrs, narrow, within
from ..state import Trigger

if TYPE_CHECKING:
    from ..connection import IkeConnection


def _negotiated(conn: IkeConnection) -> tuple[IkeSuite, IkeSaKeys]:
    """The suite and keys IKE_SA_INIT gave; the engine runs IKE_AUTH only once they exist."""
    neg = conn.neg
    if neg.suite is None or neg.keys is None:
        raise LocalProtocolError("IKE_AUTH before IKE_SA_INIT gave the IKE SA its keys")
    return neg.suite, neg.keys


def _own_id(conn: IkeConnection, cls: type[IdPayload]) -> IdPayload:
    id_type, data = identity(conn.config.local_id)
    return cls(id_type, data)


def check_peer_id(conn: IkeConnection, peer_id: Payload | None) -> IdPayload:
    """The peer's ID payload if it names the configured identity; AuthFailed otherwise."""
    if not isinstance(peer_id, IdPayload):
        raise AuthFailed("IKE_AUTH without the peer's ID payload")
    if conn.config.remote_id == ANY_ID:
        return peer_id  # any identity its authenticator proves (e.g. every user of an EAP server)
    if (peer_id.id_type, peer_id.data) != identity(conn.config.remote_id):
        raise AuthFailed(f"peer identity {peer_id.text()!r} is not the configured {conn.config.remote_id!r}")
    return peer_id


def _check_peer(conn: IkeConnection, inner: list[Payload], peer_id: Payload | None, auth: Payload | None, *,
                peer_is_initiator: bool) -> IdPayload:
    """The peer's ID payload, once it names the configured identity and its AUTH (and certificate) verifies;
    AuthFailed naming why not otherwise."""
    pid = check_peer_id(conn, peer_id)
    if not isinstance(auth, AuthPayload):
        raise AuthFailed("IKE_AUTH without the peer's AUTH payload")
    conn.neg.auth.peer_auth = proof.verify_peer(conn, inner, pid, auth, peer_is_initiator=peer_is_initiator)
    return pid


def _find(payloads: list[Payload], cls: type) -> Payload | None:
    return next((p for p in payloads if isinstance(p, cls)), None)


def _has_notify(payloads: list[Payload], notify_type: int) -> bool:
    return any(isinstance(p, NotifyPayload) and p.notify_type == notify_type for p in payloads)


def child_event(conn: IkeConnection, keys: tuple[IkeSuite, IkeSaKeys], chosen: Proposal, spi_in: bytes,
                spi_out: bytes, mode: str, tsi: list[TrafficSelector], tsr: list[TrafficSelector], *,
                nonce_i: bytes, nonce_r: bytes, we_initiated: bool, g_ir: bytes | None = None,
                rekeyed: int | None = None) -> ChildSaEstablished:
    """A Child SA's event with its KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) (RFC 7296 2.17).

    Ni, Nr and the key order (initiator to responder first) are those of the exchange that made it: IKE_AUTH,
    or a CREATE_CHILD_SA started by either side.  ``keys`` are the suite and keys of the IKE SA it ran on.
    """
    suite, ike_keys = keys
    algs = child_algorithms(chosen)
    e_size, i_size = algs.key_sizes
    km = child_sa_keys(suite.prf, ike_keys.sk_d, nonce_i, nonce_r, e_size, i_size, g_ir)
    if we_initiated:
        ein, iin, eout, iout = km.encr_r, km.integ_r, km.encr_i, km.integ_i
        local, remote = tsi, tsr
    else:
        ein, iin, eout, iout = km.encr_i, km.integ_i, km.encr_r, km.integ_r
        local, remote = tsr, tsi
    return ChildSaEstablished(chosen.protocol, int.from_bytes(spi_in, "big"), int.from_bytes(spi_out, "big"), mode,
                              algs.encr_id, algs.encr_key_bits, algs.integ_id, algs.esn, conn.use_natt,
                              ein, iin, eout, iout, tuple(local), tuple(remote), rekeyed, g_ir is not None)


def _child_event(conn: IkeConnection, chosen: Proposal, spi_in: bytes, spi_out: bytes, mode: str,
                 tsi: list[TrafficSelector], tsr: list[TrafficSelector]) -> ChildSaEstablished:
    neg = conn.neg
    return child_event(conn, _negotiated(conn), chosen, spi_in, spi_out, mode, tsi, tsr, nonce_i=neg.nonce_i,
                       nonce_r=neg.nonce_r, we_initiated=conn.initiator)


def add_child(conn: IkeConnection, event: ChildSaEstablished, now: float) -> ChildSa:
    """An agreed pair becomes an installed Child SA of the connection, and its event goes to the driver."""
    child = conn.children.get(event.spi_in) or ChildSa(event.protocol, event.spi_in.to_bytes(4, "big"), event.mode)
    child.spi_out, child.sa, child.installed_at = event.spi_out.to_bytes(4, "big"), event, now
    child.step(ChildTrigger.INSTALL)
    conn.children[child.key] = child
    from .. import lifecycle

    lifecycle.schedule_child(conn, child, now)
    conn.emit(event)
    return child


def established_event(conn: IkeConnection, auth: str = "") -> IkeSaEstablished:
    """The current IKE SA's event, with the keys for Wireshark's table."""
    s, keys = _negotiated(conn)
    return IkeSaEstablished(conn.spi_i, conn.spi_r, conn.ike.initiator, s.describe(), int(s.encr.id),
                            s.encr.key_bits, int(s.integ.id) if s.integ else None, keys, conn.peer_id, auth)


def _established(conn: IkeConnection, peer_id: IdPayload, now: float) -> IkeSaEstablished:
    conn.peer_id = dn_from_der(peer_id.data) if peer_id.id_type == IdType.ID_DER_ASN1_DN else peer_id.text()
    auth = conn.neg.auth.peer_auth
    conn.neg.forget_handshake()
    from .. import lifecycle

    lifecycle.schedule_ike(conn, now)
    return established_event(conn, auth)


def start(conn: IkeConnection, now: float) -> None:
    """The initiator's IKE_AUTH request: IDi, [CERT], [CERTREQ], IDr, AUTH (none for EAP), [USE_TRANSPORT_MODE],
    SAi2, TSi, TSr.  A local authentication failure (no signature scheme the peer takes) fails the SA here."""
    try:
        payloads = _first_request(conn)
    except AuthFailed as exc:
        conn.fail(str(exc), exc.notify)
        return
    conn.send_request(ExchangeType.IKE_AUTH, payloads, now)


def _first_request(conn: IkeConnection) -> list[Payload]:
    neg, cfg = conn.neg, conn.config
    local = cfg.authenticators[0]
    idi = _own_id(conn, IdiPayload)
    neg.auth.own_id = idi
    payloads: list[Payload] = [idi, *proof.cert_payloads(conn), *proof.certreq_payloads(conn)]
    if cfg.remote_id != ANY_ID:  # IDr is optional (RFC 7296 1.2): left out when any responder identity will do
        id_type, data = identity(cfg.remote_id)
        payloads.append(IdrPayload(id_type, data))
    if isinstance(local, EapClient):
        from . import ike_auth_eap

        payloads += ike_auth_eap.begin_client(conn, local)
    else:
        payloads.append(proof.auth_payload(conn, idi, for_initiator=True))
    neg.child_spi = child_spi(conn)
    neg.child_offer = offer(cfg.child_proposals, cfg.protocol, neg.child_spi, ke=False)
    if cfg.mode == "transport":
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [neg.child_offer, TsiPayload(from_cidrs(cfg.local_ts)), TsrPayload(from_cidrs(cfg.remote_ts))]
    return payloads


def child_spi(conn: IkeConnection) -> bytes:
    """A fresh inbound SPI for a Child SA, not one of our others."""
    while True:
        spi = conn.rng(4)
        n = int.from_bytes(spi, "big")
        if n >= 256 and n not in conn.children:  # 1-255 are reserved by IANA (RFC 4303 2.1)
            return spi


def on_request(conn: IkeConnection, msg: Message, now: float) -> None:
    """The responder: verify the initiator, answer with IDr and AUTH, and agree the Child SA if it can.

    An EAP server (``EapServer``) answers the first request with its own proof and the first EAP request
    instead, and every later one through ``ike_auth_eap``.  A failed check answers AUTHENTICATION_FAILED
    alone and fails the IKE SA."""
    inner = msg.all_payloads()
    remote = conn.config.authenticators[1]
    from . import ike_auth_eap

    try:
        if isinstance(remote, EapServer):
            ike_auth_eap.on_request(conn, msg, inner, remote, now)
            return
        idi = _check_peer(conn, inner, _find(inner, IdiPayload), _find(inner, AuthPayload), peer_is_initiator=True)
        proof.take_certreq(conn, inner)
        idr = _own_id(conn, IdrPayload)
        payloads = [idr, *proof.cert_payloads(conn), proof.auth_payload(conn, idr, for_initiator=False)]
    except AuthFailed:
        conn.notify_only_response(ExchangeType.IKE_AUTH, msg.message_id, NotifyType.AUTHENTICATION_FAILED)
        raise
    finish_responder(conn, msg.message_id, inner, idi, payloads, now)


def finish_responder(conn: IkeConnection, message_id: int, request: list[Payload], idi: IdPayload,
                     payloads: list[Payload], now: float) -> None:
    """The initiator is authenticated: answer with ``payloads`` (our proof) and the Child SA agreed from the
    ``request`` payloads (or the notify saying why not); the IKE SA is established."""
    cfg = conn.config
    conn.step(Trigger.RECV_AUTH_REQUEST)
    child: ChildSaEstablished | None = None
    failure: tuple[str, int] | None = None
    sa, tsi, tsr = _find(request, SaPayload), _find(request, TsiPayload), _find(request, TsrPayload)
    if not isinstance(sa, SaPayload) or not isinstance(tsi, TsiPayload) or not isinstance(tsr, TsrPayload):
        failure = ("IKE_AUTH request without SA, TSi and TSr: no Child SA", NotifyType.INVALID_SYNTAX)
    else:
        transport = _has_notify(request, NotifyType.USE_TRANSPORT_MODE)
        n_tsi = narrow(tsi.selectors, from_cidrs(cfg.remote_ts))
        n_tsr = narrow(tsr.selectors, from_cidrs(cfg.local_ts))
        try:
            spi = child_spi(conn)
            chosen = choose(sa, cfg.child_proposals, cfg.protocol, spi, ke=False)
        except RemoteProtocolError as exc:
            failure = (str(exc), exc.notify)
        else:
            peer_spi = next(p.spi for p in sa.proposals if p.num == chosen.num)
            if not n_tsi or not n_tsr:
                failure = (f"traffic selectors {_ts(tsi.selectors)} === {_ts(tsr.selectors)} are outside "
                           f"{', '.join(cfg.remote_ts)} === {', '.join(cfg.local_ts)}", NotifyType.TS_UNACCEPTABLE)
            elif transport != (cfg.mode == "transport"):
                failure = (f"the initiator asks for {'transport' if transport else 'tunnel'} mode, "
                           f"configured is {cfg.mode}", NotifyType.NO_PROPOSAL_CHOSEN)
            elif len(peer_spi) != 4:
                failure = (f"{cfg.protocol.upper()} proposal with a {len(peer_spi)}-byte SPI",
                           NotifyType.INVALID_SYNTAX)
            else:
                if transport:
                    payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
                payloads += [SaPayload([chosen]), TsiPayload(n_tsi), TsrPayload(n_tsr)]
                child = _child_event(conn, chosen, spi, peer_spi, cfg.mode, n_tsi, n_tsr)
    if failure is not None:
        payloads.append(NotifyPayload(failure[1]))
    conn.send_response(ExchangeType.IKE_AUTH, payloads, message_id)
    conn.emit(_established(conn, idi, now))
    if child is not None:
        add_child(conn, child, now)
    elif failure is not None:
        conn.emit(ChildSaFailed(failure[0], failure[1], remote=True))


def refusal(inner: list[Payload]) -> RemoteProtocolError:
    """The responder's refusal: its error notify (AUTHENTICATION_FAILED when it names none)."""
    err = next((p for p in inner if isinstance(p, NotifyPayload) and p.is_error), None)
    code = err.notify_type if err is not None else NotifyType.AUTHENTICATION_FAILED
    return RemoteProtocolError(f"the responder refused IKE_AUTH: {enum_name(NotifyType, code)}", code,
                               from_peer=True)


def on_response(conn: IkeConnection, msg: Message, now: float) -> None:
    """The initiator: verify the responder, then take the Child SA (or its refusal); EAP goes on in
    ``ike_auth_eap``."""
    inner = msg.all_payloads()
    try:
        if conn.neg.auth.eap_peer is not None:
            from . import ike_auth_eap

            ike_auth_eap.on_response(conn, inner, now)
            return
        auth = _find(inner, AuthPayload)
        if auth is None:
            raise refusal(inner)
        idr = _check_peer(conn, inner, _find(inner, IdrPayload), auth, peer_is_initiator=False)
    except AuthFailed:
        # RFC 7296 2.21.2: an error found by the initiator MAY go back in a separate INFORMATIONAL exchange; the
        # responder thinks the IKE SA is up, so tell it (the request goes out before the SA fails)
        conn.send_request(ExchangeType.INFORMATIONAL, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)], now)
        raise
    finish_initiator(conn, inner, idr, now)


def finish_initiator(conn: IkeConnection, inner: list[Payload], idr: IdPayload, now: float) -> None:
    """The responder is authenticated: the IKE SA is established; take the Child SA from ``inner``."""
    neg, cfg = conn.neg, conn.config
    conn.step(Trigger.RECV_AUTH_RESPONSE)
    conn.emit(_established(conn, idr, now))
    err = next((p for p in inner if isinstance(p, NotifyPayload) and p.is_error), None)
    sa, tsi, tsr = _find(inner, SaPayload), _find(inner, TsiPayload), _find(inner, TsrPayload)
    if err is not None or not isinstance(sa, SaPayload) or not isinstance(tsi, TsiPayload) \
            or not isinstance(tsr, TsrPayload):
        code = err.notify_type if err is not None else NotifyType.INVALID_SYNTAX
        conn.emit(ChildSaFailed(f"the responder set up no Child SA (notify {code})", code, remote=True))
        return
    if neg.child_offer is None:
        raise LocalProtocolError("an IKE_AUTH response without our Child SA offer")
    try:
        chosen = check_choice(sa, neg.child_offer, cfg.protocol)
    except RemoteProtocolError as exc:
        conn.emit(ChildSaFailed(str(exc), exc.notify))
        return
    transport = _has_notify(inner, NotifyType.USE_TRANSPORT_MODE)
    if transport != (cfg.mode == "transport"):
        conn.emit(ChildSaFailed(f"the responder agreed {'transport' if transport else 'tunnel'} mode, "
                                f"configured is {cfg.mode}", NotifyType.NO_PROPOSAL_CHOSEN))
        return
    # RFC 7296 2.23.1: in transport mode across a NAT the responder may answer with the addresses it sees (the
    # NAT's) in place of ours; the data plane then uses the addresses on the wire (strongSwan answers so)
    nat_transport = transport and (neg.nat_local or neg.nat_remote) and all(
        s.start_addr == s.end_addr for s in (*tsi.selectors, *tsr.selectors))
    if not nat_transport and (not within(tsi.selectors, from_cidrs(cfg.local_ts))
                              or not within(tsr.selectors, from_cidrs(cfg.remote_ts))):
        conn.emit(ChildSaFailed(f"the responder's selectors {_ts(tsi.selectors)} === {_ts(tsr.selectors)} are "
                                f"not inside what we proposed", NotifyType.TS_UNACCEPTABLE))
        return
    if len(chosen.spi) != 4:
        conn.emit(ChildSaFailed(f"the responder's Child SA proposal has a {len(chosen.spi)}-byte SPI",
                                NotifyType.INVALID_SYNTAX))
        return
    add_child(conn, _child_event(conn, chosen, neg.child_spi, chosen.spi, cfg.mode, tsi.selectors, tsr.selectors),
              now)


def _ts(selectors: list[TrafficSelector]) -> str:
    return ", ".join(str(s) for s in selectors) or "(none)"

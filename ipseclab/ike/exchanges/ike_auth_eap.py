"""IKE_AUTH with EAP (RFC 7296 2.16, RFC 5998): the round trips after the first request.

::

    Initiator                              Responder
    IDi, [CERTREQ,] [IDr,] [N(EAP_ONLY)],
      SA, TSi, TSr                   -->
                                     <--   IDr, [CERT,] AUTH, EAP(request)    (no CERT/AUTH: EAP-only)
    EAP(response)                    -->
                                     <--   EAP(request) ... EAP(Success)
    AUTH (MSK)                       -->
                                     <--   AUTH (MSK), SA, TSi, TSr

Both final AUTH payloads are method 2 keyed by the MSK, or by SK_pi / SK_pr for a method that makes none
(EAP-MD5), over the same SignedOctets as the first message's IDs.  The Child SA offer of the first request is
kept (``AuthState.request``) and answered in the last response.  Message ids and retransmissions are the
engine's as for any request; the IKE SA's state stays AUTH_SENT / INIT_DONE until the last AUTH verifies.

EAP-only (RFC 5998): the initiator asks with EAP_ONLY_AUTHENTICATION; a server that agrees (``EapServer.eap_only``
and a mutual method) sends no AUTH of its own, and the initiator takes that only once the mutual method has
proved the server (MSCHAPv2's authenticator response) and the MSK-based AUTH verifies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import DecodeError
from ...packets.enums import ExchangeType, NotifyType
from ...packets.message import Message
from ...packets.payloads import AuthPayload, EapPayload, IdiPayload, IdPayload, IdrPayload, NotifyPayload, Payload
from ..auth import proof
from ..auth.credentials import MUTUAL_EAP_METHODS, EapClient, EapServer
from ..auth.proof import AuthFailed
from ..eap import EapAuthenticator, EapPeer
from .ike_auth import (
    _find,
    _has_notify,
    _own_id,
    check_peer_id,
    finish_initiator,
    finish_responder,
    refusal,
)

if TYPE_CHECKING:
    from ..connection import IkeConnection


def begin_client(conn: IkeConnection, local: EapClient) -> list[Payload]:
    """The initiator's first request asks for EAP by leaving AUTH out (and maybe for EAP-only)."""
    state = conn.neg.auth
    state.eap_peer = EapPeer(local, (local.identity or conn.config.local_id).encode(), conn.rng)
    return [NotifyPayload(NotifyType.EAP_ONLY_AUTHENTICATION)] if local.eap_only else []


# --- the responder (EAP server) ------------------------------------------------------------------


def on_request(conn: IkeConnection, msg: Message, inner: list[Payload], remote: EapServer, now: float) -> None:
    """One IKE_AUTH request to the EAP server: the first, an EAP round, or the final AUTH."""
    state = conn.neg.auth
    server = state.eap_server
    if server is None:
        _first(conn, msg, inner, remote)
    elif server.outcome is None:
        _round(conn, msg, inner, server)
    else:
        _final(conn, msg, inner, server, now)


def _first(conn: IkeConnection, msg: Message, inner: list[Payload], remote: EapServer) -> None:
    state = conn.neg.auth
    idi = check_peer_id(conn, _find(inner, IdiPayload))
    if _find(inner, AuthPayload) is not None:
        raise AuthFailed(f"{idi.text()!r} sent an AUTH payload; the configured method is EAP (it must leave AUTH "
                         f"out, RFC 7296 2.16)")
    proof.take_certreq(conn, inner)
    local = conn.config.authenticators[0]
    eap_only = (_has_notify(inner, NotifyType.EAP_ONLY_AUTHENTICATION) and remote.eap_only
                and remote.method in MUTUAL_EAP_METHODS)
    if local is None and not eap_only:
        raise AuthFailed("we have no credentials of our own and the initiator did not ask for EAP-only "
                         "authentication (RFC 5998)")
    server = EapAuthenticator(remote, idi.data, conn.rng)
    idr = _own_id(conn, IdrPayload)
    payloads: list[Payload] = [idr]
    if not eap_only:
        payloads += [*proof.cert_payloads(conn), proof.auth_payload(conn, idr, for_initiator=False)]
    payloads.append(EapPayload(server.start()))
    # everything checked and built: from here on the request is taken
    state.peer_id, state.own_id, state.request = idi, idr, inner
    state.eap_server, state.eap_only = server, eap_only
    conn.send_response(ExchangeType.IKE_AUTH, payloads, msg.message_id)


def _round(conn: IkeConnection, msg: Message, inner: list[Payload], server: EapAuthenticator) -> None:
    eap = _find(inner, EapPayload)
    if not isinstance(eap, EapPayload):
        raise AuthFailed("an IKE_AUTH request without the EAP payload while EAP runs")
    try:
        reply = server.receive(eap.data)
    except DecodeError as exc:
        raise AuthFailed(f"EAP: {exc}") from None
    conn.send_response(ExchangeType.IKE_AUTH, [EapPayload(reply)], msg.message_id)
    if server.outcome is False:
        # the EAP-Failure went out in the response; the IKE SA is over (RFC 7296 2.16)
        conn.fail(f"EAP-{server.method} failed: {server.reason}", NotifyType.AUTHENTICATION_FAILED)


def _final(conn: IkeConnection, msg: Message, inner: list[Payload], server: EapAuthenticator, now: float) -> None:
    state = conn.neg.auth
    auth = _find(inner, AuthPayload)
    if not isinstance(auth, AuthPayload) or state.peer_id is None or state.own_id is None:
        raise AuthFailed("the IKE_AUTH request after EAP-Success has no AUTH payload")
    shared = proof.eap_secret(conn, server.msk, for_initiator=True)
    proof.verify_peer(conn, inner, state.peer_id, auth, peer_is_initiator=True, shared=shared)
    state.peer_auth = f"EAP-{server.method} as {state.peer_id.text()!r}" + (
        ", MSK-based AUTH" if server.msk else ", SK_pi-based AUTH (no MSK)")
    mine = proof.auth_payload(conn, state.own_id, for_initiator=False,
                              shared=proof.eap_secret(conn, server.msk, for_initiator=False))
    finish_responder(conn, msg.message_id, state.request, state.peer_id, [mine], now)


# --- the initiator (EAP peer) --------------------------------------------------------------------


def on_response(conn: IkeConnection, inner: list[Payload], now: float) -> None:
    """One IKE_AUTH response to the EAP peer: the responder's proof and first EAP request, an EAP round, or
    the final AUTH with the Child SA."""
    state = conn.neg.auth
    peer = state.eap_peer
    if peer is None:
        raise AuthFailed("no EAP session")
    auth, eap = _find(inner, AuthPayload), _find(inner, EapPayload)
    if auth is None and eap is None:
        raise refusal(inner)
    if state.peer_id is None:
        idr = check_peer_id(conn, _find(inner, IdrPayload))
        local = conn.config.authenticators[0]
        if isinstance(auth, AuthPayload):
            state.peer_auth = proof.verify_peer(conn, inner, idr, auth, peer_is_initiator=False)
        elif not (isinstance(local, EapClient) and local.eap_only):
            raise AuthFailed("the responder sent no AUTH payload, and we did not ask for EAP-only authentication")
        else:
            state.eap_only = True
        state.peer_id = idr
    if state.eap_done:
        _final_response(conn, inner, peer, auth, now)
        return
    if not isinstance(eap, EapPayload):
        raise AuthFailed("an IKE_AUTH response without the EAP payload while EAP runs")
    try:
        reply = peer.receive(eap.data)
    except DecodeError as exc:
        raise AuthFailed(f"EAP: {exc}") from None
    if reply is not None:
        conn.send_request(ExchangeType.IKE_AUTH, [EapPayload(reply)], now)
        return
    if state.eap_only and peer.method not in MUTUAL_EAP_METHODS:
        raise AuthFailed(f"EAP-only authentication with EAP-{peer.method}, which does not authenticate the "
                         f"server (RFC 5998 4)")
    if state.own_id is None:
        raise AuthFailed("no IDi was sent")
    state.eap_done = True
    mine = proof.auth_payload(conn, state.own_id, for_initiator=True,
                              shared=proof.eap_secret(conn, peer.msk, for_initiator=True))
    conn.send_request(ExchangeType.IKE_AUTH, [mine], now)


def _final_response(conn: IkeConnection, inner: list[Payload], peer: EapPeer, auth: Payload | None,
                    now: float) -> None:
    state = conn.neg.auth
    idr: IdPayload | None = state.peer_id
    if not isinstance(auth, AuthPayload) or idr is None:
        raise refusal(inner)
    try:
        proof.verify_peer(conn, inner, idr, auth, peer_is_initiator=False,
                          shared=proof.eap_secret(conn, peer.msk, for_initiator=False))
    except AuthFailed as exc:
        raise AuthFailed(f"{exc} (the responder's AUTH after EAP)") from None
    how = "EAP-only, " if state.eap_only else ""
    state.peer_auth = (f"{how}EAP-{peer.method} " + ("MSK" if peer.msk else "SK_pr") + "-based AUTH"
                       + (f"; first {state.peer_auth}" if state.peer_auth else ""))
    finish_initiator(conn, inner, idr, now)

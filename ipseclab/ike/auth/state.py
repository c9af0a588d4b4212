"""What one IKE SA's authentication has learnt so far: the peer's announcements in IKE_SA_INIT, and, across
the IKE_AUTH round trips of EAP, the identities, the Child SA offer and the EAP session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...packets.payloads import IdPayload, Payload
    from ..eap import EapAuthenticator, EapPeer


@dataclass(slots=True)
class AuthState:
    peer_hashes: frozenset[int] | None = None  # SIGNATURE_HASH_ALGORITHMS from the peer; None: none sent
    peer_cas: tuple[bytes, ...] = ()  # SHA-1 key hashes of the CAs the peer asked for (CERTREQ)
    own_id: IdPayload | None = None  # our ID as first sent: EAP's final AUTH signs it again (RFC 7296 2.16)
    peer_id: IdPayload | None = None
    request: list[Payload] = field(default_factory=list)  # responder: the first IKE_AUTH request (its Child SA)
    eap_peer: EapPeer | None = None
    eap_server: EapAuthenticator | None = None
    eap_only: bool = False  # RFC 5998: the responder sent no AUTH of its own in its first response
    eap_done: bool = False  # EAP-Success went by: the next IKE_AUTH messages carry the MSK-based AUTH
    peer_auth: str = ""  # how the peer proved itself, for IkeSaEstablished

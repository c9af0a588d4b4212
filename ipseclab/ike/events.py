"""What the engine tells its driver, as frozen dataclasses (``IkeConnection.next_event()``).

The engine never acts on the world itself: an established Child SA is an event carrying the
negotiated algorithms and keys, and the driver (the endpoint, a test) builds the ESP SAs from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto import IkeSaKeys
from ..packets.payloads import TrafficSelector


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every engine event."""


@dataclass(frozen=True, slots=True)
class IkeSaEstablished(Event):
    """Both AUTH payloads verified: the IKE SA is up.  ``keys`` feed Wireshark's ikev2_decryption_table."""

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    suite: str  # e.g. ENCR_AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256
    encr_id: int
    encr_key_bits: int
    integ_id: int | None
    keys: IkeSaKeys
    peer_id: str
    auth: str = ""  # how the peer proved peer_id: "pre-shared key", "DIGITAL_SIGNATURE ecdsa-sha256, certificate ..."


@dataclass(frozen=True, slots=True)
class IkeSaKeysDerived(Event):
    """IKE_SA_INIT is done and the IKE SA has its keys; nothing is authenticated yet.

    For key export only (Wireshark's ikev2_decryption_table), so that an IKE_AUTH that fails can still be read
    from a capture; ``IkeSaEstablished`` (with the same keys) follows once both sides have authenticated.
    """

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    encr_id: int
    encr_key_bits: int
    integ_id: int | None
    keys: IkeSaKeys


@dataclass(frozen=True, slots=True)
class ChildSaEstablished(Event):
    """A Child SA pair is agreed; ``*_in`` protect what we receive (our SPI), ``*_out`` what we send.

    Keys are KEYMAT slices (RFC 7296 2.17): the encryption key includes the AEAD salt.
    """

    protocol: int  # ProtocolId.ESP or ProtocolId.AH
    spi_in: int
    spi_out: int
    mode: str
    encr_id: int | None
    encr_key_bits: int
    integ_id: int | None
    esn: bool
    udp_encap: bool  # ESP in UDP 4500 (a NAT was detected)
    encr_key_in: bytes
    integ_key_in: bytes
    encr_key_out: bytes
    integ_key_out: bytes
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    rekeyed: int | None = None  # the inbound SPI of the pair this one replaces (REKEY_SA, RFC 7296 1.3.3)
    pfs: bool = False  # a fresh key exchange went into its KEYMAT (CREATE_CHILD_SA with KE, 2.17)
    # whether our outbound traffic goes on this pair from now on.  False for the pair a peer's rekey made (until
    # the old pair is deleted: ``ChildSaOutbound`` then) and for a redundant pair of a rekey collision.  Its
    # inbound SA takes traffic at once either way, and the old pair's inbound SA until its ``ChildSaDeleted``.
    outbound: bool = True


@dataclass(frozen=True, slots=True)
class NatDetected(Event):
    """The NAT_DETECTION notifies of IKE_SA_INIT do not match the addresses (RFC 7296 2.23).

    From now on IKE goes to UDP 4500 with the non-ESP marker (``IkeConnection.use_natt``) and the
    Child SA is UDP-encapsulated (RFC 3948); ``local`` means this side is behind the NAT (it sends
    keepalives), ``remote`` the peer.
    """

    local: bool
    remote: bool


@dataclass(frozen=True, slots=True)
class IkeSaFailed(Event):
    """The IKE SA could not be set up or was torn down by an error.

    ``notify`` is the IKEv2 error notify involved (sent or received), 0 when none; ``remote`` says
    whether the peer reported it (a notify we received) or we did (our check failed).
    """

    reason: str
    notify: int = 0
    remote: bool = False


@dataclass(frozen=True, slots=True)
class IkeSaDeleted(Event):
    """The IKE SA (and its Child SAs) is gone after an INFORMATIONAL exchange with a Delete payload."""

    by_peer: bool


@dataclass(frozen=True, slots=True)
class IkeSaRekeyed(Event):
    """A new IKE SA replaced the old one (RFC 7296 2.18); an ``IkeSaEstablished`` with its keys came just before.

    The Child SAs now belong to the new IKE SA; the old one is deleted by whoever started the rekey.
    """

    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes
    by_peer: bool


@dataclass(frozen=True, slots=True)
class IkeSaRekeyFailed(Event):
    """Our IKE rekey was refused or could not be taken; the old IKE SA stays in use."""

    reason: str
    notify: int = 0
    remote: bool = False


@dataclass(frozen=True, slots=True)
class DeadPeer(Event):
    """The peer answered none of the retransmissions of a request on an established IKE SA (RFC 7296 2.4).

    An ``IkeSaFailed`` follows: the IKE SA and its Child SAs are gone.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class DatagramDropped(Event):
    """A datagram the engine could not use; counted and dropped (never an exception out of receive).

    ``kind`` names the ``EngineCounters.dropped_*`` counter it went to (``malformed``, ``integrity``,
    ``unprotected``, ``unexpected``, ``unacceptable``, ``over_limit``).  ``notify`` is the error notify
    type of an IKE_SA_INIT response the engine does not act on (unauthenticated, RFC 7296 2.21.1: only
    if no valid answer comes); it lets an observer see the refusal arrive, 0 for any other drop.
    """

    reason: str
    kind: str = ""
    notify: int = 0


@dataclass(frozen=True, slots=True)
class ChildSaFailed(Event):
    """The Child SA could not be agreed; the IKE SA stays up (RFC 7296 2.21.3)."""

    reason: str
    notify: int = 0
    remote: bool = False


@dataclass(frozen=True, slots=True)
class ChildSaOutbound(Event):
    """A pair installed inbound-only (``ChildSaEstablished.outbound`` False) now carries our outbound traffic.

    Comes on the responder of a Child SA rekey when the pair it replaces is deleted (RFC 7296 2.8: the rekey's
    initiator deletes the old pair once it uses the new one), just before that pair's ``ChildSaDeleted``: the
    driver moves outbound traffic first, then drops the old SAs, so no packet finds neither.
    """

    spi_in: int
    spi_out: int
    replaced: int  # the inbound SPI of the pair it replaces


@dataclass(frozen=True, slots=True)
class OldIkeSaDeleted(Event):
    """An IKE SA replaced by a rekey (RFC 7296 2.18) is deleted: by us as the rekey's initiator, or by the peer
    (or, in a collision, the redundant new one by whoever made it).  The connection goes on under the new one."""

    spi_i: bytes
    spi_r: bytes
    by_peer: bool


@dataclass(frozen=True, slots=True)
class Reauthenticated(Event):
    """A make-before-break reauthentication is over (``ike.reauth``): the new IKE SA carries every Child SA and
    the old one is deleted."""

    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes


@dataclass(frozen=True, slots=True)
class ReauthenticationFailed(Event):
    """A reauthentication could not finish; the old IKE SA and its Child SAs stay as they were."""

    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaDeleted(Event):
    """A Child SA pair was deleted (by an INFORMATIONAL Delete: ours, after a rekey or on request, or the peer's)."""

    spi_in: int
    spi_out: int
    by_peer: bool

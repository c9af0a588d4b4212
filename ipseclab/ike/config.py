"""What one IKE SA is configured with: identities, how each side authenticates, proposals, selectors, mode.

The strings are the ones users of this field already write (swanctl.conf / ipsec.conf): proposals
like ``aes256gcm16-prfsha256-ecp256`` and ``aes128-sha256-esn``, selectors like ``10.1.0.0/16``.
Everything is checked when the config is made, so a typo fails at once with a message naming it,
not half-way through an exchange.  Authentication is ``psk`` for both directions, or an authenticator per
side (``local_auth``, ``remote_auth``: see ``ike.auth.credentials``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from ..crypto.proposals import parse_proposal
from ..crypto.x509 import dn_der
from ..errors import ConfigError
from ..packets.enums import IdType
from .auth.credentials import EapServer, LocalAuth, RemoteAuth, TrustedCas, resolve

ANY_ID = "%any"  # as remote_id: take whatever identity the peer's authenticator proves (strongSwan's %any)


@lru_cache(maxsize=1024)
def identity(text: str) -> tuple[int, bytes]:
    """(ID type, data) for an identity string: an IP address, a DN (``C=CH, O=Example, CN=moon``, most
    significant first as strongSwan writes it), ``user@fqdn``, or an FQDN (computed once each)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return (IdType.ID_IPV4_ADDR if addr.version == 4 else IdType.ID_IPV6_ADDR), addr.packed
    if not text:
        raise ConfigError("an empty identity: use an address, a name (moon.example.org) or user@name")
    if "=" in text:
        return IdType.ID_DER_ASN1_DN, dn_der(text)
    return (IdType.ID_RFC822_ADDR if "@" in text else IdType.ID_FQDN), text.encode()


@lru_cache(maxsize=1024)
def _network(text: str) -> None:
    """Raise ValueError unless ``text`` is a prefix (checked once per string: configs are made per connection)."""
    ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class IkeConfig:
    """One side's configuration of an IKE SA and its first Child SA (both roles use the same shape).

    ``local_ts``/``remote_ts`` are this side's view: the initiator proposes them as TSi/TSr, the
    responder narrows the initiator's offer to them (RFC 7296 2.9).  ``retransmit_*`` follow
    strongSwan's shape: timeout * base**n for n = 0..tries-1, then the exchange has failed.
    """

    local_id: str
    remote_id: str
    psk: bytes = b""  # the shared key of both directions, unless local_auth / remote_auth say otherwise
    # how we authenticate and how the peer must (ike.auth.credentials): Psk, PubkeyAuth, EapClient / Psk,
    # TrustedCas, EapServer; None: the ``psk``
    local_auth: LocalAuth | None = None
    remote_auth: RemoteAuth | None = None
    ike_proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-ecp256",)
    esp_proposals: tuple[str, ...] = ("aes256gcm16-noesn",)
    ah_proposals: tuple[str, ...] = ("sha256",)
    protocol: str = "esp"  # the first Child SA's: "esp" (esp_proposals) or "ah" (ah_proposals)
    local_ts: tuple[str, ...] = ("0.0.0.0/0",)
    remote_ts: tuple[str, ...] = ("0.0.0.0/0",)
    # further (local_ts, remote_ts) pairs for additional Child SAs: ours to ask for (``create_child``), and a
    # peer's CREATE_CHILD_SA outside local_ts/remote_ts is narrowed to the first pair it fits (strongSwan's
    # children of one connection, Libreswan's conns sharing an IKE SA); IKE_AUTH's Child SA never uses them
    extra_ts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    mode: str = "tunnel"
    # NAT detection (RFC 7296 2.23): our address and port as we send from them, and the peer's as we send
    # to it (a responder takes the source of the request instead).  None: no NAT_DETECTION notifies.
    local_endpoint: tuple[str, int] | None = None
    remote_endpoint: tuple[str, int] | None = None
    retransmit_timeout: float = 1.0
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    fragmentation: bool = True  # RFC 7383: offered in IKE_SA_INIT, used when the peer offers it too
    fragment_size: int = 1280  # largest IKE datagram before fragmenting (strongSwan's default)
    # lifetimes in seconds, strongSwan's shape (None: never): rekey at *_rekey_time minus up to rekey_jitter,
    # delete at *_life_time.  A KE transform in esp/ah proposals means PFS for CREATE_CHILD_SA.
    ike_rekey_time: float | None = None
    ike_life_time: float | None = None
    child_rekey_time: float | None = None
    child_life_time: float | None = None
    rekey_jitter: float = 0.0
    # Child SA volume limits (strongSwan's rekey_bytes/life_bytes, rekey_packets/life_packets), from the data
    # plane's counters as the driver reports them (``IkeConnection.child_usage``); None: no limit
    child_rekey_bytes: int | None = None
    child_life_bytes: int | None = None
    child_rekey_packets: int | None = None
    child_life_packets: int | None = None
    dpd_delay: float | None = None  # an empty INFORMATIONAL after this long without a word from the peer
    half_open_timeout: float | None = None  # a responder gives up an IKE SA whose IKE_AUTH has not come by then
    keepalive_interval: float = 20.0  # NAT keepalives while behind a NAT (RFC 3948 4), strongSwan's default
    # RFC 7296 2.3: how many of the peer's requests we take at once, announced with SET_WINDOW_SIZE in IKE_AUTH
    # when over 1 (the peer's announcement sets how many of ours go out at once; 1 until it does)
    window_size: int = 1

    @property
    def authenticators(self) -> tuple[LocalAuth | None, RemoteAuth]:
        """(ours, the peer's): the configured authenticators, the PSK standing in for one not given."""
        return resolve(self.local_auth, self.remote_auth, self.psk)

    @property
    def child_proposals(self) -> tuple[str, ...]:
        return self.ah_proposals if self.protocol == "ah" else self.esp_proposals

    def __post_init__(self) -> None:
        resolve(self.local_auth, self.remote_auth, self.psk)
        identity(self.local_id)
        if self.remote_id != ANY_ID:
            identity(self.remote_id)
        elif not isinstance(self.remote_auth, TrustedCas | EapServer):
            raise ConfigError("remote_id '%any' needs a remote_auth that proves an identity (TrustedCas or "
                              "EapServer): with a shared key anyone holding it could claim any ID")
        if not self.ike_proposals or not self.esp_proposals:
            raise ConfigError("at least one IKE and one ESP proposal are needed")
        for p in self.ike_proposals:
            parse_proposal(p, "ike")
        for p in self.esp_proposals:
            parse_proposal(p, "esp")
        for p in self.ah_proposals:
            parse_proposal(p, "ah")
        if self.protocol not in ("esp", "ah"):
            raise ConfigError(f"protocol {self.protocol!r}: use 'esp' or 'ah'")
        if self.mode not in ("tunnel", "transport"):
            raise ConfigError(f"mode {self.mode!r}: use 'tunnel' or 'transport'")
        for ts in (*self.local_ts, *self.remote_ts, *(t for pair in self.extra_ts for side in pair for t in side)):
            try:
                _network(ts)
            except ValueError as exc:
                raise ConfigError(f"traffic selector {ts!r}: {exc}") from None
        if not 576 <= self.fragment_size <= 65535:
            raise ConfigError(f"fragment_size {self.fragment_size}: use 576..65535 bytes (RFC 7383 2.5.1)")
        for name in ("ike_rekey_time", "ike_life_time", "child_rekey_time", "child_life_time", "dpd_delay",
                     "half_open_timeout", "child_rekey_bytes", "child_life_bytes", "child_rekey_packets",
                     "child_life_packets"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} {value}: use a positive number of seconds, or None for never")
        for soft, hard in (("ike_rekey_time", "ike_life_time"), ("child_rekey_time", "child_life_time"),
                           ("child_rekey_bytes", "child_life_bytes"),
                           ("child_rekey_packets", "child_life_packets")):
            s, h = getattr(self, soft), getattr(self, hard)
            if s is not None and h is not None and s >= h:
                raise ConfigError(f"{soft} {s} is not before {hard} {h}: the rekey must come first")
        if not 1 <= self.window_size <= 64:
            raise ConfigError(f"window_size {self.window_size}: use 1 to 64 requests (RFC 7296 2.3)")
        if self.rekey_jitter < 0 or self.keepalive_interval <= 0:
            raise ConfigError("rekey_jitter must be >= 0 and keepalive_interval > 0")
        if self.retransmit_timeout <= 0 or self.retransmit_tries < 1 or self.retransmit_base < 1:
            raise ConfigError("retransmit_timeout must be > 0, retransmit_tries >= 1 and retransmit_base >= 1")

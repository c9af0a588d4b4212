"""How each side authenticates: one authenticator for ourselves, one for what we accept from the peer.

``IkeConfig.local_auth`` says how we prove who we are, ``IkeConfig.remote_auth`` how the peer must (strongSwan's
``local {}`` and ``remote {}`` sections); the two are independent, so a certificate responder can take an EAP
initiator, or a PSK initiator a certificate responder.

========================  ==========================================  ========================================
authenticator             as ``local_auth``                           as ``remote_auth``
========================  ==========================================  ========================================
``Psk(secret)``           AUTH method 2 with the secret               the peer's method-2 AUTH with the secret
``PubkeyAuth(cert, key)`` CERT payloads and a signature AUTH           (not here: see ``TrustedCas``)
``TrustedCas(cas)``       (not here)                                  a signature AUTH by a certificate that
                                                                      chains to one of ``cas`` and names the
                                                                      peer's ID
``EapClient(...)``        initiator only: EAP (RFC 7296 2.16)         (not here)
``EapServer(...)``        (not here)                                  responder only: the initiator does EAP
========================  ==========================================  ========================================

Every mistake that can be seen without the peer is refused when the config is made (``ConfigError``, one line):
no credentials, a private key that is not the certificate's, a local certificate outside its validity, an EAP
method we do not implement.  Certificate validity is wall-clock time, which the engine's ``now`` (any monotonic
float) cannot give: each certificate authenticator reads ``clock`` (by default ``crypto.x509.utc_now``), which a
test replaces with a fixed time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from ...crypto.auth import SIGNATURE_SCHEMES, HashAlgorithm, PrivateKey
from ...crypto.x509 import Certificate, check_local, utc_now
from ...errors import ConfigError

EAP_METHODS = ("mschapv2", "md5")  # what ike.eap implements, in our order of preference
MUTUAL_EAP_METHODS = frozenset({"mschapv2"})  # those that authenticate the server too (RFC 5998 4)
DEFAULT_HASHES = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY)


@dataclass(frozen=True, slots=True)
class Psk:
    """A pre-shared key (AUTH method 2, RFC 7296 2.15), on either side."""

    secret: bytes

    def __post_init__(self) -> None:
        if not self.secret:
            raise ConfigError("the pre-shared key is empty: IKEv2 PSK authentication needs a secret")


@dataclass(frozen=True, slots=True)
class PubkeyAuth:
    """Our certificate, its private key and the intermediates to send with it (CERT payloads, encoding 4).

    ``method``: ``"signature"`` is RFC 7427 Digital Signature (14) when the peer announced
    SIGNATURE_HASH_ALGORITHMS, else the classic method of the key (RSA: 1, ECDSA: 9/10/11, as strongSwan falls
    back); ``"classic"`` always the classic one.  ``scheme`` fixes the RFC 7427 scheme (``rsa-pss-sha256``,
    ``ecdsa-sha384``...); by default the strongest the peer announced for our key.  ``force_scheme`` is a
    tester's knob: sign with ``scheme`` even if the peer did not announce its hash.
    """

    certificate: Certificate
    private_key: PrivateKey
    intermediates: tuple[Certificate, ...] = ()
    method: str = "signature"
    scheme: str | None = None
    send_cert: bool = True
    force_scheme: bool = False
    clock: Callable[[], dt.datetime] = field(default=utc_now, compare=False)

    def __post_init__(self) -> None:
        if self.method not in ("signature", "classic"):
            raise ConfigError(f"PubkeyAuth method {self.method!r}: use 'signature' (RFC 7427) or 'classic'")
        if self.scheme is not None and self.scheme not in SIGNATURE_SCHEMES:
            raise ConfigError(f"signature scheme {self.scheme!r}: use one of {', '.join(sorted(SIGNATURE_SCHEMES))}")
        check_local(self.certificate, self.private_key, self.clock())
        if self.scheme is not None:
            from .proof import key_kind

            kind, want = key_kind(self.private_key), SIGNATURE_SCHEMES[self.scheme].key_type
            if want.split("-")[0] != kind:
                raise ConfigError(f"signature scheme {self.scheme} does not fit the certificate's {kind} key")


@dataclass(frozen=True, slots=True)
class TrustedCas:
    """The peer proves itself with a certificate chaining to one of ``cas`` (RFC 7296 3.6-3.8, RFC 4945).

    ``hashes`` are what we announce in SIGNATURE_HASH_ALGORITHMS and accept in a Digital Signature AUTH;
    ``classic`` accepts methods 1 and 9-11 too.  ``certificates``: the peer's own certificate(s), for a peer
    that sends no CERT payload.  ``certreq``: send CERTREQ with the CAs' key hashes.
    """

    cas: tuple[Certificate, ...]
    hashes: tuple[HashAlgorithm, ...] = DEFAULT_HASHES
    classic: bool = True
    certificates: tuple[Certificate, ...] = ()
    certreq: bool = True
    clock: Callable[[], dt.datetime] = field(default=utc_now, compare=False)

    def __post_init__(self) -> None:
        if not self.cas:
            raise ConfigError("TrustedCas without a CA certificate: give the CA the peer's certificate chains to")
        if not self.hashes:
            raise ConfigError("TrustedCas with no hash algorithm: the peer could not sign anything we take")


@dataclass(frozen=True, slots=True)
class EapClient:
    """The initiator authenticates with EAP (RFC 7296 2.16) as ``identity`` (default: our IKE ID) and
    ``password``; ``methods`` are the ones we agree to (a server proposing another gets a Nak).
    ``eap_only`` sends EAP_ONLY_AUTHENTICATION (RFC 5998): the responder may then skip its own AUTH, which we
    take only once a mutual method (MSCHAPv2) succeeded."""

    password: str
    identity: str | None = None
    methods: tuple[str, ...] = EAP_METHODS
    eap_only: bool = False

    def __post_init__(self) -> None:
        if not self.password:
            raise ConfigError("EapClient with an empty password")
        _check_methods(self.methods)


@dataclass(frozen=True, slots=True)
class EapServer:
    """The responder runs EAP with the initiator (RFC 7296 2.16): ``users`` maps EAP identities to passwords,
    ``method`` is the one we start.  ``eap_only``: honour EAP_ONLY_AUTHENTICATION (RFC 5998) when the method is
    mutual, sending no AUTH of our own in the first response."""

    users: tuple[tuple[str, str], ...]
    method: str = "mschapv2"
    eap_only: bool = True

    def __post_init__(self) -> None:
        if not self.users:
            raise ConfigError("EapServer without users: give users=(('name', 'password'),)")
        _check_methods((self.method,))

    def password(self, name: str) -> str | None:
        return next((p for u, p in self.users if u == name), None)


def _check_methods(methods: tuple[str, ...]) -> None:
    if not methods:
        raise ConfigError("no EAP method: use one of " + ", ".join(EAP_METHODS))
    for m in methods:
        if m not in EAP_METHODS:
            raise ConfigError(f"EAP method {m!r}: ipseclab implements {', '.join(EAP_METHODS)}")


LocalAuth = Psk | PubkeyAuth | EapClient
RemoteAuth = Psk | TrustedCas | EapServer


def resolve(local: LocalAuth | None, remote: RemoteAuth | None, psk: bytes) -> tuple[LocalAuth | None, RemoteAuth]:
    """Both authenticators of a config, ``psk`` filling either one left out; ConfigError names what is missing.

    ``local`` may stay None only for an EAP server taking EAP-only authentication (RFC 5998).
    """
    if local is not None and not isinstance(local, Psk | PubkeyAuth | EapClient):
        raise ConfigError(f"local_auth {type(local).__name__}: use Psk, PubkeyAuth or EapClient")
    if remote is not None and not isinstance(remote, Psk | TrustedCas | EapServer):
        raise ConfigError(f"remote_auth {type(remote).__name__}: use Psk, TrustedCas or EapServer")
    if local is None and remote is None and not psk:
        raise ConfigError("the pre-shared key is empty and no authenticator is given: give psk=..., or "
                          "local_auth= and remote_auth= (ike.auth)")
    if local is None and psk:
        local = Psk(psk)
    if remote is None and psk:
        remote = Psk(psk)
    if remote is None:
        raise ConfigError("no credentials to check the peer with: give psk=... or remote_auth=(Psk, TrustedCas or "
                          "EapServer)")
    if local is None and not (isinstance(remote, EapServer) and remote.eap_only
                              and remote.method in MUTUAL_EAP_METHODS):
        raise ConfigError("no credentials to authenticate ourselves with: give psk=... or local_auth=(Psk, "
                          "PubkeyAuth or EapClient)")
    if isinstance(local, EapClient) and isinstance(remote, EapServer):
        raise ConfigError("EapClient and EapServer on one side: the initiator is the EAP client, the responder "
                          "the server")
    return local, remote


def check_role(local: LocalAuth | None, remote: RemoteAuth, initiator: bool) -> None:
    """ConfigError if an authenticator cannot serve this role (RFC 7296 2.16: only the initiator does EAP)."""
    if isinstance(local, EapClient) and not initiator:
        raise ConfigError("local_auth EapClient on a responder: only the initiator authenticates with EAP")
    if isinstance(remote, EapServer) and initiator:
        raise ConfigError("remote_auth EapServer on an initiator: only the responder can be the EAP server")

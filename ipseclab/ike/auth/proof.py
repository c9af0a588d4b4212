"""The payloads that prove an identity (AUTH, CERT, CERTREQ, SIGNATURE_HASH_ALGORITHMS) and their checks.

Building: ``auth_payload`` signs (or MACs) our SignedOctets (RFC 7296 2.15) with the configured authenticator,
choosing the signature scheme from what the peer announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 4): the
configured scheme, else the strongest the peer takes for our key; with no announcement the key's classic method
(RSA 1, ECDSA 9-11, RFC 4754), as strongSwan falls back.

Checking: ``verify_peer`` takes the peer's ID, AUTH and CERT payloads and either says how the peer proved itself
or raises ``AuthFailed`` naming why not: the method is not the configured one, the certificate is expired, does
not chain to a configured CA, does not name the peer's ID, the signature's hash was not announced, the
signature or MAC does not verify.  Every refusal carries AUTHENTICATION_FAILED (RFC 7296 2.21.2).
"""

from __future__ import annotations

import hmac
import struct
from typing import TYPE_CHECKING

from ...crypto import psk_auth, signed_octets
from ...crypto.auth import (
    SIGNATURE_SCHEMES,
    HashAlgorithm,
    PrivateKey,
    hash_algorithm_of,
    scheme_of,
    sign_auth,
    verify_auth,
)
from ...crypto.registry import AuthMethod
from ...crypto.x509 import (
    Certificate,
    der,
    load_certificate,
    names_identity,
    public_key,
    sans_text,
    spki_sha1,
    subject_text,
    validate_chain,
)
from ...errors import CertificateError, IntegrityError, LocalProtocolError, ProtocolError, UnsupportedTransformError
from ...packets.enums import CertEncoding, NotifyType, enum_name
from ...packets.message import Message
from ...packets.payloads import AuthPayload, CertPayload, CertReqPayload, IdPayload, NotifyPayload, Payload
from .credentials import EapServer, Psk, PubkeyAuth, TrustedCas

if TYPE_CHECKING:
    from ..connection import IkeConnection

_FAILED = NotifyType.AUTHENTICATION_FAILED
_CLASSIC_ECDSA = {"secp256r1": AuthMethod.ECDSA_SHA256_P256, "secp384r1": AuthMethod.ECDSA_SHA384_P384,
                  "secp521r1": AuthMethod.ECDSA_SHA512_P521}
_CURVE_HASH = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}


class AuthFailed(ProtocolError):
    """Authentication failed, ours or the peer's (AUTHENTICATION_FAILED); the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _FAILED)


def key_kind(key: PrivateKey) -> str:
    """``rsa``, ``ecdsa``, ``ed25519`` or ``ed448``: the key type half of a scheme's name."""
    name = type(key).__name__.lower()
    for kind in ("rsa", "ed25519", "ed448"):
        if kind in name:
            return kind
    return "ecdsa"


def _uses_certificates(conn: IkeConnection) -> bool:
    local, remote = conn.config.authenticators
    return isinstance(local, PubkeyAuth) or isinstance(remote, TrustedCas)


def _announced(conn: IkeConnection) -> tuple[HashAlgorithm, ...]:
    remote = conn.config.authenticators[1]
    if isinstance(remote, TrustedCas):
        return remote.hashes
    return tuple(HashAlgorithm)[1:]  # we only sign: announce what we can verify anyway (not SHA-1)


# --- IKE_SA_INIT -------------------------------------------------------------------------------


def init_payloads(conn: IkeConnection, *, response: bool) -> list[Payload]:
    """SIGNATURE_HASH_ALGORITHMS (RFC 7427 4) when certificates are involved, and in a response the CERTREQ
    naming our CAs (RFC 7296 1.2 shows it in the IKE_SA_INIT response)."""
    if not _uses_certificates(conn):
        return []
    out: list[Payload] = []
    if response:
        out += certreq_payloads(conn)
    hashes = b"".join(struct.pack("!H", h) for h in _announced(conn))
    out.append(NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, data=hashes))
    return out


def take_init(conn: IkeConnection, msg: Message) -> None:
    """Keep what the peer's IKE_SA_INIT message announced: its hash algorithms and the CAs it asked for."""
    state = conn.neg.auth
    for p in msg.payloads:
        if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS:
            n = len(p.data) // 2
            state.peer_hashes = frozenset(struct.unpack(f"!{n}H", p.data[: 2 * n]))
    take_certreq(conn, msg.payloads)


def take_certreq(conn: IkeConnection, payloads: list[Payload]) -> None:
    state = conn.neg.auth
    for p in payloads:
        if isinstance(p, CertReqPayload) and p.encoding == CertEncoding.X509_SIGNATURE:
            state.peer_cas += tuple(p.data[i : i + 20] for i in range(0, len(p.data) - 19, 20))


# --- what we send ------------------------------------------------------------------------------


def certreq_payloads(conn: IkeConnection) -> list[Payload]:
    remote = conn.config.authenticators[1]
    if not isinstance(remote, TrustedCas) or not remote.certreq:
        return []
    return [CertReqPayload(CertEncoding.X509_SIGNATURE, b"".join(spki_sha1(ca) for ca in remote.cas))]


def cert_payloads(conn: IkeConnection) -> list[Payload]:
    """Our certificate, then its intermediates (RFC 7296 3.6: the first CERT holds the signing key)."""
    local = conn.config.authenticators[0]
    if not isinstance(local, PubkeyAuth) or not local.send_cert:
        return []
    return [CertPayload(CertEncoding.X509_SIGNATURE, der(c)) for c in (local.certificate, *local.intermediates)]


def octets(conn: IkeConnection, id_payload: IdPayload, *, for_initiator: bool) -> bytes:
    """InitiatorSignedOctets or ResponderSignedOctets for ``id_payload`` (RFC 7296 2.15)."""
    neg = conn.neg
    if neg.suite is None or neg.keys is None:
        raise LocalProtocolError("IKE_AUTH before IKE_SA_INIT gave the IKE SA its keys")
    prf, keys = neg.suite.prf, neg.keys
    if for_initiator:
        return signed_octets(prf, neg.init_request, neg.nonce_r, keys.sk_pi, id_payload.body())
    return signed_octets(prf, neg.init_response, neg.nonce_i, keys.sk_pr, id_payload.body())


def eap_secret(conn: IkeConnection, msk: bytes, *, for_initiator: bool) -> bytes:
    """The shared key of the AUTH after EAP: the MSK, or SK_pi / SK_pr for a method without one (RFC 7296
    2.16)."""
    keys = conn.neg.keys
    if msk or keys is None:
        return msk
    return keys.sk_pi if for_initiator else keys.sk_pr


def auth_payload(conn: IkeConnection, id_payload: IdPayload, *, for_initiator: bool,
                 shared: bytes | None = None) -> AuthPayload:
    """Our AUTH: with ``shared`` (the EAP secret) or a Psk a method-2 MAC, with a PubkeyAuth a signature."""
    data = octets(conn, id_payload, for_initiator=for_initiator)
    suite = conn.neg.suite
    if suite is None:
        raise LocalProtocolError("IKE_AUTH before IKE_SA_INIT")
    local = conn.config.authenticators[0]
    if shared is not None:
        return AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth(suite.prf, shared, data))
    if isinstance(local, Psk):
        return AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth(suite.prf, local.secret, data))
    if isinstance(local, PubkeyAuth):
        method, scheme = choose_signature(local, conn.neg.auth.peer_hashes)
        return AuthPayload(method, sign_auth(method, local.private_key, data, scheme))
    raise LocalProtocolError(f"no AUTH can be made with {type(local).__name__}")


def choose_signature(local: PubkeyAuth, peer_hashes: frozenset[int] | None) -> tuple[AuthMethod, str | None]:
    """(method, RFC 7427 scheme or None) for our key, given what the peer announced; AuthFailed if nothing fits."""
    key = local.private_key
    kind = key_kind(key)
    curve = getattr(getattr(key, "curve", None), "name", "")
    classic = local.method == "classic" or (peer_hashes is None and kind in ("rsa", "ecdsa")
                                            and not local.force_scheme)
    if classic:
        if kind == "rsa":
            return AuthMethod.RSA_SIG, None
        if kind == "ecdsa" and curve in _CLASSIC_ECDSA:
            return _CLASSIC_ECDSA[curve], None
        if local.method == "classic":
            raise AuthFailed(f"a {kind} key has no classic IKEv2 signature method: use method 'signature'")
    if local.scheme is not None:
        if local.force_scheme or peer_hashes is None or hash_algorithm_of(local.scheme) in peer_hashes:
            return AuthMethod.DIGITAL_SIGNATURE, local.scheme
        raise AuthFailed(f"the peer did not announce {hash_algorithm_of(local.scheme).name} in "
                         f"SIGNATURE_HASH_ALGORITHMS ({_names(peer_hashes)}): cannot sign with the configured "
                         f"{local.scheme}")
    for scheme in _candidates(kind, curve):
        if peer_hashes is None or hash_algorithm_of(scheme) in peer_hashes:
            return AuthMethod.DIGITAL_SIGNATURE, scheme
    raise AuthFailed(f"the peer's SIGNATURE_HASH_ALGORITHMS ({_names(peer_hashes)}) has no hash a {kind} key "
                     f"can sign with")


def _candidates(kind: str, curve: str) -> list[str]:
    if kind in ("ed25519", "ed448"):
        return [kind]
    hashes = ["sha256", "sha384", "sha512"]
    if kind == "ecdsa" and curve in _CURVE_HASH:  # the hash that matches the curve first (RFC 5480 4)
        hashes.remove(_CURVE_HASH[curve])
        hashes.insert(0, _CURVE_HASH[curve])
    return [f"{kind}-{h}" for h in hashes]


def _names(hashes: frozenset[int] | tuple[int, ...] | None) -> str:
    if not hashes:
        return "none"
    return ", ".join(enum_name(HashAlgorithm, h) for h in sorted(hashes))


# --- what we check -----------------------------------------------------------------------------


def verify_peer(conn: IkeConnection, payloads: list[Payload], peer_id: IdPayload, auth: AuthPayload, *,
                peer_is_initiator: bool, shared: bytes | None = None) -> str:
    """How the peer proved ``peer_id`` (for the event), or AuthFailed naming why it did not."""
    data = octets(conn, peer_id, for_initiator=peer_is_initiator)
    suite = conn.neg.suite
    if suite is None:
        raise LocalProtocolError("IKE_AUTH before IKE_SA_INIT")
    remote = conn.config.authenticators[1]
    who = peer_id.text()
    if shared is not None or isinstance(remote, Psk | EapServer):
        if auth.method != AuthMethod.SHARED_KEY_MIC:
            raise AuthFailed(f"{who} authenticates with {enum_name(AuthMethod, auth.method)}; the configured "
                             f"method is a shared key (2)")
        secret = shared if shared is not None else remote.secret if isinstance(remote, Psk) else b""
        if not hmac.compare_digest(psk_auth(suite.prf, secret, data), auth.data):
            what = "the EAP MSK" if shared else "wrong pre-shared key?"
            raise AuthFailed(f"AUTH payload of {who!r} does not verify: {what}")
        return "EAP MSK" if shared else "pre-shared key"
    if auth.method == AuthMethod.SHARED_KEY_MIC:
        raise AuthFailed(f"{who} authenticates with a pre-shared key; the configured method is a certificate")
    leaf, chain = _peer_certificate(remote, payloads, peer_id)
    if not names_identity(leaf, peer_id.id_type, peer_id.data):
        raise AuthFailed(f"certificate of {subject_text(leaf)} ({sans_text(leaf)}) does not name the peer's ID "
                         f"{who!r}")
    try:
        path = validate_chain(leaf, chain, remote.cas, remote.clock())
    except CertificateError as exc:
        raise AuthFailed(str(exc)) from None
    scheme = _check_method(remote, auth)
    try:
        used = verify_auth(AuthMethod(auth.method), public_key(leaf), data, auth.data)
    except (IntegrityError, UnsupportedTransformError, ValueError) as exc:
        raise AuthFailed(f"AUTH of {who!r} ({scheme or enum_name(AuthMethod, auth.method)}) does not verify with "
                         f"the certificate of {subject_text(leaf)}: {exc}") from None
    return (f"{enum_name(AuthMethod, auth.method)} {used}, certificate {subject_text(leaf)} via "
            f"{' <- '.join(subject_text(c) for c in path[1:])}")


def _check_method(remote: TrustedCas, auth: AuthPayload) -> str | None:
    if auth.method == AuthMethod.DIGITAL_SIGNATURE:
        scheme = scheme_of(auth.data)
        if scheme is None:
            raise AuthFailed(f"Digital Signature AUTH with an unknown AlgorithmIdentifier "
                             f"{auth.data[1 : 1 + (auth.data[0] if auth.data else 0)].hex()}")
        h = hash_algorithm_of(scheme)
        if h not in remote.hashes:
            raise AuthFailed(f"the peer signed with {scheme} ({h.name}), which we did not announce in "
                             f"SIGNATURE_HASH_ALGORITHMS ({_names(remote.hashes)})")
        return scheme
    if auth.method in (AuthMethod.RSA_SIG, *_CLASSIC_ECDSA.values()):
        if not remote.classic:
            raise AuthFailed(f"the peer uses the classic method {enum_name(AuthMethod, auth.method)}; only "
                             f"Digital Signature (RFC 7427) is accepted")
        return None
    raise AuthFailed(f"AUTH method {enum_name(AuthMethod, auth.method)} is not a signature method we verify")


def _peer_certificate(remote: TrustedCas, payloads: list[Payload],
                      peer_id: IdPayload) -> tuple[Certificate, list[Certificate]]:
    """The peer's end-entity certificate (its first X.509 CERT payload, RFC 7296 3.6) and the intermediates
    after it; a configured certificate naming the ID when the peer sent none."""
    certs: list[Certificate] = []
    skipped: list[str] = []
    for p in payloads:
        if isinstance(p, CertPayload):
            if p.encoding != CertEncoding.X509_SIGNATURE:
                skipped.append(enum_name(CertEncoding, p.encoding))  # hash-and-URL: not fetched (no I/O here)
                continue
            try:
                certs.append(load_certificate(p.data))
            except CertificateError as exc:
                raise AuthFailed(f"CERT payload: {exc}") from None
    if certs:
        return certs[0], certs[1:]
    for c in remote.certificates:
        if names_identity(c, peer_id.id_type, peer_id.data):
            return c, []
    what = f"only CERT payloads of encodings we do not take ({', '.join(skipped)})" if skipped else "no CERT payload"
    raise AuthFailed(f"{peer_id.text()!r} sent {what} and no configured certificate names it")


__all__ = ["SIGNATURE_SCHEMES", "AuthFailed", "auth_payload", "cert_payloads", "certreq_payloads",
           "choose_signature", "eap_secret", "init_payloads", "key_kind", "take_certreq", "take_init",
           "verify_peer"]

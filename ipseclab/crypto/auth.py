"""The AUTH payload: signed octets, shared-key MIC and signatures (RFC 7296 2.15, RFC 7427, RFC 4754).

``signed_octets`` builds what both methods protect:
``RealMessage | NonceOfPeer | prf(SK_p, RestOfIDPayload)``.  The shared-key
method MACs it with ``prf(prf(secret, "Key Pad for IKEv2"), octets)``; the
signature methods sign it.  Method 14 ("Digital Signature", RFC 7427) prefixes
the signature with a length byte and the DER AlgorithmIdentifier of the scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..errors import CryptoError, IntegrityError, RemoteProtocolError, UnsupportedTransformError
from .prf import Prf
from .registry import AuthMethod  # with the other IANA tables: naming a method loads no signature code

KEY_PAD = b"Key Pad for IKEv2"
_AUTHENTICATION_FAILED = 24


class HashAlgorithm(IntEnum):
    """IKEv2 Hash Algorithms (IANA; RFC 7427 section 7, Identity from RFC 8420), as the SIGNATURE_HASH_ALGORITHMS
    notify carries them: 16-bit ids, one after the other."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


def hash_algorithm_of(scheme: str) -> HashAlgorithm:
    """The hash a scheme of SIGNATURE_SCHEMES uses, as SIGNATURE_HASH_ALGORITHMS names it (EdDSA: Identity)."""
    h = SIGNATURE_SCHEMES[scheme].hash_name
    return {None: HashAlgorithm.IDENTITY, "sha1": HashAlgorithm.SHA1, "sha256": HashAlgorithm.SHA2_256,
            "sha384": HashAlgorithm.SHA2_384, "sha512": HashAlgorithm.SHA2_512}[h]


def signed_octets(prf: Prf, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets (RFC 7296 2.15).

    ``real_message`` is our IKE_SA_INIT message as sent, ``peer_nonce`` the
    other side's Nonce data, ``sk_p`` our SK_pi or SK_pr, and ``id_body`` our ID
    payload without its 4-byte generic header (ID type, reserved, data).
    """
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Prf, shared_secret: bytes, octets: bytes) -> bytes:
    """AUTH data for SHARED_KEY_MIC: prf(prf(Shared Secret, "Key Pad for IKEv2"), octets)."""
    return prf(prf(shared_secret, KEY_PAD), octets)


# --- RFC 7427 signature schemes --------------------------------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _der(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _der_len(len(body)) + body


def _oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray((40 * nums[0] + nums[1],))
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


_NULL = b"\x05\x00"
_HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def _pss_algorithm_identifier(hash_name: str) -> bytes:
    """RSASSA-PSS AlgorithmIdentifier with explicit parameters (RFC 4055), as RFC 7427 A.4 shows."""
    h = _der(0x30, _oid(_HASH_OIDS[hash_name]) + _NULL)
    mgf = _der(0x30, _oid("1.2.840.113549.1.1.8") + h)
    salt = _der(0x02, bytes((_HASHES[hash_name].digest_size,)))
    params = _der(0x30, _der(0xA0, h) + _der(0xA1, mgf) + _der(0xA2, salt))
    return _der(0x30, _oid("1.2.840.113549.1.1.10") + params)


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """One RFC 7427 scheme: key type, hash, and its DER AlgorithmIdentifier."""

    name: str
    key_type: str  # "rsa", "rsa-pss", "ecdsa", "ed25519", "ed448"
    hash_name: str | None
    algorithm_identifier: bytes


def _schemes() -> dict[str, SignatureScheme]:
    out: list[SignatureScheme] = []
    for h, n in (("sha1", "5"), ("sha256", "11"), ("sha384", "12"), ("sha512", "13")):
        out.append(SignatureScheme(f"rsa-{h}", "rsa", h, _der(0x30, _oid(f"1.2.840.113549.1.1.{n}") + _NULL)))
    for h, n in (("sha256", "2"), ("sha384", "3"), ("sha512", "4")):
        out.append(SignatureScheme(f"ecdsa-{h}", "ecdsa", h, _der(0x30, _oid(f"1.2.840.10045.4.3.{n}"))))
    for h in ("sha256", "sha384", "sha512"):
        out.append(SignatureScheme(f"rsa-pss-{h}", "rsa-pss", h, _pss_algorithm_identifier(h)))
    out.append(SignatureScheme("ed25519", "ed25519", None, _der(0x30, _oid("1.3.101.112"))))
    out.append(SignatureScheme("ed448", "ed448", None, _der(0x30, _oid("1.3.101.113"))))
    return {s.name: s for s in out}


SIGNATURE_SCHEMES = _schemes()
_BY_ALGID = {s.algorithm_identifier: s for s in SIGNATURE_SCHEMES.values()}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

# RFC 4754: method -> (hash, curve name, coordinate size)
_ECDSA_METHODS = {
    AuthMethod.ECDSA_SHA256_P256: ("sha256", "secp256r1", 32),
    AuthMethod.ECDSA_SHA384_P384: ("sha384", "secp384r1", 48),
    AuthMethod.ECDSA_SHA512_P521: ("sha512", "secp521r1", 66),
}


def _raw_sign(scheme: SignatureScheme, key: PrivateKey, data: bytes) -> bytes:
    h = _HASHES[scheme.hash_name] if scheme.hash_name else None
    if scheme.key_type == "rsa" and isinstance(key, rsa.RSAPrivateKey) and h:
        return key.sign(data, padding.PKCS1v15(), h)
    if scheme.key_type == "rsa-pss" and isinstance(key, rsa.RSAPrivateKey) and h:
        return key.sign(data, padding.PSS(padding.MGF1(h), h.digest_size), h)
    if scheme.key_type == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey) and h:
        return key.sign(data, ec.ECDSA(h))
    if scheme.key_type == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if scheme.key_type == "ed448" and isinstance(key, ed448.Ed448PrivateKey):
        return key.sign(data)
    raise CryptoError(f"signature scheme {scheme.name} does not match a {type(key).__name__}")


def _raw_verify(scheme: SignatureScheme, key: PublicKey, sig: bytes, data: bytes) -> None:
    h = _HASHES[scheme.hash_name] if scheme.hash_name else None
    try:
        if scheme.key_type == "rsa" and isinstance(key, rsa.RSAPublicKey) and h:
            key.verify(sig, data, padding.PKCS1v15(), h)
        elif scheme.key_type == "rsa-pss" and isinstance(key, rsa.RSAPublicKey) and h:
            key.verify(sig, data, padding.PSS(padding.MGF1(h), h.digest_size), h)
        elif scheme.key_type == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey) and h:
            key.verify(sig, data, ec.ECDSA(h))
        elif scheme.key_type in ("ed25519", "ed448") and isinstance(
            key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
        ):
            key.verify(sig, data)
        else:
            raise CryptoError(f"signature scheme {scheme.name} does not match a {type(key).__name__}")
    except InvalidSignature:
        raise IntegrityError(f"AUTH signature ({scheme.name}) does not verify") from None


def scheme_of(auth_data: bytes) -> str | None:
    """The RFC 7427 scheme named by Digital Signature AUTH data (its length-prefixed AlgorithmIdentifier)."""
    if not auth_data:
        return None
    s = _BY_ALGID.get(auth_data[1 : 1 + auth_data[0]])
    return s.name if s is not None else None


def sign_auth(method: AuthMethod, key: PrivateKey, octets: bytes, scheme: str | None = None) -> bytes:
    """AUTH data for a signature method over ``octets``.

    ``scheme`` names an RFC 7427 scheme (see SIGNATURE_SCHEMES) for method 14.
    """
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if scheme not in SIGNATURE_SCHEMES:
            raise CryptoError(f"method 14 needs a scheme, one of {sorted(SIGNATURE_SCHEMES)}")
        s = SIGNATURE_SCHEMES[scheme]
        return bytes((len(s.algorithm_identifier),)) + s.algorithm_identifier + _raw_sign(s, key, octets)
    if method == AuthMethod.RSA_SIG:
        return _raw_sign(SIGNATURE_SCHEMES["rsa-sha1"], key, octets)
    if method in _ECDSA_METHODS:
        h, _curve, size = _ECDSA_METHODS[method]
        der = _raw_sign(SIGNATURE_SCHEMES[f"ecdsa-{h}"], key, octets)
        r, s_ = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s_.to_bytes(size, "big")
    raise UnsupportedTransformError(f"authentication method {method!r} is not a supported signature method")


def verify_auth(method: AuthMethod, key: PublicKey, octets: bytes, auth_data: bytes) -> str:
    """Verify signature AUTH data; returns the scheme name, raises IntegrityError when it fails."""
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if not auth_data:
            raise RemoteProtocolError("empty AUTH data for method 14", _AUTHENTICATION_FAILED)
        n = auth_data[0]
        algid, sig = auth_data[1 : 1 + n], auth_data[1 + n :]
        scheme = _BY_ALGID.get(algid)
        if scheme is None:
            raise UnsupportedTransformError(f"unknown RFC 7427 AlgorithmIdentifier {algid.hex()}")
        _raw_verify(scheme, key, sig, octets)
        return scheme.name
    if method == AuthMethod.RSA_SIG:
        _raw_verify(SIGNATURE_SCHEMES["rsa-sha1"], key, auth_data, octets)
        return "rsa-sha1"
    if method in _ECDSA_METHODS:
        h, _curve, size = _ECDSA_METHODS[method]
        if len(auth_data) != 2 * size:
            raise IntegrityError(f"{method.name} signature must be {2 * size} bytes, got {len(auth_data)}")
        r = int.from_bytes(auth_data[:size], "big")
        s_ = int.from_bytes(auth_data[size:], "big")
        _raw_verify(SIGNATURE_SCHEMES[f"ecdsa-{h}"], key, encode_dss_signature(r, s_), octets)
        return f"ecdsa-{h}"
    raise UnsupportedTransformError(f"authentication method {method!r} is not a supported signature method")

"""AUTH payload computation: RFC 7427 AlgorithmIdentifiers and signature round trips (RFC 7296 2.15, RFC 4754)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ipseclab.crypto import AuthMethod, PrfId, get_prf, psk_auth, sign_auth, signed_octets, verify_auth
from ipseclab.crypto.auth import SIGNATURE_SCHEMES
from ipseclab.errors import IntegrityError

# RFC 7427 Appendix A (A.1 RSASSA-PKCS1-v1_5, A.3 ECDSA) and RFC 8420 section 2 (Ed25519, Ed448):
# the DER AlgorithmIdentifier octets.  RSASSA-PSS/SHA-256 (salt 32, MGF1-SHA-256, default trailer omitted as
# DER requires) as OpenSSL's asn1parse shows it in Chromium's verify_signed_data test data
# (rsa-pss-sha256-using-pss-key-with-params.pem): SEQUENCE l=65 { rsassaPss, SEQUENCE l=52 {...} }.
RFC_ALGORITHM_IDENTIFIERS = {
    "rsa-sha1": "300d06092a864886f70d0101050500",
    "rsa-sha256": "300d06092a864886f70d01010b0500",
    "rsa-sha384": "300d06092a864886f70d01010c0500",
    "rsa-sha512": "300d06092a864886f70d01010d0500",
    "ecdsa-sha256": "300a06082a8648ce3d040302",
    "ecdsa-sha384": "300a06082a8648ce3d040303",
    "ecdsa-sha512": "300a06082a8648ce3d040304",
    "rsa-pss-sha256": (
        "3041" "06092a864886f70d01010a" "3034"
        "a00f300d06096086480165030402010500"
        "a11c301a06092a864886f70d010108300d06096086480165030402010500"
        "a203020120"
    ),
    "ed25519": "300506032b6570",
    "ed448": "300506032b6571",
}


@pytest.mark.parametrize("name", sorted(RFC_ALGORITHM_IDENTIFIERS))
def test_rfc7427_algorithm_identifiers(name):
    assert SIGNATURE_SCHEMES[name].algorithm_identifier.hex() == RFC_ALGORITHM_IDENTIFIERS[name]


_RSA = rsa.generate_private_key(65537, 2048)
_KEYS = {
    "rsa": _RSA,
    "rsa-pss": _RSA,
    "ecdsa": ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "ed448": ed448.Ed448PrivateKey.generate(),
}


@pytest.mark.parametrize("scheme", sorted(SIGNATURE_SCHEMES))
def test_digital_signature_method_round_trip(scheme):
    key = _KEYS[SIGNATURE_SCHEMES[scheme].key_type]
    octets = b"InitiatorSignedOctets"
    data = sign_auth(AuthMethod.DIGITAL_SIGNATURE, key, octets, scheme)
    assert data[0] == len(SIGNATURE_SCHEMES[scheme].algorithm_identifier)
    assert verify_auth(AuthMethod.DIGITAL_SIGNATURE, key.public_key(), octets, data) == scheme
    with pytest.raises(IntegrityError):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, key.public_key(), octets + b"!", data)


@pytest.mark.parametrize(("method", "curve", "size"), [
    (AuthMethod.ECDSA_SHA256_P256, ec.SECP256R1(), 64),
    (AuthMethod.ECDSA_SHA384_P384, ec.SECP384R1(), 96),
    (AuthMethod.ECDSA_SHA512_P521, ec.SECP521R1(), 132),
])
def test_rfc4754_ecdsa_methods_use_fixed_r_s(method, curve, size):
    key = ec.generate_private_key(curve)
    data = sign_auth(method, key, b"octets")
    assert len(data) == size  # r || s, each the coordinate size (RFC 4754 section 7)
    verify_auth(method, key.public_key(), b"octets", data)
    with pytest.raises(IntegrityError):
        verify_auth(method, key.public_key(), b"other", data)


def test_rsa_sig_method_1():
    data = sign_auth(AuthMethod.RSA_SIG, _RSA, b"octets")
    assert verify_auth(AuthMethod.RSA_SIG, _RSA.public_key(), b"octets", data) == "rsa-sha1"


def test_psk_auth_is_prf_of_prf_keypad():
    """RFC 7296 2.15: AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    import hmac

    prf = get_prf(PrfId.HMAC_SHA2_256)
    octets = signed_octets(prf, b"message1", b"nonce-r", b"k" * 32, b"\x02\x00\x00\x00left")
    assert octets == b"message1" + b"nonce-r" + hmac.digest(b"k" * 32, b"\x02\x00\x00\x00left", "sha256")
    inner = hmac.digest(b"secret", b"Key Pad for IKEv2", "sha256")
    assert psk_auth(prf, b"secret", octets) == hmac.digest(inner, octets, "sha256")

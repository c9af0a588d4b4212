"""X.509 for IKEv2 authentication: chain validation, identity matching, CERTREQ key hashes (RFC 7296 3.6-3.7).

Everything here is on ``cryptography``'s x509 objects and raises ``CertificateError`` with one sentence naming what
is wrong (expired on ..., not issued by a configured CA, no subjectAltName for ...), which the engine puts in the
AUTHENTICATION_FAILED event.

Chain validation uses ``cryptography.x509.verification`` (an RFC 5280 path builder with the Web PKI profile)
for RSA and ECDSA chains.  That profile forbids Ed25519/Ed448 keys (RFC 8410), which IKEv2 allows (RFC 8420),
so a chain holding one is validated by the small RFC 5280 subset in ``_validate_eddsa``: signatures
(``verify_directly_issued_by``), validity, basicConstraints and keyCertSign on every issuer, path length.
Either way the leaf's keyUsage must allow digitalSignature (or nonRepudiation), and its subjectAltName (or its
subject, for an ID_DER_ASN1_DN) must name the peer's IKE identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification

from ..errors import CertificateError, ConfigError
from .auth import PrivateKey, PublicKey

# IKEv2 ID types (IANA), the ones a certificate can name; packets.enums.IdType holds the registry, crypto/ does
# not import packets/
_ID_IPV4, _ID_FQDN, _ID_RFC822, _ID_IPV6, _ID_DN = 1, 2, 3, 5, 9

Certificate = x509.Certificate


def utc_now() -> dt.datetime:
    """The time of day certificates are judged by: the one clock read in authentication, injectable wherever
    it is used (``clock=`` on the authenticators), since the engine's ``now`` is monotonic, not a date."""
    return dt.datetime.now(dt.UTC)


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes (what a CERT payload or a file holds)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"not an X.509 certificate: {exc}") from None


def load_private_key(pem: bytes) -> PrivateKey:
    """An unencrypted PEM private key (PKCS#8 or the traditional formats) of a type IKEv2 signs with."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | ed448.Ed448PrivateKey):
        raise ConfigError(f"a {type(key).__name__}: IKEv2 signs with RSA, ECDSA, Ed25519 or Ed448 keys")
    return key


def pem(item: x509.Certificate | PrivateKey) -> bytes:
    """PEM of a certificate, or of a private key (PKCS#8, unencrypted: lab material only)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    if isinstance(item, x509.Certificate):
        return item.public_bytes(Encoding.PEM)
    return item.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def key_kind(cert: x509.Certificate) -> str:
    """What the certificate's key signs with: ``rsa``, ``ecdsa``, ``ed25519`` or ``ed448`` (what a daemon's
    renderer chooses its authentication keyword by)."""
    key = public_key(cert)
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "ed448"


def pkcs12(name: str, certificate: bytes, private_key: bytes, chain: Sequence[bytes], password: bytes) -> bytes:
    """A PKCS#12 file (PBES2, AES-256-CBC, HMAC-SHA-256) of a PEM certificate, its key and the ``chain`` certificates
    above it; ``name`` becomes the friendly name (NSS's nickname after ``pk12util -i``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat
    from cryptography.hazmat.primitives.serialization import pkcs12 as p12

    cert, key = load_certificate(certificate), load_private_key(private_key)
    enc = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(10000)
           .key_cert_algorithm(p12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()).build(password))
    return p12.serialize_key_and_certificates(name.encode(), key, cert, [load_certificate(c) for c in chain], enc)


def der(cert: x509.Certificate) -> bytes:
    """The DER a CERT payload carries (encoding 4, X.509 Certificate - Signature)."""
    return cert.public_bytes(Encoding.DER)


def spki_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the SubjectPublicKeyInfo: how CERTREQ names a trusted CA (RFC 7296 3.7)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


def public_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        raise CertificateError(f"certificate of {subject_text(cert)} has a {type(key).__name__}: IKEv2 signs "
                               f"with RSA, ECDSA, Ed25519 or Ed448")
    return key


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of the certificate's public key."""
    fmt = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt))


def subject_text(cert: x509.Certificate) -> str:
    return dn_text(cert.subject)


def dn_text(name: x509.Name) -> str:
    """A DN the way strongSwan writes one: most significant first, ``C=CH, O=strongSwan, CN=moon``."""
    return ", ".join(rdn.rfc4514_string() for rdn in name.rdns)


def dn_der(text: str) -> bytes:
    """The DER of a DN written as strongSwan does (``C=CH, O=Example, CN=moon``, most significant first)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        name = x509.Name.from_rfc4514_string(",".join(reversed(parts)))
    except ValueError:
        raise ConfigError(f"identity {text!r} is not a distinguished name: write it as C=CH, O=Example, CN=moon "
                          f"(upper-case attribute names, most significant first)") from None
    return name.public_bytes()


def dn_from_der(data: bytes) -> str:
    """A DN's text from the DER an ID_DER_ASN1_DN carries (hex if it does not parse)."""
    try:
        cert_name = _name_from_der(data)
    except ValueError:
        return data.hex()
    return dn_text(cert_name)


def _name_from_der(data: bytes) -> x509.Name:
    """A Name from its DER (SEQUENCE OF SET OF AttributeTypeAndValue): ``cryptography`` has no public loader
    for a bare Name, and an ID_DER_ASN1_DN is only shown to people, never trusted from this parse (matching
    compares the DER bytes with the certificate's subject)."""
    rdns: list[x509.RelativeDistinguishedName] = []
    body = _der_seq(data, 0x30)
    pos = 0
    while pos < len(body):
        tag, content, pos = _der_tlv(body, pos)
        if tag != 0x31:
            raise ValueError("an RDN is not a SET")
        attrs: list[x509.NameAttribute[str]] = []
        apos = 0
        while apos < len(content):
            atag, atv, apos = _der_tlv(content, apos)
            if atag != 0x30:
                raise ValueError("an AttributeTypeAndValue is not a SEQUENCE")
            otag, oid, vpos = _der_tlv(atv, 0)
            vtag, value, _end = _der_tlv(atv, vpos)
            if otag != 0x06:
                raise ValueError("an attribute type is not an OID")
            text = value.decode("utf-16-be" if vtag == 0x1E else "utf-8", errors="replace")
            attrs.append(x509.NameAttribute(x509.ObjectIdentifier(_oid_text(oid)), text))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def _der_seq(data: bytes, tag: int) -> bytes:
    t, content, end = _der_tlv(data, 0)
    if t != tag or end != len(data):
        raise ValueError("not one DER SEQUENCE")
    return content


def _der_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > len(data):
            raise ValueError("bad DER length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise ValueError("truncated DER value")
    return tag, data[pos : pos + n], pos + n


def _oid_text(body: bytes) -> str:
    if not body:
        raise ValueError("empty OID")
    nums = [min(body[0] // 40, 2), body[0] - 40 * min(body[0] // 40, 2)]
    n = 0
    for b in body[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            nums.append(n)
            n = 0
    return ".".join(str(x) for x in nums)


def check_local(cert: x509.Certificate, key: PrivateKey, at: dt.datetime) -> None:
    """ConfigError unless ``key`` belongs to ``cert`` and ``cert`` is valid at ``at``: checked before anything
    starts, so a wrong file is one line, not an AUTHENTICATION_FAILED from the peer."""
    if not key_matches(cert, key):
        raise ConfigError(f"the private key does not match the certificate of {subject_text(cert)}: "
                          f"configure the key the certificate was issued for")
    try:
        _check_validity(cert, at)
    except CertificateError as exc:
        raise ConfigError(f"our own {exc}: renew it") from None
    public_key(cert)


def validity_problem(certificate: bytes, at: dt.datetime | None = None) -> str:
    """Why a PEM or DER certificate is not valid at ``at`` (default now: "certificate of ... expired on ..."), or ""."""
    try:
        _check_validity(load_certificate(certificate), at or utc_now())
    except CertificateError as exc:
        return str(exc)
    return ""


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateError(f"certificate of {subject_text(cert)} is not valid before "
                               f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    if at > cert.not_valid_after_utc:
        raise CertificateError(f"certificate of {subject_text(cert)} expired on "
                               f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _is_eddsa(cert: x509.Certificate) -> bool:
    return isinstance(cert.public_key(), ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def validate_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                   cas: Sequence[x509.Certificate], at: dt.datetime) -> list[x509.Certificate]:
    """The path from ``leaf`` to one of ``cas`` (leaf first), or CertificateError naming why there is none."""
    if not cas:
        raise CertificateError("no CA certificate is configured to validate the peer against")
    _check_validity(leaf, at)  # the commonest failure, named plainly before the path builder's wording
    ku = _ext(leaf, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not (ku.digital_signature or ku.content_commitment):
        raise CertificateError(f"certificate of {subject_text(leaf)}: its keyUsage does not allow "
                               f"digitalSignature")
    if any(_is_eddsa(c) for c in (leaf, *intermediates, *cas)):
        return _validate_eddsa(leaf, list(intermediates), list(cas), at)
    builder = verification.PolicyBuilder().store(verification.Store(list(cas))).time(at)
    builder = builder.extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                         ee_policy=verification.ExtensionPolicy.permit_all())
    try:
        verified = builder.build_client_verifier().verify(leaf, list(intermediates))
    except verification.VerificationError as exc:
        raise CertificateError(f"certificate of {subject_text(leaf)} does not chain to a configured CA "
                               f"({_short(str(exc))})") from None
    return list(verified.chain)


def _short(text: str) -> str:
    return text.replace("validation failed: ", "").split("\n")[0][:200]


def _validate_eddsa(leaf: x509.Certificate, pool: list[x509.Certificate], cas: list[x509.Certificate],
                    at: dt.datetime, max_depth: int = 8) -> list[x509.Certificate]:
    """RFC 5280 6.1, the parts that matter here, for chains the Web PKI profile refuses (EdDSA keys)."""
    chain = [leaf]
    current = leaf
    for _depth in range(max_depth):
        for ca in cas:
            if _issued_by(current, ca):
                _check_issuer(ca, at, len(chain) - 1)
                return [*chain, ca]
        nxt = next((c for c in pool if c not in chain and _issued_by(current, c)), None)
        if nxt is None:
            raise CertificateError(f"certificate of {subject_text(leaf)} does not chain to a configured CA "
                                   f"(no issuer found for {dn_text(current.issuer)})")
        _check_validity(nxt, at)
        _check_issuer(nxt, at, len(chain) - 1)
        chain.append(nxt)
        current = nxt
    raise CertificateError(f"certificate of {subject_text(leaf)}: the chain is longer than {max_depth}")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature, or a name/algorithm mismatch
        return False
    return True


def _check_issuer(ca: x509.Certificate, at: dt.datetime, below: int) -> None:
    _check_validity(ca, at)
    bc = _ext(ca, x509.BasicConstraints)
    if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
        raise CertificateError(f"issuer {subject_text(ca)} is not a CA (basicConstraints)")
    if bc.path_length is not None and below > bc.path_length:
        raise CertificateError(f"issuer {subject_text(ca)} allows {bc.path_length} CAs below it, not {below}")
    ku = _ext(ca, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
        raise CertificateError(f"issuer {subject_text(ca)}: its keyUsage does not allow keyCertSign")


def names_identity(cert: x509.Certificate, id_type: int, data: bytes) -> bool:
    """Whether the certificate names the IKE identity (RFC 4945 3.1: the subjectAltName of that type, or the
    subject for an ID_DER_ASN1_DN)."""
    if id_type == _ID_DN:
        return bool(cert.subject.public_bytes() == data)
    san = _ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return False
    if id_type == _ID_FQDN:
        want = data.decode(errors="replace").lower().rstrip(".")
        return any(n.lower().rstrip(".") == want for n in san.get_values_for_type(x509.DNSName))
    if id_type == _ID_RFC822:
        want = data.decode(errors="replace").lower()
        return any(n.lower() == want for n in san.get_values_for_type(x509.RFC822Name))
    if id_type in (_ID_IPV4, _ID_IPV6) and len(data) in (4, 16):
        return ipaddress.ip_address(data) in san.get_values_for_type(x509.IPAddress)
    return False


def sans_text(cert: x509.Certificate) -> str:
    san = _ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return "no subjectAltName"
    return "subjectAltName " + ", ".join(str(getattr(n, "value", n)) for n in san)

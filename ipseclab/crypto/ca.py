"""A small certificate authority on the ``cryptography`` x509 API, for the REPL, tests, benchmarks and the lab.

>>> ca = Ca.create("ipseclab Root CA")
>>> cert, key = ca.issue("moon.example")          # SAN DNS:moon.example, ECDSA P-256
>>> sub = ca.intermediate("ipseclab Sub CA")
>>> cert, key = sub.issue("carol@example", key_type="ed25519")

Certificates carry what IKEv2 peers check (RFC 4945 5): basicConstraints, keyUsage (digitalSignature for end
entities, keyCertSign/cRLSign for CAs), subject/authority key identifiers and a subjectAltName per name: an IP
address, ``user@host`` (rfc822Name) or a DNS name.  No openssl subprocess, no file: what to write where is the
lab's business.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from ..errors import ConfigError
from .auth import PrivateKey
from .x509 import pem

__all__ = ["KEY_TYPES", "Ca", "generate_key", "pem"]

KEY_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "ed448")
_CURVES: dict[str, ec.EllipticCurve] = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1(),
                                        "ecdsa-p521": ec.SECP521R1()}


def generate_key(key_type: str) -> PrivateKey:
    """A fresh private key of ``key_type`` (one of KEY_TYPES)."""
    if key_type.startswith("rsa-") and key_type in KEY_TYPES:
        return rsa.generate_private_key(65537, int(key_type[4:]))
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ConfigError(f"key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size == 384:
            return hashes.SHA384()
        if key.curve.key_size == 521:
            return hashes.SHA512()
    return hashes.SHA256()


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    return x509.RFC822Name(name) if "@" in name else x509.DNSName(name)


def _cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipseclab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, text)])


@dataclass(frozen=True, slots=True)
class Ca:
    """A CA certificate and its key; ``issue`` makes end-entity certificates, ``intermediate`` sub-CAs."""

    certificate: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(cls, name: str = "ipseclab Root CA", *, key_type: str = "ecdsa-p256",
               not_before: dt.datetime | None = None, days: int = 3650) -> Ca:
        key = generate_key(key_type)
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        subject = _cn(name)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(start)
             .not_valid_after(start + dt.timedelta(days=days)))
        cert = cls._ca_extensions(b, key, key).sign(key, _sign_hash(key))
        return cls(cert, key)

    @staticmethod
    def _ca_extensions(b: x509.CertificateBuilder, key: PrivateKey, issuer_key: PrivateKey,
                       path_length: int | None = None) -> x509.CertificateBuilder:
        return (b.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                               critical=False))

    def intermediate(self, name: str = "ipseclab Intermediate CA", *, key_type: str = "ecdsa-p256",
                     days: int = 1825) -> Ca:
        key = generate_key(key_type)
        start = max(self.certificate.not_valid_before_utc, dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        b = (x509.CertificateBuilder().subject_name(_cn(name)).issuer_name(self.certificate.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(start)
             .not_valid_after(min(start + dt.timedelta(days=days), self.certificate.not_valid_after_utc)))
        cert = self._ca_extensions(b, key, self.key).sign(self.key, _sign_hash(self.key))
        return Ca(cert, key)

    def issue(self, name: str, *, sans: tuple[str, ...] | None = None, key_type: str = "ecdsa-p256",
              key: PrivateKey | None = None, not_before: dt.datetime | None = None, days: int = 365,
              key_usage: bool = True) -> tuple[x509.Certificate, PrivateKey]:
        """An end-entity certificate for ``name`` (CN, and the subjectAltName unless ``sans`` says otherwise)."""
        key = key or generate_key(key_type)
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        b = (x509.CertificateBuilder().subject_name(_cn(name)).issuer_name(self.certificate.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(start)
             .not_valid_after(start + dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                            critical=False))
        if key_usage:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                critical=True)
        names = (name,) if sans is None else sans
        if names:
            b = b.add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        return b.sign(self.key, _sign_hash(self.key)), key

"""Certificate handshakes in memory: ECDSA P-256 and RSA-2048, beside the bare signature calls they contain.

Run: ``python -m tests.bench.bench_ike_certs`` (prints a Markdown table).

An initiator and a responder ``IkeConnection`` wired together in one process (as in the unit tests), each with a
certificate issued by a root CA (``crypto.ca``) and trusting that root: a whole handshake is IKE_SA_INIT, IKE_AUTH
with RFC 7427 Digital Signature AUTH and CERT/CERTREQ payloads, chain validation of the peer's certificate, and
the first Child SA, both ends.  In the same run, the references: the bare ``cryptography`` calls no
implementation can avoid for one handshake — two signatures and two verifications over an octet string the
size of SignedOctets — and the two chain validations (``cryptography.x509.verification``), and a PSK handshake
of the same IKE suite.  Median of five runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ipseclab.crypto.auth import PrivateKey
from ipseclab.crypto.ca import Ca
from ipseclab.crypto.x509 import utc_now, validate_chain
from ipseclab.ike import ChildSaEstablished, IkeConfig, loopback
from ipseclab.ike.auth import PubkeyAuth, TrustedCas

IKE = "aes256gcm16-prfsha256-ecp256"


def per_call(fn: Callable[[], object], n: int) -> float:
    """Median over five runs of the seconds one call takes (``n`` calls a run)."""
    fn()
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n)
    return statistics.median(runs)


class Setup:
    def __init__(self, key_type: str) -> None:
        self.ca = Ca.create(key_type=key_type)
        self.moon = self.ca.issue("moon.example", key_type=key_type)
        self.sun = self.ca.issue("sun.example", key_type=key_type)
        trust = TrustedCas((self.ca.certificate,))
        self.ci = IkeConfig("moon.example", "sun.example", ike_proposals=(IKE,),
                            local_auth=PubkeyAuth(*self.moon), remote_auth=trust)
        self.cr = IkeConfig("sun.example", "moon.example", ike_proposals=(IKE,),
                            local_auth=PubkeyAuth(*self.sun), remote_auth=trust)
        self.octets = os.urandom(300)  # IKE_SA_INIT request + nonce + prf output: about this long
        self.key: PrivateKey = self.moon[1]
        self.signature = self.sign()

    def handshake(self) -> None:
        i, _ = loopback.handshake(self.ci, self.cr)
        if not i.of(ChildSaEstablished):
            raise SystemExit(f"handshake failed: {i.events}")

    def sign(self) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(self.octets, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(self.octets, ec.ECDSA(hashes.SHA256()))
        raise SystemExit("RSA or ECDSA only")

    def verify(self) -> None:
        pub = self.key.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(self.signature, self.octets, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(self.signature, self.octets, ec.ECDSA(hashes.SHA256()))

    def validate(self) -> None:
        validate_chain(self.moon[0], [], [self.ca.certificate], utc_now())


def psk_handshake() -> None:
    ci = IkeConfig("moon.example", "sun.example", b"secret", ike_proposals=(IKE,))
    cr = IkeConfig("sun.example", "moon.example", b"secret", ike_proposals=(IKE,))
    loopback.handshake(ci, cr)


def main() -> None:
    print(f"IKE suite {IKE}, ESP aes256gcm16; every figure of a row measured in the same run, median of five.\n")
    print("| certificates | handshakes/s | ms per handshake (both ends) | PSK handshake, same suite (ms) "
          "| certificates add (ms) | of which 2 x sign | 2 x verify | 2 x chain validation |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key_type, label in (("ecdsa-p256", "ECDSA P-256 (ecdsa-sha256)"), ("rsa-2048", "RSA-2048 (rsa-sha256)")):
        s = Setup(key_type)
        psk = per_call(psk_handshake, 60)
        whole = per_call(s.handshake, 60)
        sign, verify, chain = per_call(s.sign, 300), per_call(s.verify, 300), per_call(s.validate, 300)
        print(f"| {label} | {1 / whole:,.0f} | {whole * 1e3:.2f} | {psk * 1e3:.2f} | {(whole - psk) * 1e3:.2f} "
              f"| {2 * sign * 1e3:.3f} | {2 * verify * 1e3:.3f} | {2 * chain * 1e3:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""Authentication: certificates (RSA, ECDSA P-256, Ed25519, a chain through an intermediate CA) and EAP.

Each run gets its own CA (``lab/pki.py``).  Besides what every case checks (Wireshark decrypts every IKE
message with the run's keys, the pings cross the Child SA), ``check`` reads the decrypted IKE_AUTH exchange
(ipseclab's decoder over the captures, with the same key table Wireshark just verified) and names what it
expected where it is missing: the AUTH method of each side, the CERT payloads (X.509 signature, encoding 4;
leaf then intermediate for a chain), the EAP payloads and the MSK-based AUTH (method 2) after EAP.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.analysis import decrypt_capture
from ipseclab.errors import CheckFailed
from ipseclab.packets.enums import ExchangeType
from ipseclab.packets.message import Message
from ipseclab.packets.payloads import AuthPayload, CertPayload, EapPayload, NotifyPayload
from ipseclab.pcap.trace import Trace

from .base import TestCase, check_ike_decrypts

DIGITAL_SIGNATURE, SHARED_KEY_MIC, X509_SIGNATURE, AUTHENTICATION_FAILED = 14, 2, 4, 24


def ike_auth_messages(trace: Trace, exchanges: tuple[int, ...] = (ExchangeType.IKE_AUTH,)) -> list[tuple[int, Message]]:
    """(frame, message) of every IKE_AUTH message (or of ``exchanges``) of the first link that has them,
    decrypted and reassembled."""
    for link in trace.links.values():
        out = []
        for rec in decrypt_capture(link.pcap, trace.ike_rows):
            msg = rec.reassembled or rec.message
            if msg is None or msg.exchange not in exchanges or not rec.decrypted:
                continue
            if rec.reassembled is None and msg.encrypted is None:
                continue  # a fragment whose message is not complete yet
            out.append((rec.frame, msg))
        if out:
            return out
    raise CheckFailed(f"no decrypted IKE_AUTH message in the captures of {trace.run_dir}")


def _where(frame: int, msg: Message) -> str:
    return f"frame {frame} {msg.summary()}"


@dataclass(frozen=True)
class AuthCase(TestCase):
    """A case that checks how each side authenticated, from the decrypted IKE_AUTH messages."""

    def check(self, trace: Trace) -> None:
        super().check(trace)
        msgs = ike_auth_messages(trace)
        requests = [(f, m) for f, m in msgs if not m.response]
        responses = [(f, m) for f, m in msgs if m.response]
        if not requests or not responses:
            raise CheckFailed(f"IKE_AUTH without both a request and a response: {[_where(*x) for x in msgs]}")
        responder_auth = self.responder_auth or ("pubkey" if self.auth.startswith("eap-") else self.auth)
        _check_signature_side("the initiator", requests[0], self.auth, self.chain)
        _check_signature_side("the responder", responses[0], responder_auth, self.chain)
        if self.auth.startswith("eap-"):
            eap = [x for x in msgs if x[1].find(EapPayload)]
            last = [p for p in eap[-1][1].find(EapPayload) if isinstance(p, EapPayload)] if eap else []
            # a method request, the initiator's answer, then the server's EAP-Success (code 3, RFC 3748 4.2)
            if len(eap) < 3 or not eap[-1][1].response or not last or last[0].data[:1] != b"\x03":
                raise CheckFailed(f"EAP should run from the responder's request to its EAP-Success, saw EAP "
                                     f"payloads in {[_where(*x) for x in eap]}")
            last_req = requests[-1]
            auth = [p for p in last_req[1].find(AuthPayload) if isinstance(p, AuthPayload)]
            if not auth or auth[0].method != SHARED_KEY_MIC:
                raise CheckFailed(f"after EAP the initiator's AUTH must be the MSK-based method 2: "
                                     f"{_where(*last_req)} has {[a.method for a in auth]}")


def _check_signature_side(who: str, first: tuple[int, Message], auth: str, chain: bool) -> None:
    frame, msg = first
    auths = [p for p in msg.find(AuthPayload) if isinstance(p, AuthPayload)]
    certs = [p for p in msg.find(CertPayload) if isinstance(p, CertPayload)]
    if auth.startswith("eap-"):
        if auths:
            raise CheckFailed(f"{who} does EAP, so its first IKE_AUTH message has no AUTH: {_where(frame, msg)}")
        return
    if auth == "psk":
        if not auths or auths[0].method != SHARED_KEY_MIC:
            raise CheckFailed(f"{who} should authenticate with the PSK (AUTH method 2): {_where(frame, msg)}")
        return
    if not auths or auths[0].method != DIGITAL_SIGNATURE:
        raise CheckFailed(f"{who} should sign with RFC 7427 Digital Signature (AUTH method 14), saw "
                             f"{[a.method for a in auths]} in {_where(frame, msg)}")
    want = 2 if chain else 1
    if len(certs) < want or any(c.encoding != X509_SIGNATURE for c in certs):
        raise CheckFailed(f"{who} should send {want} X.509 CERT payload(s) (encoding 4), saw "
                             f"{[c.encoding for c in certs]} in {_where(frame, msg)}")


CERT_ECDSA = AuthCase(
    name="cert-ecdsa-p256",
    description="ECDSA P-256 certificates both ways (RFC 7427 Digital Signature, CERT and CERTREQ), a CA per run",
    auth="pubkey",
    key_type="ecdsa-p256",
)
CERT_RSA = AuthCase(
    name="cert-rsa",
    description="RSA-2048 certificates both ways (RFC 7427: strongSwan and ipseclab sign PKCS#1 v1.5 with SHA-256, "
                "Libreswan 4.10 RSASSA-PSS with SHA2-512)",
    auth="pubkey",
    key_type="rsa-2048",
)
CERT_ED25519 = AuthCase(
    name="cert-ed25519",
    description="Ed25519 certificates both ways (RFC 8420 through RFC 7427)",
    auth="pubkey",
    key_type="ed25519",
)
CERT_CHAIN = AuthCase(
    name="cert-chain",
    description="ECDSA certificates issued by an intermediate CA: each side sends leaf and intermediate, the "
                "other validates to the run's root",
    auth="pubkey",
    chain=True,
)
EAP_MD5 = AuthCase(
    name="eap-md5",
    description="The initiator authenticates with EAP-MD5 (RFC 7296 2.16), the responder with an ECDSA "
                "certificate; the AUTH after EAP is keyed with SK_pi/SK_pr (EAP-MD5 has no MSK)",
    auth="eap-md5",
)
EAP_MSCHAPV2 = AuthCase(
    name="eap-mschapv2",
    description="The initiator authenticates with EAP-MSCHAPv2, the responder with an ECDSA certificate; "
                "MSK-based AUTH",
    auth="eap-mschapv2",
)



@dataclass(frozen=True)
class AuthRefusalCase(TestCase):
    """IKE_AUTH must fail: no Child SA, no ESP, and the trace shows the refusal the RFC prescribes."""

    def check(self, trace: Trace) -> None:
        _check_refused_sa_decrypts(trace)
        if trace.ipsec():
            raise CheckFailed(f"ESP/AH traffic although IKE_AUTH should have failed: {len(trace.ipsec())} "
                                 f"packets, the first frame {trace.ipsec()[0].frame}")
        msgs = ike_auth_messages(trace, (ExchangeType.IKE_AUTH, ExchangeType.INFORMATIONAL))
        seen = [_where(*x) for x in msgs]
        if self.refusal == "wrong-eap-password":
            failures = [x for x in msgs if x[1].response and any(
                isinstance(p, EapPayload) and p.data[:1] == b"\x04" for p in x[1].find(EapPayload))]
            if not failures:
                raise CheckFailed(f"no EAP-Failure (code 4) from the EAP server in {seen}")
            return
        refused = [x for x in msgs if any(isinstance(p, NotifyPayload) and p.notify_type == AUTHENTICATION_FAILED
                                          for p in x[1].find(NotifyPayload))]
        if not refused:
            raise CheckFailed(f"no N(AUTHENTICATION_FAILED) in the IKE_AUTH response or a following "
                                 f"INFORMATIONAL: {seen}")
        if self.refusal == "expired-cert" and not any(x[1].find(CertPayload) for x in msgs):
            raise CheckFailed(f"the expired certificate never went out in a CERT payload: {seen}")


def _check_refused_sa_decrypts(trace: Trace) -> None:
    """Wireshark decrypts the refused IKE SA with the run's keys, every ICV correct.  An initiator may start
    over with a new IKE SA after the refusal (Libreswan does, in the background): the keys of such a retry can
    be logged after the lab collected them, so a message that ipseclab's decoder finds no keys for is let go,
    but never one whose ICV is wrong, and the refused exchange itself must decrypt."""
    no_keys = frozenset(rec.frame for link in trace.links.values() for rec in decrypt_capture(link.pcap, trace.ike_rows)
                        if rec.error and rec.error.startswith("no keys for IKE SA"))
    check_ike_decrypts(trace, no_keys)


EXPIRED_CERT = AuthRefusalCase(
    name="refuse-expired-cert",
    description="A peer presents a certificate that expired yesterday (a CA per run): the other side refuses "
                "it with AUTHENTICATION_FAILED (in the IKE_AUTH response, or the initiator's INFORMATIONAL)",
    auth="pubkey",
    refusal="expired-cert",
)
WRONG_PSK = AuthRefusalCase(
    name="refuse-wrong-psk",
    description="The responder's pre-shared key differs: it answers IKE_AUTH with AUTHENTICATION_FAILED",
    refusal="wrong-psk",
)
WRONG_EAP_PASSWORD = AuthRefusalCase(
    name="refuse-wrong-eap-password",
    description="The EAP-MD5 server knows another password: it ends EAP with EAP-Failure, no IKE SA",
    auth="eap-md5",
    refusal="wrong-eap-password",
)

CASES = [CERT_ECDSA, CERT_RSA, CERT_ED25519, CERT_CHAIN, EAP_MD5, EAP_MSCHAPV2, EXPIRED_CERT, WRONG_PSK,
         WRONG_EAP_PASSWORD]

"""IKE_AUTH with certificates in memory (RFC 7296 2.15/3.6-3.8, RFC 7427, RFC 4754, RFC 8420): every key type and
method in both roles, mixed methods per side, chains, ID types, and each refusal named in the event.

The oracle for the signatures is ``cryptography``'s own verify API on SignedOctets rebuilt here from the
datagrams (hmac over the ID payload, the IKE_SA_INIT request as sent, the responder's nonce), and the RFC 7427
Appendix A AlgorithmIdentifier octets; CERTREQ is checked against hashlib's SHA-1 of the CA's
SubjectPublicKeyInfo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from ipseclab.crypto.auth import HashAlgorithm, PrivateKey
from ipseclab.crypto.ca import Ca
from ipseclab.crypto.x509 import Certificate
from ipseclab.errors import ConfigError
from ipseclab.ike import IkeConfig, IkeSaEstablished, IkeSaFailed
from ipseclab.ike.auth import Psk, PubkeyAuth, TrustedCas
from ipseclab.ike.auth.proof import AuthFailed, choose_signature
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import IkeSaCrypto, decode
from ipseclab.packets.payloads import AuthPayload, CertPayload, CertReqPayload, IdiPayload, NoncePayload
from tests.unit.ike_wire import Wire

ROOT = Ca.create("ipseclab Test Root")
SUB = ROOT.intermediate("ipseclab Test Sub")
OTHER = Ca.create("Somebody Else's CA")
_ISSUED: dict[tuple[str, str, int], tuple[Certificate, PrivateKey]] = {}


def issue(name: str, key_type: str = "ecdsa-p256", ca: Ca = ROOT) -> tuple[Certificate, PrivateKey]:
    """A certificate for ``name`` from ``ca``, made once per name and key type (RSA keys take a while)."""
    k = (name, key_type, id(ca))
    if k not in _ISSUED:
        _ISSUED[k] = ca.issue(name, key_type=key_type)
    return _ISSUED[k]


def cfgs(i_local, i_remote, r_local, r_remote, i_id="moon.example", r_id="sun.example"):
    return (IkeConfig(i_id, r_id, local_auth=i_local, remote_auth=i_remote),
            IkeConfig(r_id, i_id, local_auth=r_local, remote_auth=r_remote))


def run(ci: IkeConfig, cr: IkeConfig) -> Wire:
    w = Wire(ci, cr)
    w.i.initiate(0.0)
    w.pump()
    return w


def pubkey(name: str, key_type: str = "ecdsa-p256", **kw: object) -> PubkeyAuth:
    cert, key = issue(name, key_type)
    return PubkeyAuth(cert, key, **kw)  # type: ignore[arg-type]  # keyword options as given


TRUST = TrustedCas((ROOT.certificate,))


def established(w: Wire) -> tuple[IkeSaEstablished, IkeSaEstablished]:
    ei, er = w.of("i", IkeSaEstablished), w.of("r", IkeSaEstablished)
    assert len(ei) == 1 and len(er) == 1, f"not established: {w.events}"
    assert w.i.child_sas() and w.r.child_sas()
    return ei[0], er[0]


def failed(w: Wire, side: str) -> IkeSaFailed:
    """The failure on ``side``; a responder that refuses leaves neither side established (an initiator that
    refuses the responder finds it established already, and tells it: RFC 7296 2.21.2)."""
    f = w.of(side, IkeSaFailed)
    assert f, f"no failure on {side}: {w.events}"
    assert not w.of("i", IkeSaEstablished)
    if side == "r":
        assert not w.of("r", IkeSaEstablished) and w.of("i", IkeSaFailed)[0].remote
    return f[0]


# --- every key type and method, both roles ---------------------------------------------------------

SCHEMES = [("rsa-2048", None, "rsa-sha256"), ("rsa-2048", "rsa-pss-sha256", "rsa-pss-sha256"),
           ("rsa-2048", "rsa-sha512", "rsa-sha512"), ("ecdsa-p256", None, "ecdsa-sha256"),
           ("ecdsa-p384", None, "ecdsa-sha384"), ("ecdsa-p521", None, "ecdsa-sha512"),
           ("ed25519", None, "ed25519"), ("ed448", None, "ed448")]


@pytest.mark.parametrize(("key_type", "scheme", "expected"), SCHEMES)
def test_digital_signature_each_key_type_both_roles(key_type, scheme, expected):
    w = run(*cfgs(pubkey("moon.example", key_type, scheme=scheme), TRUST,
                  pubkey("sun.example", key_type, scheme=scheme), TRUST))
    ei, er = established(w)
    assert ei.auth.startswith(f"DIGITAL_SIGNATURE {expected}, certificate O=ipseclab, CN=sun.example")
    assert er.auth.startswith(f"DIGITAL_SIGNATURE {expected}, certificate O=ipseclab, CN=moon.example")


@pytest.mark.parametrize(("key_type", "method"), [("rsa-2048", "RSA_SIG rsa-sha1"),
                                                 ("ecdsa-p256", "ECDSA_SHA256_P256 ecdsa-sha256"),
                                                 ("ecdsa-p384", "ECDSA_SHA384_P384 ecdsa-sha384"),
                                                 ("ecdsa-p521", "ECDSA_SHA512_P521 ecdsa-sha512")])
def test_classic_methods_rfc7296_and_rfc4754(key_type, method):
    w = run(*cfgs(pubkey("moon.example", key_type, method="classic"), TRUST,
                  pubkey("sun.example", key_type, method="classic"), TRUST))
    ei, er = established(w)
    assert ei.auth.startswith(method) and er.auth.startswith(method)


def test_without_signature_hash_algorithms_the_classic_method_is_used():
    cert, key = issue("moon.example", "ecdsa-p384")
    assert choose_signature(PubkeyAuth(cert, key), None)[0] == 10  # ECDSA_SHA384_P384
    rsa_cert, rsa_key = issue("moon.example", "rsa-2048")
    assert choose_signature(PubkeyAuth(rsa_cert, rsa_key), None) == (1, None)
    ed_cert, ed_key = issue("moon.example", "ed25519")
    assert choose_signature(PubkeyAuth(ed_cert, ed_key), None) == (14, "ed25519")
    assert choose_signature(PubkeyAuth(cert, key), frozenset({2, 4})) == (14, "ecdsa-sha256")


@pytest.mark.parametrize("mix", ["cert-initiator-psk-responder", "psk-initiator-cert-responder"])
def test_each_side_chooses_its_own_method(mix):
    psk = Psk(b"a shared secret")
    if mix == "cert-initiator-psk-responder":
        w = run(*cfgs(pubkey("moon.example"), psk, psk, TRUST))
        ei, er = established(w)
        assert ei.auth == "pre-shared key" and er.auth.startswith("DIGITAL_SIGNATURE ecdsa-sha256")
    else:
        w = run(*cfgs(psk, TRUST, pubkey("sun.example", "rsa-2048"), psk))
        ei, er = established(w)
        assert ei.auth.startswith("DIGITAL_SIGNATURE rsa-sha256") and er.auth == "pre-shared key"


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "ed25519"])
def test_chain_with_an_intermediate_from_the_cert_payloads(key_type):
    sub = SUB if key_type == "ecdsa-p256" else ROOT.intermediate("ipseclab Ed Sub", key_type="ed25519")
    cert, key = issue("moon.example", key_type, ca=sub)
    w = run(*cfgs(PubkeyAuth(cert, key, intermediates=(sub.certificate,)), TRUST,
                  pubkey("sun.example", key_type), TRUST))
    _ei, er = established(w)
    assert "via O=ipseclab, CN=ipseclab " in er.auth and " <- O=ipseclab, CN=ipseclab Test Root" in er.auth


def test_chain_without_the_intermediate_is_refused():
    cert, key = issue("moon.example", ca=SUB)
    w = run(*cfgs(PubkeyAuth(cert, key), TRUST, pubkey("sun.example"), TRUST))
    f = failed(w, "r")
    assert "does not chain to a configured CA" in f.reason and f.notify == NotifyType.AUTHENTICATION_FAILED


@pytest.mark.parametrize(("i_id", "san"), [("carol@example.org", "carol@example.org"), ("192.0.2.1", "192.0.2.1"),
                                            ("2001:db8::1", "2001:db8::1"),
                                            ("O=ipseclab, CN=moon.example", None)])
def test_id_types_rfc822_ipv4_ipv6_and_dn(i_id, san):
    cert, key = ROOT.issue("moon.example", sans=(san,) if san else ())
    w = run(*cfgs(PubkeyAuth(cert, key), TRUST, pubkey("sun.example"), TRUST, i_id=i_id))
    _ei, er = established(w)
    assert w.r.peer_id == i_id
    assert er.auth.startswith("DIGITAL_SIGNATURE")


# --- refusals ----------------------------------------------------------------------------------------

PAST = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)


def test_expired_peer_certificate_is_refused_with_the_date():
    cert, key = ROOT.issue("moon.example", not_before=PAST - dt.timedelta(days=2), days=2)
    # the sender's clock says it is still valid; the verifier's (the real one) says it expired a month ago
    local = PubkeyAuth(cert, key, clock=lambda: PAST - dt.timedelta(days=1))
    w = run(*cfgs(local, TRUST, pubkey("sun.example"), TRUST))
    f = failed(w, "r")
    assert "expired on" in f.reason and f.notify == NotifyType.AUTHENTICATION_FAILED
    fi = w.of("i", IkeSaFailed)[0]
    assert fi.remote and fi.notify == NotifyType.AUTHENTICATION_FAILED


def test_unknown_ca_is_refused_and_the_responder_is_told():
    w = run(*cfgs(pubkey("moon.example"), TrustedCas((OTHER.certificate,)), pubkey("sun.example"), TRUST))
    f = failed(w, "i")
    assert "does not chain to a configured CA" in f.reason and "sun.example" in f.reason
    # RFC 7296 2.21.2: the initiator's INFORMATIONAL with AUTHENTICATION_FAILED ends the responder's SA too
    told = [d for direction, d in w.log if direction == "i>r" and d[18] == ExchangeType.INFORMATIONAL]
    assert len(told) == 1
    fr = w.of("r", IkeSaFailed)
    assert fr and fr[0].remote and fr[0].notify == NotifyType.AUTHENTICATION_FAILED


def test_certificate_not_naming_the_peer_id_is_refused():
    cert, key = issue("venus.example")
    w = run(*cfgs(PubkeyAuth(cert, key), TRUST, pubkey("sun.example"), TRUST))
    f = failed(w, "r")
    assert "does not name the peer's ID 'moon.example'" in f.reason and "venus.example" in f.reason


def test_signature_with_a_hash_the_peer_did_not_announce_is_refused():
    only384 = TrustedCas((ROOT.certificate,), hashes=(HashAlgorithm.SHA2_384,))
    forced = pubkey("moon.example", scheme="ecdsa-sha256", force_scheme=True)
    w = run(*cfgs(forced, TRUST, pubkey("sun.example", "ecdsa-p384"), only384))
    f = failed(w, "r")
    assert "ecdsa-sha256 (SHA2_256), which we did not announce" in f.reason and "SHA2_384" in f.reason


def test_our_configured_scheme_the_peer_did_not_announce_fails_locally():
    only384 = TrustedCas((ROOT.certificate,), hashes=(HashAlgorithm.SHA2_384,))
    w = run(*cfgs(pubkey("moon.example", scheme="ecdsa-sha256"), TRUST, pubkey("sun.example"), only384))
    f = failed(w, "i")
    assert "did not announce SHA2_256" in f.reason and not f.remote


def test_unannounced_default_scheme_falls_to_an_announced_one():
    only384 = TrustedCas((ROOT.certificate,), hashes=(HashAlgorithm.SHA2_384,))
    w = run(*cfgs(pubkey("moon.example"), TRUST, pubkey("sun.example"), only384))
    _ei, er = established(w)
    assert er.auth.startswith("DIGITAL_SIGNATURE ecdsa-sha384")


def test_psk_peer_where_a_certificate_is_expected_is_refused():
    psk = Psk(b"k")
    w = run(*cfgs(psk, psk, psk, TRUST))
    assert "configured method is a certificate" in failed(w, "r").reason


def test_classic_method_refused_when_only_rfc7427_is_accepted():
    strict = TrustedCas((ROOT.certificate,), classic=False)
    w = run(*cfgs(pubkey("moon.example", method="classic"), TRUST, pubkey("sun.example"), strict))
    assert "only Digital Signature (RFC 7427) is accepted" in failed(w, "r").reason


def test_config_mistakes_are_one_line_before_anything_starts():
    cert, _key = issue("moon.example")
    _other_cert, other_key = issue("sun.example")
    with pytest.raises(ConfigError, match="private key does not match the certificate of O=ipseclab, CN=moon"):
        PubkeyAuth(cert, other_key)
    old, old_key = ROOT.issue("moon.example", not_before=PAST - dt.timedelta(days=2), days=2)
    with pytest.raises(ConfigError, match=r"our own certificate of .* expired on .*: renew it"):
        PubkeyAuth(old, old_key)
    with pytest.raises(ConfigError, match="pre-shared key is empty and no authenticator"):
        IkeConfig("a", "b")
    with pytest.raises(ConfigError, match="no credentials to check the peer"):
        IkeConfig("a", "b", local_auth=pubkey("moon.example"))
    with pytest.raises(ConfigError, match="does not fit the certificate's ecdsa key"):
        pubkey("moon.example", scheme="rsa-sha256")
    with pytest.raises(ConfigError, match="without a CA"):
        TrustedCas(())
    with pytest.raises(ConfigError, match="not a distinguished name"):
        IkeConfig("FOO=bar, CN=x", "b", psk=b"k")


# --- the oracle: cryptography's verify API on SignedOctets rebuilt from the datagrams ------------------

RFC7427_ALGIDS = {"ecdsa-sha256": "300a06082a8648ce3d040302", "ed25519": "300506032b6570",
                  "rsa-pss-sha256": ("3041" "06092a864886f70d01010a" "3034" "a00f300d06096086480165030402010500"
                                     "a11c301a06092a864886f70d010108300d06096086480165030402010500"
                                     "a203020120")}


@pytest.mark.parametrize(("key_type", "scheme"), [("ecdsa-p256", "ecdsa-sha256"), ("ed25519", "ed25519"),
                                                   ("rsa-2048", "rsa-pss-sha256")])
def test_initiator_auth_verifies_with_cryptography_on_the_rfc_octets(key_type, scheme):
    moon = pubkey("moon.example", key_type, scheme=scheme)
    w = run(*cfgs(moon, TRUST, pubkey("sun.example", key_type, scheme=scheme), TRUST))
    ei, _er = established(w)
    init_request = next(d for direction, d in w.log if direction == "i>r" and d[18] == ExchangeType.IKE_SA_INIT)
    init_response = next(d for direction, d in w.log if direction == "r>i" and d[18] == ExchangeType.IKE_SA_INIT)
    auth_request = next(d for direction, d in w.log if direction == "i>r" and d[18] == ExchangeType.IKE_AUTH)
    suite = w.i.neg.suite
    assert suite is not None
    inner = decode(auth_request, IkeSaCrypto.from_keys(suite, ei.keys)).all_payloads()
    nonce_r = next(p for p in decode(init_response).payloads if isinstance(p, NoncePayload)).data
    idi = next(p for p in inner if isinstance(p, IdiPayload))
    auth = next(p for p in inner if isinstance(p, AuthPayload))
    certs = [p for p in inner if isinstance(p, CertPayload)]
    # RFC 7296 2.15 with the default PRF (HMAC-SHA-256), computed here with the standard library
    octets = init_request + nonce_r + hmac.new(ei.keys.sk_pi, idi.body(), hashlib.sha256).digest()
    assert auth.method == 14 and auth.data[1 : 1 + auth.data[0]].hex() == RFC7427_ALGIDS[scheme]
    signature = auth.data[1 + auth.data[0] :]
    public = moon.certificate.public_key()
    assert certs[0].encoding == 4 and certs[0].data == moon.certificate.public_bytes(serialization.Encoding.DER)
    if key_type == "ecdsa-p256":
        public.verify(signature, octets, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
    elif key_type == "ed25519":
        public.verify(signature, octets)  # type: ignore[call-arg,union-attr]
    else:
        public.verify(signature, octets, padding.PSS(padding.MGF1(hashes.SHA256()), 32),  # type: ignore[call-arg,union-attr]
                      hashes.SHA256())
    with pytest.raises(Exception):  # noqa: B017 - any InvalidSignature: the octets matter
        if key_type == "ed25519":
            public.verify(signature, octets + b"x")  # type: ignore[call-arg,union-attr]
        elif key_type == "ecdsa-p256":
            public.verify(signature, octets + b"x", ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
        else:
            public.verify(signature, octets + b"x", padding.PSS(padding.MGF1(hashes.SHA256()), 32),  # type: ignore[call-arg,union-attr]
                          hashes.SHA256())


def test_certreq_carries_the_sha1_of_the_ca_subject_public_key_info():
    both = TrustedCas((ROOT.certificate, OTHER.certificate))
    w = run(*cfgs(pubkey("moon.example"), TRUST, pubkey("sun.example"), both))
    established(w)
    init_response = next(d for direction, d in w.log if direction == "r>i" and d[18] == ExchangeType.IKE_SA_INIT)
    certreq = next(p for p in decode(init_response).payloads if isinstance(p, CertReqPayload))
    spki = [c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            for c in (ROOT.certificate, OTHER.certificate)]
    assert certreq.encoding == 4 and certreq.data == b"".join(hashlib.sha1(s).digest() for s in spki)


def test_choose_signature_names_what_the_peer_lacks():
    cert, key = issue("moon.example", "ed25519")
    with pytest.raises(AuthFailed, match="no hash a ed25519 key can sign with"):
        choose_signature(PubkeyAuth(cert, key), frozenset({HashAlgorithm.SHA2_256}))


def test_big_certificate_chains_travel_in_rfc7383_fragments():
    sub = ROOT.intermediate("ipseclab RSA Sub", key_type="rsa-4096")
    cert, key = sub.issue("moon.example", key_type="rsa-4096")
    w = run(*cfgs(PubkeyAuth(cert, key, intermediates=(sub.certificate,)), TRUST, pubkey("sun.example"), TRUST))
    established(w)
    auth_datagrams = [d for direction, d in w.log if direction == "i>r" and d[18] == ExchangeType.IKE_AUTH]
    assert len(auth_datagrams) > 1 and all(len(d) <= 1280 for d in auth_datagrams)


def test_the_endpoint_spec_carries_each_authenticator_and_the_endpoint_handshakes_with_it(tmp_path):
    from ipseclab.endpoint.runner import EndpointSpec
    from ipseclab.ike.auth import EapClient, EapServer
    from ipseclab.ike.loopback import handshake

    cert, key = issue("moon.example", ca=SUB)
    moon = IkeConfig("moon.example", "sun.example", local_auth=PubkeyAuth(cert, key, intermediates=(SUB.certificate,)),
                     remote_auth=TRUST)
    carol = IkeConfig("carol@example", "sun.example", local_auth=EapClient("pw", methods=("md5",)),
                      remote_auth=TRUST)
    sun = IkeConfig("sun.example", "carol@example", local_auth=pubkey("sun.example"),
                    remote_auth=EapServer((("carol@example", "pw"),), method="md5"))
    specs = [EndpointSpec(c, "198.51.100.10", "198.51.100.20", True, tmp_path) for c in (moon, carol, sun)]
    again = [EndpointSpec.from_json(s.to_json()).ike for s in specs]
    assert again[1] == carol and again[2].remote_auth == sun.remote_auth
    assert isinstance(again[0].local_auth, PubkeyAuth) and again[0].local_auth.certificate == cert
    assert again[0].local_auth.intermediates == (SUB.certificate,)
    responder = IkeConfig("sun.example", "moon.example", local_auth=pubkey("sun.example"), remote_auth=TRUST)
    i, _r = handshake(again[0], responder)
    assert i.of(IkeSaEstablished)
    i, _r = handshake(again[1], again[2])
    assert i.of(IkeSaEstablished)

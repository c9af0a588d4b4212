"""The lab's authentication: a CA per run, strongSwan's swanctl x509/x509ca/private and EAP secrets, the endpoint's
authenticators, and the refusals of what a renderer cannot do (interop runs: testcases/auth.py).

The oracle for what the lab renders is strongSwan itself in the interop cells; here, that the files hold what the
run's CA issued (read back with ``cryptography``) and that a refused setting names itself.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509

from ipseclab.endpoint.runner import EndpointSpec
from ipseclab.errors import ConfigError
from ipseclab.ike.auth import EapClient, PubkeyAuth, TrustedCas
from ipseclab.interop import case_configs, unsupported_reason
from ipseclab.lab.impls.ipseclab import IpseclabDriver
from ipseclab.lab.impls.libreswan import (
    LibreswanDriver,
    render_ipsec_conf,
    render_ipsec_secrets,
    write_libreswan_config,
)
from ipseclab.lab.impls.strongswan import render_strongswan_conf, render_swanctl_conf, write_strongswan_config
from ipseclab.lab.peerconfig import PeerConfig, PeerCredentials
from ipseclab.lab.pki import make_pki
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name


def configs(case: str, responder: str = "strongswan"):
    c = by_name(case)
    return case_configs(c, make_topology(c.topology, "unit"), responder)


def test_the_run_ca_issues_certificates_naming_the_identities_and_a_chain():
    pki = make_pki("left.ipseclab.test", "right.ipseclab.test", chain=True, expired="right")
    left = x509.load_pem_x509_certificate(pki.left.certificate)
    right = x509.load_pem_x509_certificate(pki.right.certificate)
    root = x509.load_pem_x509_certificate(pki.ca_pem)
    inter = x509.load_pem_x509_certificate(pki.left.intermediates[0])
    san = left.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["left.ipseclab.test"]
    left.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)
    assert right.not_valid_after_utc < left.not_valid_after_utc and pki.left.cas == (pki.ca_pem,)


def test_strongswan_renders_pubkey_and_writes_the_credentials(tmp_path: Path):
    left, _right = configs("cert-chain")
    text = render_swanctl_conf(left)
    assert "auth = pubkey\n" in text and "certs = lab-local.pem" in text and "cacerts = lab-ca-0.pem" in text
    assert "pkcs8" in render_strongswan_conf(left, vici_socket="/run/v", log_path="/ipl/l")
    write_strongswan_config(left, tmp_path, vici_socket="/run/v", log_path="/ipl/l")
    assert (tmp_path / "x509" / "lab-local.pem").read_bytes() == left.credentials.certificate
    assert (tmp_path / "private" / "lab-local.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "x509ca" / "lab-intermediate-0.pem").exists()
    assert (tmp_path / "x509ca" / "lab-ca-0.pem").read_bytes() == left.credentials.cas[0]


def test_strongswan_renders_eap_md5_client_and_server():
    left, right = configs("eap-md5")
    client, server = render_swanctl_conf(left), render_swanctl_conf(right)
    assert "auth = eap-md5\n" in client and "eap_id = left.ipseclab.test" in client
    assert "secret = \"ipseclab-interop-eap\"" in client and "auth = pubkey" in client  # the responder's cert
    assert server.count("auth = eap-md5") == 1 and "certs = lab-local.pem" in server
    assert "eap-md5 eap-identity" in render_strongswan_conf(right, vici_socket="/run/v", log_path="/ipl/l")


def test_what_a_renderer_cannot_do_is_unsupported_with_the_reason():
    case = by_name("eap-mschapv2")
    assert unsupported_reason(case, "strongswan", "ipseclab") is None  # libcharon-extauth-plugins is in the image
    assert unsupported_reason(case, "ipseclab", "ipseclab") is None
    assert "only as EAP-TLS" in (unsupported_reason(case, "libreswan", "ipseclab") or "")
    assert "no EdDSA" in (unsupported_reason(by_name("cert-ed25519"), "strongswan", "libreswan") or "")
    assert unsupported_reason(by_name("cert-rsa"), "libreswan", "ipseclab") is None
    # the endpoint writes an IKE SA's keys after IKE_SA_INIT, so a refusal reads with Libreswan on the other side
    assert unsupported_reason(by_name("refuse-wrong-psk"), "ipseclab", "libreswan") is None
    assert unsupported_reason(by_name("refuse-wrong-psk"), "ipseclab", "strongswan") is None
    # neither the endpoint nor Libreswan presents an expired certificate of its own; Libreswan refuses one silently
    assert "will not load" in (unsupported_reason(by_name("refuse-expired-cert"), "libreswan", "ipseclab") or "")
    assert "without a notify" in (unsupported_reason(by_name("refuse-expired-cert"), "libreswan", "strongswan") or "")
    assert unsupported_reason(by_name("refuse-expired-cert"), "strongswan", "libreswan") is None
    left, _ = configs("cert-ed25519")
    with pytest.raises(ConfigError, match="no EdDSA"):
        LibreswanDriver().check_supported(left)


def test_libreswan_renders_certificates_into_an_nss_database(tmp_path: Path):
    left, _ = configs("cert-chain", "libreswan")
    conf = render_ipsec_conf(left, log_path="/ipl/pluto.log")
    assert "\tauthby=ecdsa\n" in conf and "\tleftcert=ipseclab-local\n" in conf and "\tsendca=all\n" in conf
    assert "PSK" not in render_ipsec_secrets(left)
    write_libreswan_config(left, tmp_path, log_path="/ipl/pluto.log")
    assert (tmp_path / "nss" / "ca-0.pem").read_bytes() == left.credentials.cas[0]
    assert (tmp_path / "nss" / "local.p12").stat().st_mode & 0o077 == 0
    # the PKCS#12 holds the certificate, its key and the intermediate, under the nickname leftcert= names
    from cryptography.hazmat.primitives.serialization import pkcs12
    p12 = pkcs12.load_pkcs12((tmp_path / "nss" / "local.p12").read_bytes(), b"ipseclab-lab")
    assert p12.cert is not None and p12.cert.friendly_name == b"ipseclab-local"
    inter = x509.load_pem_x509_certificate(left.credentials.intermediates[0])
    assert [c.certificate for c in p12.additional_certs] == [inter]
    lines = LibreswanDriver().start_script(left, make_topology("direct", "unit").hosts["left"])
    assert "certutil -A -d sql:/run/nss -n ipseclab-ca-0 -t CT,," in lines and "pk12util -i /ipl/nss/local.p12" in lines
    # the empty database first (what ipsec initnss runs), then the imports, then pluto
    assert lines.index("certutil -N -d sql:/run/nss --empty-password") < lines.index("certutil -A") < lines.index(
        "pluto --config")
    _, rsa_right = configs("cert-rsa", "libreswan")
    assert "\tauthby=rsasig\n" in render_ipsec_conf(rsa_right, log_path="/ipl/pluto.log")


def test_the_endpoint_spec_gets_each_authenticator(tmp_path: Path):
    left, right = configs("eap-md5", responder="ipseclab")
    IpseclabDriver().write_config(left, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert isinstance(spec.ike.local_auth, EapClient) and spec.ike.local_auth.methods == ("md5",)
    assert isinstance(spec.ike.remote_auth, TrustedCas)
    IpseclabDriver().write_config(right, tmp_path)
    raw = json.loads((tmp_path / "endpoint.json").read_text())
    assert raw["ike"]["remote_auth"]["kind"] == "eap-server"
    assert isinstance(EndpointSpec.from_json(json.dumps(raw)).ike.local_auth, PubkeyAuth)


def test_refusal_cases_configure_the_failure():
    left, right = configs("refuse-wrong-psk")
    assert left.psk != right.psk
    left, right = configs("refuse-wrong-eap-password")
    assert left.credentials and right.credentials
    assert left.credentials.eap_password != right.credentials.eap_password
    for responder, expired in (("strongswan", "right"), ("ipseclab", "left"), ("libreswan", "left")):
        lc, rc = configs("refuse-expired-cert", responder)
        cert = x509.load_pem_x509_certificate((lc if expired == "left" else rc).credentials.certificate)
        other = x509.load_pem_x509_certificate((rc if expired == "left" else lc).credentials.certificate)
        now = dt.datetime.now(dt.UTC)
        assert cert.not_valid_after_utc < now < other.not_valid_after_utc


def test_peer_config_names_missing_credentials():
    base = dict(name="lab", local_address="198.51.100.10", remote_address="198.51.100.20", psk="k")
    with pytest.raises(ConfigError, match="needs a certificate and its private key"):
        PeerConfig(**base, auth="pubkey", remote_auth="psk")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs the CA certificates"):
        PeerConfig(**base, remote_auth="pubkey")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the initiator's"):
        PeerConfig(**base, auth="eap-md5", role="responder",  # type: ignore[arg-type]
                   credentials=PeerCredentials(eap_password="x"))
    left, _ = configs("cert-ecdsa-p256")
    with pytest.raises(ConfigError, match="cannot mirror certificates"):
        left.mirrored()

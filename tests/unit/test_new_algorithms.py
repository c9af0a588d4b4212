"""Issue 10's algorithms end to end in memory, with Wireshark as the oracle.

* The engine negotiates each new IKE and ESP transform (initiator and responder wired together):
  AES-CTR, AES-CCM-8/12/16, 3DES, Camellia-CBC/CTR/CCM, HMAC-MD5-96/128, HMAC-SHA1-160, AES-CMAC-96;
  the ESP SAs built from both sides' events talk to each other.
* tshark 4.0, given only the key tables, decrypts the engine's SK payloads (every IKE algorithm it
  knows: AES-CTR, AES-CCM, 3DES, HMAC-MD5-96/128, HMAC-SHA1-160) and verifies and decrypts the ESP
  packets EspSA makes (every ESP algorithm it knows: AES-CTR, 3DES, DES, Blowfish, CAST5,
  HMAC-MD5-96, HMAC-SHA-256-96, HMAC-RIPEMD-160-96, "ANY n bit").
* Legacy transforms (DES, Blowfish, CAST, Wireshark's rows without an IANA id) decrypt captures but
  are never proposal keywords: the engine cannot be told to negotiate them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipseclab.crypto import EncrId, IntegId, KeId, get_encr, get_integ
from ipseclab.crypto.proposals import parse_proposal
from ipseclab.errors import ConfigError
from ipseclab.esp import EspSA
from ipseclab.ike import ChildSaEstablished, IkeSaEstablished, IkeState

from .ike_wire import configs, handshake, wireshark_view

PING = bytes.fromhex("4500001c00010000400100000a0100010a020001") + bytes.fromhex("0800f7ff00000000")


def _esp(child: ChildSaEstablished, out: bool) -> EspSA:
    return EspSA(child.spi_out if out else child.spi_in, child.encr_id,
                 child.encr_key_out if out else child.encr_key_in, integ=child.integ_id,
                 integ_key=child.integ_key_out if out else child.integ_key_in, mode=child.mode,
                 esn=child.esn, key_bits=child.encr_key_bits, tunnel=("198.51.100.10", "198.51.100.20"))


SUITES = [
    ("aes128ctr-sha256-ecp256", "aes256ctr-sha1", EncrId.AES_CTR, IntegId.HMAC_SHA1_96),
    ("aes256ccm16-prfsha256-ecp384", "aes128ccm8", EncrId.AES_CCM_8, None),
    ("aes192ccm12-prfsha384-modp2048", "aes192ccm12-esn", EncrId.AES_CCM_12, None),
    ("3des-sha1-modp2048", "3des-md5", EncrId.TRIPLE_DES, IntegId.HMAC_MD5_96),
    ("camellia256-sha512-ecp256", "camellia128-aescmac", EncrId.CAMELLIA_CBC, IntegId.AES_CMAC_96),
    ("camellia128ctr-sha1_160-prfsha1-modp2048", "camellia192ctr-sha1_160", EncrId.CAMELLIA_CTR,
     IntegId.HMAC_SHA1_160),
    ("camellia128ccm16-prfsha256-curve25519", "camellia256ccm12", EncrId.CAMELLIA_CCM_12, None),
    ("aes128-md5_128-prfmd5-modp2048", "aes128ccm16-esn", EncrId.AES_CCM_16, None),
]


@pytest.mark.parametrize(("ike", "esp", "child_encr", "child_integ"), SUITES, ids=[s[0] for s in SUITES])
def test_the_engine_negotiates_the_new_transforms_and_the_child_sas_talk(ike, esp, child_encr, child_integ):
    w = handshake(*configs(ike_proposals=(ike,), esp_proposals=(esp,)))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED, w.events
    (ei,), (er,) = w.of("i", IkeSaEstablished), w.of("r", IkeSaEstablished)
    want = next(t for t in parse_proposal(ike) if t.type == 1)
    assert ei.encr_id == want.id and ei.encr_key_bits == get_encr(want.id, want.key_bits).key_bits
    assert ei.keys == er.keys
    (ci,), (cr,) = w.of("i", ChildSaEstablished), w.of("r", ChildSaEstablished)
    assert (ci.encr_id, ci.integ_id) == (child_encr, child_integ)
    assert _esp(cr, False).unprotect(_esp(ci, True).protect(PING)) == PING
    assert _esp(ci, False).unprotect(_esp(cr, True).protect(PING)) == PING


@pytest.mark.parametrize("keyword", ["des", "blowfish128", "cast128"])
def test_legacy_ciphers_are_not_proposal_keywords(keyword):
    """DES, Blowfish and CAST only decrypt captures: the engine is never configured to negotiate them."""
    with pytest.raises(ConfigError, match="unknown esp proposal keyword"):
        parse_proposal(f"{keyword}-sha1", "esp")


# --- Wireshark decrypts what the engine and EspSA make --------------------------------------------------

# IKE: the algorithms Wireshark 4.0's ikev2_decryption_table names, through the engine
TSHARK_IKE = [
    "aes128ctr-sha256-ecp256", "aes256ctr-md5-prfsha256-modp2048", "aes192ctr-sha1_160-prfsha1-modp2048",
    "aes128ccm8-prfsha256-ecp256", "aes192ccm12-prfsha256-ecp256", "aes256ccm16-prfsha384-ecp384",
    "3des-sha1-modp2048", "aes128-md5_128-prfmd5-modp2048",
]


@pytest.mark.tshark
@pytest.mark.parametrize("ike", TSHARK_IKE)
def test_tshark_decrypts_the_engines_sk_payloads(tmp_path: Path, ike: str):
    w = handshake(*configs(ike_proposals=(ike,), esp_proposals=("aes128-sha256",)))
    w.i.close(w.now)
    w.pump()
    records = wireshark_view(w, tmp_path)
    encrypted = [r for r in records if r.encrypted]
    assert len(encrypted) == 4 and all(r.decrypted and r.icv_ok for r in encrypted), records


# ESP: every esp_sa encryption and authentication name of Wireshark 4.0 that ipseclab implements
TSHARK_ESP = [
    (EncrId.AES_CTR, 128, IntegId.HMAC_SHA1_96), (EncrId.AES_CTR, 256, IntegId.HMAC_SHA2_256_128),
    (EncrId.TRIPLE_DES, 192, IntegId.HMAC_MD5_96), (EncrId.DES, 64, IntegId.HMAC_SHA1_96),
    (EncrId.BLOWFISH, 128, IntegId.HMAC_SHA2_512_256), (EncrId.CAST, 128, IntegId.HMAC_SHA2_384_192),
    (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_96), (EncrId.AES_CBC, 192, IntegId.HMAC_RIPEMD160_96),
    (EncrId.NULL, 0, IntegId.HMAC_MD5_96),
]


@pytest.mark.tshark
@pytest.mark.parametrize(("encr_id", "bits", "integ_id"), TSHARK_ESP,
                         ids=[f"{e.name}-{b}-{i.name}" for e, b, i in TSHARK_ESP])
def test_tshark_verifies_and_decrypts_espsa_packets(tmp_path: Path, encr_id, bits, integ_id):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    from ipseclab.analysis import esp_sa_row
    from ipseclab.pcap.trace import ipsec_packets

    encr, integ = get_encr(encr_id, bits or None), get_integ(integ_id)
    sa = EspSA(0x7001, encr, os.urandom(encr.key_size), integ=integ, integ_key=os.urandom(integ.key_size),
               tunnel=("203.0.113.1", "203.0.113.2"))
    inner = bytes(IP(src="198.51.100.1", dst="198.51.100.2") / ICMP() / Raw(b"ipseclab" * 7))
    wrpcap(str(tmp_path / "esp.pcap"), [Ether() / IP(sa.protect(inner)) for _ in range(3)])
    row = esp_sa_row(sa)
    assert row.wireshark_can_decrypt, row.to_row()
    recs = ipsec_packets(tmp_path / "esp.pcap", [row])
    assert len(recs) == 3 and all(r.icv_good is True and r.inner[:2] == ("ip", "icmp") for r in recs), recs
    wrong = [row.__class__(row.family, row.src, row.dst, row.spi, row.encr_name, row.encr_key, row.auth_name,
                           bytes(len(row.auth_key)))]
    assert not any(r.icv_good for r in ipsec_packets(tmp_path / "esp.pcap", wrong))


@pytest.mark.tshark
def test_tshark_and_ipseclab_read_any_n_bit_rows_without_checking(tmp_path: Path):
    """"ANY 96 bit authentication [no checking]": both decrypt, neither calls the packet verified."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from ipseclab.analysis import decrypt_esp_capture
    from ipseclab.pcap.esp_keyfiles import EspSaRow
    from ipseclab.pcap.trace import ipsec_packets

    key = os.urandom(16)
    sa = EspSA(0x7002, get_encr(EncrId.AES_CBC, 128), key, integ=get_integ(IntegId.HMAC_SHA1_96),
               integ_key=os.urandom(20), tunnel=("203.0.113.1", "203.0.113.2"))
    inner = bytes(IP(src="198.51.100.1", dst="198.51.100.2") / ICMP())
    wrpcap(str(tmp_path / "esp.pcap"), [Ether() / IP(sa.protect(inner))])
    row = EspSaRow("IPv4", "*", "*", 0x7002, "AES-CBC [RFC3602]", key, "ANY 96 bit authentication [no checking]", b"")
    (ws,) = ipsec_packets(tmp_path / "esp.pcap", [row])
    assert ws.icv_good is not True and ws.inner[:2] == ("ip", "icmp")  # decrypted, not verified
    (ours,) = decrypt_esp_capture(tmp_path / "esp.pcap", [row])
    assert ours.error is None and not ours.verified and ours.inner == inner


def test_ke_groups_of_the_suites_are_the_declared_ones():
    """The handshake above picked the KE group each proposal names (the suite's KE transform)."""
    w = handshake(*configs(ike_proposals=("camellia128ccm16-prfsha256-curve25519",),
                           esp_proposals=("aes128ccm8",)))
    assert w.i.neg.suite.ke.id == KeId.CURVE25519  # type: ignore[union-attr]


@pytest.mark.parametrize(("impl", "kw", "reason"), [
    ("strongswan", {"esp_proposals": ("camellia128ctr-sha1",)}, "not in the Linux kernel's xfrm algorithm list"),
    ("libreswan", {"ike_proposals": ("aes128ccm16-prfsha256-ecp256",)}, "offered by Libreswan for ESP only"),
    ("libreswan", {"esp_proposals": ("camellia128ccm8",)}, "algparse does not know Camellia-CCM"),
    ("libreswan", {"esp_proposals": ("aes128-sha1_160",)}, "'sha1_160' is not recognized"),
])
def test_a_daemon_refuses_what_it_cannot_do_with_the_reason(impl, kw, reason):
    """What the renderers refuse makes a cell UNSUPPORTED with these words (the drivers' check_supported)."""
    from ipseclab.lab.impls.libreswan import render_ipsec_conf
    from ipseclab.lab.impls.strongswan import render_strongswan_conf
    from ipseclab.lab.peerconfig import PeerConfig

    peer = PeerConfig("x", "198.51.100.1", "198.51.100.2", "k", **kw)
    with pytest.raises(ConfigError, match=reason):
        if impl == "strongswan":
            render_strongswan_conf(peer, vici_socket="/run/charon.vici", log_path="/ipl/charon.log")
        else:
            render_ipsec_conf(peer, log_path="/ipl/pluto.log")


@pytest.mark.parametrize(("encr_id", "key_len", "bits"), [
    (EncrId.AES_CTR, 20, 128), (EncrId.AES_CCM_12, 27, 192), (EncrId.CAMELLIA_CTR, 36, 256),
    (EncrId.TRIPLE_DES, 24, 192), (EncrId.BLOWFISH, 24, 192), (EncrId.AES_GCM_8, 36, 256),
])
def test_espsa_infers_the_key_length_past_the_registrys_salt(encr_id, key_len, bits):
    """An SA given key material alone (as a key-file row gives it): the salt/nonce length is the registry's."""
    aead = get_encr(encr_id, bits).aead
    sa = EspSA(1, encr_id, bytes(key_len), integ=None if aead else IntegId.HMAC_SHA1_96,
               integ_key=b"" if aead else bytes(20), mode="transport")
    assert sa.encr.key_bits == bits

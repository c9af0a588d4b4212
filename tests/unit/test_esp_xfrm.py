"""Kernel XFRM algorithm names <-> IANA transforms, and SAs built from ``ip -s xfrm state`` output."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipseclab.crypto import EncrId, IntegId, get_encr, get_integ
from ipseclab.errors import UnsupportedTransformError
from ipseclab.esp import AhSA, EspSA, esp_algorithms, integ_from_xfrm, xfrm_args
from ipseclab.esp.xfrm_names import aead_from_xfrm, enc_from_xfrm
from ipseclab.lab.keys import parse_xfrm_state

SAMPLE = Path(__file__).parent.parent / "vectors" / "xfrm_state_sample.txt"


@pytest.mark.parametrize(("name", "key_len", "icv_bits", "eid", "bits"), [
    ("rfc4106(gcm(aes))", 20, 64, EncrId.AES_GCM_8, 128),
    ("rfc4106(gcm(aes))", 28, 96, EncrId.AES_GCM_12, 192),
    ("rfc4106(gcm(aes))", 36, 128, EncrId.AES_GCM_16, 256),
    ("rfc7539esp(chacha20,poly1305)", 36, 128, EncrId.CHACHA20_POLY1305, 256),
    ("rfc4543(gcm(aes))", 20, 128, EncrId.NULL_AUTH_AES_GMAC, 128),
])
def test_aead_names(name, key_len, icv_bits, eid, bits):
    encr = aead_from_xfrm(name, bytes(key_len), icv_bits)
    assert (encr.id, encr.key_bits, encr.key_size) == (eid, bits, key_len)


@pytest.mark.parametrize(("name", "key_len", "eid", "bits"), [
    ("cbc(aes)", 16, EncrId.AES_CBC, 128), ("cbc(aes)", 32, EncrId.AES_CBC, 256), ("aes", 24, EncrId.AES_CBC, 192),
    ("ecb(cipher_null)", 0, EncrId.NULL, 0), ("cipher_null", 0, EncrId.NULL, 0),
])
def test_cipher_names(name, key_len, eid, bits):
    encr = enc_from_xfrm(name, bytes(key_len))
    assert (encr.id, encr.key_bits) == (eid, bits)


@pytest.mark.parametrize(("name", "trunc", "iid"), [
    ("hmac(sha1)", 96, IntegId.HMAC_SHA1_96), ("hmac(sha1)", 0, IntegId.HMAC_SHA1_96),
    ("sha1", 160, IntegId.HMAC_SHA1_160), ("hmac(md5)", 96, IntegId.HMAC_MD5_96),
    ("hmac(sha256)", 128, IntegId.HMAC_SHA2_256_128), ("hmac(sha384)", 192, IntegId.HMAC_SHA2_384_192),
    ("hmac(sha512)", 256, IntegId.HMAC_SHA2_512_256), ("hmac(sha512)", 0, IntegId.HMAC_SHA2_512_256),
    ("xcbc(aes)", 96, IntegId.AES_XCBC_96), ("cmac(aes)", 96, IntegId.AES_CMAC_96),
])
def test_auth_names(name, trunc, iid):
    assert integ_from_xfrm(name, trunc).id == iid


def test_names_ipseclab_cannot_map_say_what_it_knows():
    with pytest.raises(UnsupportedTransformError, match="rfc4106"):
        aead_from_xfrm("rfc4106(gcm(sm4))", bytes(20), 128)
    with pytest.raises(UnsupportedTransformError, match="128 bits"):
        integ_from_xfrm("hmac(sha1)", 128)  # no transform truncates HMAC-SHA1 to 128 bits
    with pytest.raises(UnsupportedTransformError, match=r"cbc\(aes\)"):
        enc_from_xfrm("cbc(twofish)", bytes(16))  # the kernel has Twofish, ipseclab does not


def test_kernel_names_of_the_issue_10_algorithms():
    """CCM keys end with a 3-byte salt, CTR keys with a 4-byte nonce; the kernel's `auth hmac(sha256)` default
    (96 bits) is Wireshark's HMAC-SHA-256-96 row (ipseclab's private-use id, read-only)."""
    assert aead_from_xfrm("rfc4309(ccm(aes))", bytes(19), 64).id == EncrId.AES_CCM_8
    assert aead_from_xfrm("rfc4309(ccm(aes))", bytes(35), 128).key_bits == 256
    assert enc_from_xfrm("rfc3686(ctr(aes))", bytes(20)).key_bits == 128
    assert enc_from_xfrm("cbc(des3_ede)", bytes(24)).id == EncrId.TRIPLE_DES
    assert enc_from_xfrm("cbc(camellia)", bytes(32)).key_bits == 256
    assert integ_from_xfrm("hmac(sha256)").id == IntegId.HMAC_SHA2_256_96
    assert integ_from_xfrm("hmac(md5)", 128).id == IntegId.HMAC_MD5_128
    args = xfrm_args(get_encr(EncrId.AES_CTR, 128), bytes(20), get_integ(IntegId.AES_CMAC_96), bytes(16))
    assert args[:2] == ["enc", "rfc3686(ctr(aes))"] and args[4:6] == ["cmac(aes)", "0x" + "00" * 16]
    with pytest.raises(UnsupportedTransformError, match="not both"):
        esp_algorithms(aead=("rfc4106(gcm(aes))", bytes(20), 128), enc=("cbc(aes)", bytes(16)))


def test_sas_from_the_lab_sample_of_ip_xfrm_state():
    states = {s.spi: s for s in parse_xfrm_state(SAMPLE.read_text())}
    cbc = states[0xCAEA56F0]
    sa = EspSA.from_xfrm(cbc.spi, enc=cbc.enc, auth=cbc.auth, mode=cbc.mode, tunnel=(cbc.src, cbc.dst), esn=cbc.esn)
    assert (sa.encr.id, sa.encr.key_bits, sa.integ and sa.integ.id, sa.esn) == (
        EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, True)
    gcm = states[0xC440666F]
    assert gcm.encap is not None
    sa2 = EspSA.from_xfrm(gcm.spi, aead=gcm.aead, mode=gcm.mode, tunnel=(gcm.src, gcm.dst),
                          udp=gcm.encap[1:], replay_window=gcm.replay_window)
    assert (sa2.encr.id, sa2.encr.key_bits, sa2.udp, sa2.window.size) == (EncrId.AES_GCM_16, 256, (4500, 4500), 32)
    ah = states[0xABCD]
    assert ah.auth is not None
    ah_sa = AhSA.from_xfrm(ah.spi, auth=ah.auth, mode=ah.mode)
    assert ah_sa.integ.id == IntegId.HMAC_SHA2_256_128
    inner = bytes.fromhex("4500001c00010000401165cf0a0000010a000101003500350008ea72")
    for s in (sa, sa2):
        twin = EspSA.from_xfrm(s.spi, aead=gcm.aead if s is sa2 else None, enc=None if s is sa2 else cbc.enc,
                               auth=None if s is sa2 else cbc.auth, tunnel=s.tunnel, esn=s.esn, udp=s.udp)
        assert twin.unprotect(s.protect(inner)) == inner


@pytest.mark.parametrize(("encr_id", "bits", "integ_id"), [
    (EncrId.AES_GCM_16, 128, 0), (EncrId.AES_GCM_8, 256, 0), (EncrId.CHACHA20_POLY1305, 256, 0),
    (EncrId.NULL_AUTH_AES_GMAC, 192, 0), (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192),
    (EncrId.NULL, 0, IntegId.AES_XCBC_96),
])
def test_xfrm_args_round_trip_through_the_names(encr_id, bits, integ_id):
    encr = get_encr(encr_id, bits or None)
    integ = get_integ(integ_id) if integ_id else None
    key, ikey = bytes(range(encr.key_size)), bytes(range(integ.key_size)) if integ else b""
    args = xfrm_args(encr, key, integ, ikey)
    if encr.aead:
        assert args[0] == "aead" and len(args) == 4
        algs = esp_algorithms(aead=(args[1], bytes.fromhex(args[2][2:]), int(args[3])))
    else:
        assert args[0] == "enc" and args[3] == "auth-trunc"
        algs = esp_algorithms(enc=(args[1], bytes.fromhex(args[2][2:])), auth=(args[4], ikey, int(args[6])))
    assert (algs.encr, algs.encr_key, algs.integ, algs.integ_key) == (encr, key, integ, ikey)


def test_xfrm_args_for_ah_and_null_keys():
    assert xfrm_args(None, b"", get_integ(IntegId.HMAC_SHA1_96), bytes(20))[:2] == ["auth-trunc", "hmac(sha1)"]
    assert xfrm_args(get_encr(EncrId.NULL), b"", None, b"") == ["enc", "ecb(cipher_null)", ""]

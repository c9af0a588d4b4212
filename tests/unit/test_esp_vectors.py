"""Known answers for the ESP data plane: RFC 7634 Appendix A byte for byte through EspSA, and Scapy as a second oracle.

Scapy's ``SecurityAssociation`` is an independent implementation (its own ESP/AH framing,
padding, ESN and AH mutable-field code): every packet ipseclab makes must decrypt there,
and every packet Scapy makes must decrypt here.
"""

from __future__ import annotations

import pytest

from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import IntegrityError
from ipseclab.esp import AhSA, EspSA
from tests.vectors import load

H = bytes.fromhex
RFC7634 = load("rfc7634_chacha20poly1305")["vectors"][0]
TUN4 = ("198.51.100.1", "198.51.100.2")


def _rfc7634_sa(**kw) -> EspSA:
    return EspSA(int(RFC7634["spi"], 16), EncrId.CHACHA20_POLY1305, H(RFC7634["keymat"]), tunnel=TUN4, **kw)


def test_rfc7634_appendix_a_esp_packet_byte_for_byte():
    """RFC 7634 Appendix A: SPI 0x01020304, seq 5, IV 1011..17, an 84-byte ICMP packet in tunnel mode."""
    sa = _rfc7634_sa(seq=4)  # the last sequence number sent: the next one is 5
    esp = sa.encapsulate(H(RFC7634["inner_packet"]), 4, iv=H(RFC7634["iv"]))
    assert esp.hex() == RFC7634["esp_packet"]
    assert sa.seq == 5


def test_rfc7634_appendix_a_through_protect_with_an_rng_that_yields_the_iv():
    """The same packet from the IP-level API, the IV coming from the injected rng (random_iv mode)."""
    iv = H(RFC7634["iv"])
    sa = _rfc7634_sa(seq=4, random_iv=True, rng=lambda n: iv[:n].ljust(n, b"\0"))
    wire = sa.protect(H(RFC7634["inner_packet"]))
    assert wire[20:].hex() == RFC7634["esp_packet"]
    assert wire[9] == 50 and wire[12:20] == bytes([198, 51, 100, 1, 198, 51, 100, 2])


def test_rfc7634_appendix_a_decrypts_to_the_inner_packet_and_trailer():
    rx = _rfc7634_sa()
    payload, nh = rx.decapsulate(H(RFC7634["esp_packet"]))
    assert payload.hex() == RFC7634["inner_packet"] and nh == RFC7634["next_header"]
    assert rx.window.top == 5 and rx.counters.packets_in == 1


def test_rfc7634_appendix_a_with_one_bit_flipped_fails_and_leaves_the_window():
    rx = _rfc7634_sa()
    bad = bytearray(H(RFC7634["esp_packet"]))
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        rx.decapsulate(bytes(bad))
    assert rx.window.top == 0 and rx.counters.integrity_failures == 1


# --- Scapy's SecurityAssociation as an independent implementation ------------------------------------

scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")
from scapy.layers.inet import ICMP, IP, UDP, IPOption_Router_Alert, IPOption_RR  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, RouterAlert  # noqa: E402
from scapy.packet import Raw  # noqa: E402

K16, K20, K32, K36 = bytes(range(16)), bytes(range(20)), bytes(range(32)), bytes(range(36))
P4 = IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=1000, dport=2000) / Raw(b"hello" * 20)
P6 = IPv6(src="2001:db8::1", dst="2001:db8:1::1") / UDP(sport=1000, dport=2000) / Raw(b"hello" * 20)
P4_OPTIONS = IP(src="10.0.0.1", dst="10.0.1.1", tos=0x10, ttl=9,
                options=[IPOption_Router_Alert(), IPOption_RR(routers=["192.0.2.9"])]) / ICMP()
P6_EXT = (IPv6(src="2001:db8::1", dst="2001:db8:1::1", tc=0x20, fl=5) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
          / IPv6ExtHdrDestOpt() / UDP() / Raw(b"x" * 10))

ESP, AH = scapy_ipsec.ESP, scapy_ipsec.AH
# (name, our SA factory, scapy SA kwargs)
CASES = [
    ("gcm16-tunnel", lambda esn: EspSA(0x1000, EncrId.AES_GCM_16, K20, tunnel=TUN4, esn=esn),
     dict(proto=ESP, spi=0x1000, crypt_algo="AES-GCM", crypt_key=K20, tunnel_header=IP(src=TUN4[0], dst=TUN4[1]))),
    ("cbc-sha256-transport", lambda esn: EspSA(0x1001, EncrId.AES_CBC, K16, integ=IntegId.HMAC_SHA2_256_128,
                                                integ_key=K32, mode="transport", esn=esn),
     dict(proto=ESP, spi=0x1001, crypt_algo="AES-CBC", crypt_key=K16, auth_algo="SHA2-256-128", auth_key=K32)),
    ("chacha-transport", lambda esn: EspSA(0x1002, EncrId.CHACHA20_POLY1305, K36, mode="transport", esn=esn),
     dict(proto=ESP, spi=0x1002, crypt_algo="CHACHA20-POLY1305", crypt_key=K36)),
    ("gmac-transport", lambda esn: EspSA(0x1003, EncrId.NULL_AUTH_AES_GMAC, K20, mode="transport", esn=esn),
     dict(proto=ESP, spi=0x1003, crypt_algo="AES-NULL-GMAC", crypt_key=K20)),
    ("null-sha1-transport", lambda esn: EspSA(0x1004, EncrId.NULL, b"", integ=IntegId.HMAC_SHA1_96, integ_key=K20,
                                               mode="transport", esn=esn),
     dict(proto=ESP, spi=0x1004, crypt_algo="NULL", auth_algo="HMAC-SHA1-96", auth_key=K20)),
    ("ah-sha256-transport", lambda esn: AhSA(0x2000, IntegId.HMAC_SHA2_256_128, K32, mode="transport", esn=esn),
     dict(proto=AH, spi=0x2000, auth_algo="SHA2-256-128", auth_key=K32)),
    ("ah-sha1-tunnel6", lambda esn: AhSA(0x2001, IntegId.HMAC_SHA1_96, K20, tunnel=("2001:db8::a", "2001:db8::b"),
                                         esn=esn),
     dict(proto=AH, spi=0x2001, auth_algo="HMAC-SHA1-96", auth_key=K20,
          tunnel_header=IPv6(src="2001:db8::a", dst="2001:db8::b"))),
]


def _as_ip(data: bytes):
    return IP(data) if data[0] >> 4 == 4 else IPv6(data)


def _cross_cases():
    packets = {"v4": P4, "v6": P6, "v4-options": P4_OPTIONS, "v6-ext": P6_EXT}
    for name, ours, theirs in CASES:
        for pname, packet in packets.items():
            if "-" in pname and not name.startswith("ah"):
                continue  # header options matter for AH only
            for esn in (False, True):
                yield pytest.param(ours, theirs, packet, esn, id=f"{name}-{pname}-{'esn' if esn else 'no-esn'}")


@pytest.mark.parametrize(("ours", "theirs", "packet", "esn"), list(_cross_cases()))
def test_scapy_and_ipseclab_decrypt_each_other(ours, theirs, packet, esn):
    sa = ours(esn)
    ref = scapy_ipsec.SecurityAssociation(**theirs, esn_en=esn, esn=0)
    wire = sa.protect(bytes(packet))
    assert bytes(_as_ip(bytes(ref.decrypt(_as_ip(wire))))) == bytes(packet)
    assert sa.unprotect(bytes(ref.encrypt(packet))) == bytes(packet)


def test_scapy_agrees_on_esn_high_bits_after_the_wrap():
    """Sequence number 2^32 goes out as 0 on the wire; the ICV covers seq_hi = 1 (RFC 4303 2.2.1)."""
    sa = EspSA(0x1001, EncrId.AES_CBC, K16, integ=IntegId.HMAC_SHA2_256_128, integ_key=K32, mode="transport",
               esn=True, seq=2**32 - 1)
    wire = sa.protect(bytes(P4))
    assert wire[24:28] == bytes(4)  # the low 32 bits
    ref = scapy_ipsec.SecurityAssociation(ESP, 0x1001, crypt_algo="AES-CBC", crypt_key=K16,
                                          auth_algo="SHA2-256-128", auth_key=K32, esn_en=True, esn=1)
    assert bytes(ref.decrypt(IP(wire))) == bytes(P4)
    wrong = scapy_ipsec.SecurityAssociation(ESP, 0x1001, crypt_algo="AES-CBC", crypt_key=K16,
                                            auth_algo="SHA2-256-128", auth_key=K32, esn_en=True, esn=0)
    with pytest.raises(scapy_ipsec.IPSecIntegrityError):
        wrong.decrypt(IP(wire))


@pytest.mark.parametrize(("encr", "icv"), [(EncrId.AES_GCM_8, 8), (EncrId.AES_GCM_12, 12), (EncrId.AES_GCM_16, 16)])
def test_truncated_gcm_icv_is_the_head_of_the_full_tag(encr, icv):
    """RFC 4106 / SP 800-38D: the 8- and 12-byte ICVs are the first bytes of the 16-byte GCM tag.

    (Scapy 2.8 cannot check this: its AEAD path always emits 16-byte tags.)
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sa = EspSA(0x1005, encr, K20, mode="transport")
    wire = sa.protect(bytes(P4))
    esp = wire[20:]
    iv, body = esp[8:16], esp[16:]
    full = AESGCM(K20[:16]).encrypt(K20[16:] + iv, _plaintext_of(sa, esp), esp[:8])
    assert body == full[: len(full) - 16 + icv]


def _plaintext_of(sa: EspSA, esp: bytes) -> bytes:
    """Decrypt with ipseclab, then rebuild the plaintext with its trailer (padding, pad length, next header)."""
    rx = EspSA(sa.spi, sa.encr, sa.key, mode="transport")
    payload, nh = rx.decapsulate(esp)
    pad = -(len(payload) + 2) % 4
    return payload + bytes(range(1, pad + 1)) + bytes((pad, nh))

"""Wireshark (tshark 4.0 through pyshark) checks every ESP packet ipseclab makes, given ipseclab's esp_sa rows.

An external oracle: Wireshark's own ESP dissector, decrypting and verifying the ICV with
nothing but the exported rows.  Covers what Wireshark 4.0.17 can do: AES-GCM-8/12/16,
AES-CBC with HMAC-SHA1/SHA2, NULL with HMAC, tunnel and transport, IPv4 and IPv6, ESP and
ESP in UDP.  Not ESN (its esp_sa table has no such field), ChaCha20-Poly1305, GMAC or XCBC.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.analysis import esp_sa_row
from ipseclab.crypto import EncrId, IntegId, get_encr, get_integ
from ipseclab.esp import EspSA
from ipseclab.pcap.esp_keyfiles import EspSaRow
from ipseclab.pcap.trace import ipsec_packets as esp_records

pytestmark = pytest.mark.tshark

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SUITES = (
    [(e, b, None) for e in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16) for b in (128, 256)]
    + [(EncrId.AES_CBC, b, i) for b, i in ((128, IntegId.HMAC_SHA1_96), (256, IntegId.HMAC_SHA2_256_128),
                                          (192, IntegId.HMAC_SHA2_384_192), (128, IntegId.HMAC_SHA2_512_256))]
    + [(EncrId.NULL, 0, IntegId.HMAC_SHA2_256_128)]
)
LAYOUTS = [("tunnel", 4, 4), ("tunnel", 6, 6), ("tunnel", 4, 6), ("transport", 4, None), ("transport", 6, None)]


def _inner(v: int) -> bytes:
    if v == 4:
        return bytes(IP(src="198.51.100.1", dst="198.51.100.2") / ICMP() / Raw(b"ipseclab" * 8))
    return bytes(IPv6(src="2001:db8:ff::1", dst="2001:db8:ff::2") / UDP(sport=5000, dport=5001) / Raw(b"v6" * 30))


def _write(tmp_path: Path) -> tuple[Path, list[EspSaRow], int]:
    frames, rows = [], []
    spi = 0x5000
    for (encr_id, bits, integ_id), (mode, inner_v, outer), udp in itertools.product(SUITES, LAYOUTS, (False, True)):
        spi += 1
        encr = get_encr(encr_id, bits or None)
        integ = get_integ(integ_id) if integ_id else None
        tunnel = None
        if mode == "tunnel":
            tunnel = ("203.0.113.1", "203.0.113.2") if outer == 4 else ("2001:db8:aa::1", "2001:db8:aa::2")
        sa = EspSA(spi, encr, os.urandom(encr.key_size), integ=integ,
                   integ_key=os.urandom(integ.key_size) if integ else b"", mode=mode, tunnel=tunnel, udp=udp)
        for _ in range(2):
            wire = sa.protect(_inner(inner_v))
            frames.append(ETH / (IP(wire) if wire[0] >> 4 == 4 else IPv6(wire)))
        rows.append(esp_sa_row(sa, family="IPv4" if (outer or inner_v) == 4 else "IPv6"))
    path = tmp_path / "ipseclab-esp.pcap"
    wrpcap(str(path), frames)
    return path, rows, len(frames)


def test_tshark_verifies_and_decrypts_every_packet_ipseclab_makes(tmp_path: Path):
    path, rows, count = _write(tmp_path)
    recs = esp_records(path, rows)
    assert len(recs) == count
    bad = [r for r in recs if r.icv_good is not True or not r.decrypted]
    assert not bad, f"{len(bad)} of {count} packets not verified/decrypted by Wireshark, e.g. {bad[:3]}"
    assert sum(r.udp_encap for r in recs) == count // 2
    tunnel = [r for r in recs if r.inner and r.inner[0] in ("ip", "ipv6")]
    assert len(tunnel) == count * 3 // 5


def test_tshark_flags_a_wrong_key(tmp_path: Path):
    """The check above can fail: the same capture with the keys zeroed shows Wireshark's ICV failures."""
    path, rows, count = _write(tmp_path)
    wrong = [EspSaRow(r.family, r.src, r.dst, r.spi, r.encr_name, bytes(len(r.encr_key)), r.auth_name,
                      bytes(len(r.auth_key))) for r in rows]
    recs = esp_records(path, wrong)
    assert not any(r.icv_good for r in recs)
    # Wireshark marks almost all of them bad; a few AES-GCM ones whose garbage trailer it rejects stay unchecked
    assert sum(r.icv_good is False for r in recs) > count * 0.9


def test_the_trace_finds_ah_over_ipv4_and_ipv6_where_wireshark_puts_it(tmp_path: Path):
    """Wireshark dissects AH in IPv6 as an extension header (its fields inside the ipv6 layer, ah_spi...),
    in IPv4 as a layer of its own: the trace must see both (the ah-transport-ipv6 case reads it)."""
    from ipseclab.crypto import IntegId
    from ipseclab.esp import AhSA

    frames = []
    for spi, inner in ((0x7001, _inner(4)), (0x7002, bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:1::20")
                                                           / ICMP() / Raw(b"ah6")))):
        sa = AhSA(spi, IntegId.HMAC_SHA2_256_128, os.urandom(32), mode="transport")
        for _ in range(2):
            wire = sa.protect(inner)
            frames.append(ETH / (IP(wire) if wire[0] >> 4 == 4 else IPv6(wire)))
    path = tmp_path / "ah.pcap"
    wrpcap(str(path), frames)
    recs = esp_records(path, [])
    assert [(r.proto, r.spi, r.seq) for r in recs] == [("ah", 0x7001, 1), ("ah", 0x7001, 2), ("ah", 0x7002, 1),
                                                       ("ah", 0x7002, 2)]
    assert recs[2].src == "2001:db8:1::10" and recs[2].inner and not recs[2].tunnel

"""Round trips for every algorithm x tunnel/transport x IPv4/IPv6 x ESP/ESP-in-UDP/AH x ESN, with wire checks.

Each parametrised case runs the whole mode/version/encapsulation matrix for one algorithm
and ESN setting, naming the combination on failure.  On the wire: lengths, IPv4 header
checksums and IPv6 UDP checksums are checked by Scapy's own computation, and the
protocol fields (50, 51, UDP 4500) are where RFC 4303/4302/3948 put them.
"""

from __future__ import annotations

import itertools
import os

import pytest
from scapy.layers.inet import IP, UDP, IPOption_Router_Alert, IPOption_RR
from scapy.layers.inet6 import (
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    RouterAlert,
)
from scapy.packet import Raw

from ipseclab.crypto import EncrId, IntegId, get_encr, get_integ
from ipseclab.errors import ConfigError, IntegrityError
from ipseclab.esp import AhSA, EspSA, zero_mutable
from ipseclab.esp.iphdr import checksum

TUN4 = ("198.51.100.1", "198.51.100.2")
TUN6 = ("2001:db8:ff::1", "2001:db8:ff::2")


def _inner(version: int, size: int) -> bytes:
    body = Raw(os.urandom(max(0, size - (28 if version == 4 else 48))))
    if version == 4:
        return bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=1000, dport=2000) / body)
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8:1::1") / UDP(sport=1000, dport=2000) / body)


def _key(n: int) -> bytes:
    return os.urandom(n)


ESP_SUITES = (
    [(EncrId(e), b, None) for e in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16) for b in (128, 192, 256)]
    + [(EncrId.CHACHA20_POLY1305, 256, None)]
    + [(EncrId.NULL_AUTH_AES_GMAC, b, None) for b in (128, 192, 256)]
    + [(EncrId.AES_CBC, b, IntegId(i)) for b in (128, 256) for i in (
        IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256,
        IntegId.AES_XCBC_96)]
    + [(EncrId.AES_CBC, 192, IntegId.HMAC_SHA2_256_128)]
    + [(EncrId.NULL, 0, IntegId(i)) for i in (IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_256_128, IntegId.AES_XCBC_96)]
)
AH_INTEGS = [IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256,
             IntegId.AES_XCBC_96, IntegId.HMAC_MD5_96, IntegId.AES_CMAC_96]
# (mode, inner IP version, outer version or None for transport)
LAYOUTS = [("tunnel", 4, 4), ("tunnel", 4, 6), ("tunnel", 6, 4), ("tunnel", 6, 6), ("transport", 4, None),
           ("transport", 6, None)]


def _check_wire(wire: bytes, proto: int) -> None:
    """Lengths, checksums and the IPsec protocol field of a packet on the wire."""
    if wire[0] >> 4 == 4:
        ihl = (wire[0] & 15) * 4
        assert int.from_bytes(wire[2:4], "big") == len(wire)
        assert checksum(wire[:ihl]) == 0, "bad IPv4 header checksum"
        assert wire[9] == proto
        pkt = IP(wire)
    else:
        assert int.from_bytes(wire[4:6], "big") == len(wire) - 40
        pkt = IPv6(wire)
    if proto == 17:
        udp = pkt[UDP]
        assert (udp.sport, udp.dport) == (4500, 4500) and udp.len == len(bytes(udp))
        if wire[0] >> 4 == 6:
            got = udp.chksum
            del udp.chksum
            assert IPv6(bytes(pkt))[UDP].chksum == got, "bad UDP checksum over IPv6"
        else:
            assert udp.chksum == 0  # RFC 3948 2.1: zero over IPv4


def _esp_pair(encr, bits, integ, mode, outer, udp, esn):
    e = get_encr(encr, bits if encr != EncrId.NULL else None)
    key = _key(e.key_size)
    ikey = _key(get_integ(integ).key_size) if integ else b""
    tunnel = (TUN4 if outer == 4 else TUN6) if mode == "tunnel" else None
    kw = dict(integ=integ, integ_key=ikey, mode=mode, tunnel=tunnel, udp=udp, esn=esn)
    return EspSA(0x10000 + encr, e, key, **kw), EspSA(0x10000 + encr, e, key, **kw)


@pytest.mark.parametrize("esn", [False, True], ids=["no-esn", "esn"])
@pytest.mark.parametrize(("encr", "bits", "integ"), ESP_SUITES,
                         ids=[f"{EncrId(e).name}-{b}{'-' + i.name if i else ''}" for e, b, i in ESP_SUITES])
def test_esp_round_trips(encr, bits, integ, esn):
    for (mode, inner_v, outer), udp in itertools.product(LAYOUTS, (False, True)):
        where = f"{mode} inner=v{inner_v} outer={outer} udp={udp}"
        tx, rx = _esp_pair(encr, bits, integ, mode, outer, udp, esn)
        sent = 0
        for size in (48, 301, 1400):
            inner = _inner(inner_v, size)
            wire = tx.protect(inner)
            _check_wire(wire, 17 if udp else 50)
            if mode == "tunnel":
                assert wire[0] >> 4 == outer, where
            assert rx.unprotect(wire) == inner, where
            sent += len(inner) if mode == "tunnel" else len(inner) - (20 if inner_v == 4 else 40)
        assert (rx.counters.packets_in, rx.counters.bytes_in) == (3, sent), where
        assert (tx.counters.packets_out, tx.counters.bytes_out) == (3, sent), where
        assert rx.window.top == 3


@pytest.mark.parametrize("esn", [False, True], ids=["no-esn", "esn"])
@pytest.mark.parametrize("integ", AH_INTEGS, ids=[i.name for i in AH_INTEGS])
def test_ah_round_trips(integ, esn):
    for mode, inner_v, outer in LAYOUTS:
        where = f"{mode} inner=v{inner_v} outer={outer}"
        tunnel = (TUN4 if outer == 4 else TUN6) if mode == "tunnel" else None
        key = _key(get_integ(integ).key_size)
        tx = AhSA(0x2000, integ, key, mode=mode, tunnel=tunnel, esn=esn)
        rx = AhSA(0x2000, integ, key, mode=mode, tunnel=tunnel, esn=esn)
        for size in (48, 1400):
            inner = _inner(inner_v, size)
            wire = tx.protect(inner)
            _check_wire(wire, 51)
            out_v = wire[0] >> 4
            off = 20 if out_v == 4 else 40
            ah_len = (wire[off + 1] + 2) * 4
            assert ah_len % (4 if out_v == 4 else 8) == 0 and ah_len >= 12 + tx.icv_size, where
            assert rx.unprotect(wire) == inner, where
        assert rx.counters.packets_in == 2


# --- AH: what routers may change, and what they may not ---------------------------------------------------


def _ah(mode="transport", tunnel=None):
    key = bytes(range(32))
    return (AhSA(0x3000, IntegId.HMAC_SHA2_256_128, key, mode=mode, tunnel=tunnel),
            AhSA(0x3000, IntegId.HMAC_SHA2_256_128, key, mode=mode, tunnel=tunnel))


def _reencode(pkt):
    """Re-serialise a Scapy IP packet after editing, with a fresh checksum (as a router would)."""
    if isinstance(pkt, IP):
        del pkt.chksum
    return bytes(pkt)


def test_ah_ipv4_survives_router_changes_to_mutable_fields():
    tx, rx = _ah()
    inner = bytes(IP(src="10.0.0.1", dst="10.0.1.1", tos=0x10, ttl=64,
                     options=[IPOption_Router_Alert(), IPOption_RR(routers=["0.0.0.0"])]) / UDP() / Raw(b"x" * 30))
    wire = IP(tx.protect(inner))
    wire.ttl, wire.tos, wire.flags = 3, 0xB8, "DF"
    wire.options[1].routers = ["203.0.113.7"]  # record route filled in on the way
    out = rx.unprotect(_reencode(wire))
    # the payload's bytes, not Scapy's [Raw] layer: once scapy.all is loaded (the README block does), UDP port
    # 53 dissects as DNS
    assert out is not None and bytes(IP(out)[UDP].payload) == b"x" * 30


@pytest.mark.parametrize("edit", ["src", "router-alert", "payload"])
def test_ah_ipv4_catches_changes_to_immutable_fields(edit):
    tx, rx = _ah()
    inner = bytes(IP(src="10.0.0.1", dst="10.0.1.1", options=[IPOption_Router_Alert()]) / UDP() / Raw(b"x" * 30))
    raw = tx.protect(inner)
    if edit == "payload":
        data = raw[:-1] + bytes([raw[-1] ^ 1])
    else:
        wire = IP(raw)
        if edit == "src":
            wire.src = "10.0.0.9"
        else:
            wire.options[0].alert = 1
        data = _reencode(wire)
    with pytest.raises(IntegrityError):
        rx.unprotect(data)


def test_ah_ipv6_zeroes_traffic_class_flow_label_hop_limit_and_changeable_options():
    tx, rx = _ah()
    hbh = IPv6ExtHdrHopByHop(options=[RouterAlert(), HBHOptUnknown(otype=0x3E, optdata=b"\x01\x02")])
    inner = bytes(IPv6(src="2001:db8::1", dst="2001:db8:1::1", tc=0, fl=0, hlim=64) / hbh / UDP() / Raw(b"x" * 9))
    wire = IPv6(tx.protect(inner))
    wire.tc, wire.fl, wire.hlim = 0xB8, 0x12345, 1
    wire[IPv6ExtHdrHopByHop].options[1].optdata = b"\xff\xee"  # type 0x3e: "may change" bit set
    assert rx.unprotect(bytes(wire)) is not None
    wire2 = IPv6(tx.protect(inner))
    wire2[IPv6ExtHdrHopByHop].options[0].value = 2  # router alert (type 5): immutable
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(wire2))


def test_ah_ipv6_routing_header_is_authenticated_as_seen_at_the_destination():
    """RFC 4302 A.2: type 0/2 routing headers are mutable but predictable."""
    tx, rx = _ah()
    hops = ["2001:db8:2::1", "2001:db8:1::1"]
    sent = IPv6(src="2001:db8::1", dst="2001:db8:3::1") / IPv6ExtHdrRouting(type=0, addresses=hops, segleft=2) / UDP()
    wire = IPv6(tx.protect(bytes(sent)))
    # the packet as it arrives after both hops: destination and address list rotated, segments left 0
    wire.dst = "2001:db8:1::1"
    wire[IPv6ExtHdrRouting].addresses = ["2001:db8:3::1", "2001:db8:2::1"]
    wire[IPv6ExtHdrRouting].segleft = 0
    assert rx.unprotect(bytes(wire)) is not None


def test_zero_mutable_ipv4_clears_exactly_the_rfc_fields():
    hdr = bytes(IP(src="10.0.0.1", dst="10.0.1.1", tos=0xFF, ttl=200, flags="DF", frag=0,
                   options=[IPOption_Router_Alert(), IPOption_RR(routers=["1.2.3.4"])]))[:32]
    z = zero_mutable(hdr)
    assert z[1] == 0 and z[6:8] == b"\0\0" and z[8] == 0 and z[10:12] == b"\0\0"
    assert z[20:24] == hdr[20:24]  # router alert kept
    assert z[24:] == bytes(len(hdr) - 24)  # record route zeroed, type and length included


# --- IPv6 extension headers in transport mode --------------------------------------------------------------


def _esp_transport():
    key = bytes(range(20))
    return (EspSA(0x5000, EncrId.AES_GCM_16, key, mode="transport"),
            EspSA(0x5000, EncrId.AES_GCM_16, key, mode="transport"))


def test_esp_goes_after_hop_by_hop_routing_and_leading_dest_opts_before_the_final_dest_opts():
    tx, rx = _esp_transport()
    inner = bytes(IPv6(src="2001:db8::1", dst="2001:db8:3::1") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                  / IPv6ExtHdrRouting(addresses=["2001:db8:2::1"], segleft=1) / IPv6ExtHdrDestOpt() / UDP())
    wire = tx.protect(inner)
    # HbH (8) + DestOpts (8) + Routing (24) stay in front; the final DestOpts is encrypted
    assert wire[6] == 0 and wire[40] == 60 and wire[48] == 43 and wire[56] == 50
    assert int.from_bytes(wire[80:84], "big") == 0x5000  # the SPI right after the routing header
    assert rx.unprotect(wire) == inner


def test_esp_transport_v6_without_extension_headers_and_with_a_lone_dest_opts():
    tx, rx = _esp_transport()
    plain = bytes(IPv6(src="2001:db8::1", dst="2001:db8:3::1") / UDP())
    assert tx.protect(plain)[6] == 50
    lone = bytes(IPv6(src="2001:db8::1", dst="2001:db8:3::1") / IPv6ExtHdrDestOpt() / UDP())
    wire = tx.protect(lone)
    assert wire[6] == 50  # a final destination options header goes after ESP
    assert rx.unprotect(wire) == lone


def test_linux_style_dest_opts_before_esp_is_accepted_on_receipt():
    """Linux leaves a lone Destination Options header in front of ESP: ipseclab walks past it."""
    tx, rx = _esp_transport()
    esp = tx.encapsulate(bytes(UDP(sport=1, dport=2)), 17)
    pkt = IPv6(src="2001:db8::1", dst="2001:db8:3::1") / IPv6ExtHdrDestOpt(nh=50) / Raw(esp)
    out = rx.unprotect(bytes(pkt))
    assert out is not None and IPv6(out)[IPv6ExtHdrDestOpt].nh == 17


def test_esp_suite_validation():
    with pytest.raises(ConfigError, match="combined-mode"):
        EspSA(1, EncrId.AES_GCM_16, bytes(20), integ=IntegId.HMAC_SHA1_96, integ_key=bytes(20), mode="transport")
    with pytest.raises(ConfigError, match="integrity"):
        EspSA(1, EncrId.AES_CBC, bytes(16), mode="transport")
    with pytest.raises(ConfigError, match="key"):
        EspSA(1, EncrId.NULL, b"", integ=IntegId.HMAC_SHA1_96, integ_key=bytes(3), mode="transport")
    with pytest.raises(ConfigError, match="tunnel"):
        EspSA(1, EncrId.AES_GCM_16, bytes(20))
    with pytest.raises(ConfigError, match="SPI"):
        EspSA(0, EncrId.AES_GCM_16, bytes(20), mode="transport")


def test_ah_ipv4_pads_to_64_bits_like_linux_unless_align4():
    """Linux drops an IPv4 AH header not padded to 64 bits unless its SA has ``flag align4`` (seen under UML)."""
    key = bytes(32)
    inner = _inner(4, 60)
    linux = AhSA(0x10, IntegId.HMAC_SHA2_256_128, key, mode="transport")
    rfc = AhSA(0x10, IntegId.HMAC_SHA2_256_128, key, mode="transport", align4=True)
    assert (linux.ah_length(4), rfc.ah_length(4), linux.ah_length(6), rfc.ah_length(6)) == (32, 28, 32, 32)
    a, b = linux.protect(inner), rfc.protect(inner)
    assert len(a) == len(b) + 4 and a[21] == 6 and b[21] == 5
    for wire in (a, b):  # either layout is accepted on receipt
        assert AhSA(0x10, IntegId.HMAC_SHA2_256_128, key, mode="transport").unprotect(wire) == inner

"""TFC padding and dummy packets, NAT-T, the SPD, one error type and counter per refusal, and the Scapy face."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ipseclab.crypto import EncrId, IntegId, get_integ
from ipseclab.errors import (
    DecodeError,
    IntegrityError,
    NoPolicyError,
    PaddingError,
    ReplayError,
    SelectorMismatchError,
    TruncatedPacketError,
    UnknownSpiError,
)
from ipseclab.esp import AhSA, EspSA, Spd, TrafficSelector, nat_keepalive, packet_flow

TUN = ("198.51.100.1", "198.51.100.2")
GCM = dict(encr=EncrId.AES_GCM_16, key=bytes(range(20)))


def _pair(**kw) -> tuple[EspSA, EspSA]:
    args = {**GCM, "tunnel": TUN, **kw}
    return EspSA(0x1111, **args), EspSA(0x1111, **args)


def _ip(size: int, dst: str = "10.0.1.1", src: str = "10.0.0.1") -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=1000, dport=2000) / Raw(b"u" * max(0, size - 28)))


# --- TFC (RFC 4303 2.7) ------------------------------------------------------------------------------------


def test_tfc_pads_tunnel_packets_to_one_size_and_the_receiver_cuts_it_off():
    tx, rx = _pair(tfc_pad_to=1000)
    lengths = set()
    for size in (40, 500, 999):
        inner = _ip(size)
        wire = tx.protect(inner)
        lengths.add(len(wire))
        assert rx.unprotect(wire) == inner
    assert len(lengths) == 1
    assert tx.counters.bytes_out == 40 + 500 + 999  # counters see the real payload
    bigger = _ip(1200)
    assert rx.unprotect(tx.protect(bigger)) == bigger  # larger than the target: sent as is


def test_tfc_in_transport_mode_pads_udp_but_not_tcp():
    key = bytes(range(20))
    tx = EspSA(0x22, EncrId.AES_GCM_16, key, mode="transport", tfc_pad_to=600)
    rx = EspSA(0x22, EncrId.AES_GCM_16, key, mode="transport")
    udp = _ip(100)
    tcp = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / TCP() / Raw(b"t" * 60))
    wu, wt = tx.protect(udp), tx.protect(tcp)
    assert len(wu) > 600 and len(wt) < 200  # TCP carries no length of its own: no TFC padding after it
    assert rx.unprotect(wu) == udp and rx.unprotect(wt) == tcp


@pytest.mark.parametrize("udp", [False, True], ids=["esp", "esp-in-udp"])
def test_dummy_packets_are_discarded_counted_and_still_move_the_window(udp):
    tx, rx = _pair(udp=udp)
    dummy = tx.dummy_packet(300)
    assert len(dummy) > 300
    assert rx.unprotect(dummy) is None
    assert (rx.counters.dummies_in, rx.counters.packets_in, rx.window.top) == (1, 0, 1)
    with pytest.raises(ReplayError):
        rx.unprotect(dummy)
    inner = _ip(60)
    assert rx.unprotect(tx.protect(inner)) == inner
    assert tx.counters.dummies_out == 1 and tx.counters.packets_out == 1


def test_dummy_at_the_esp_level_is_next_header_59():
    tx, rx = _pair()
    assert rx.decapsulate(tx.encapsulate(b"\0" * 20, 59)) == (b"\0" * 20, 59)
    assert rx.counters.dummies_in == 1


def test_transport_dummy_needs_addresses():
    sa = EspSA(0x33, **GCM, mode="transport")
    pkt = sa.dummy_packet(10, src="198.51.100.1", dst="198.51.100.2")
    assert EspSA(0x33, **GCM, mode="transport").unprotect(pkt) is None


# --- NAT-T (RFC 3948) -------------------------------------------------------------------------------------


def test_esp_in_udp_is_the_esp_packet_after_an_8_byte_udp_header():
    tx, rx = _pair(udp=(4500, 4501))
    wire = tx.protect(_ip(100))
    assert wire[9] == 17 and struct.unpack("!HHHH", wire[20:28])[:2] == (4500, 4501)
    assert struct.unpack("!I", wire[28:32])[0] == 0x1111  # ESP starts right after UDP (no marker)
    assert rx.unprotect(wire) == _ip(100)


def test_nat_keepalive_is_counted_and_ike_on_4500_is_not_esp():
    _, rx = _pair(udp=True)
    ka = nat_keepalive("198.51.100.2", "198.51.100.1")
    assert len(ka) == 29 and ka[-1] == 0xFF and IP(ka)[UDP].dport == 4500
    assert rx.unprotect(ka) is None and rx.counters.keepalives_in == 1
    assert rx.keepalive_packet() == nat_keepalive(*TUN)
    ike = bytes(IP(src=TUN[1], dst=TUN[0]) / UDP(sport=4500, dport=4500) / Raw(bytes(4) + b"IKE..." * 5))
    with pytest.raises(DecodeError, match="non-ESP marker"):
        rx.unprotect(ike)
    assert rx.counters.decode_errors == 1


def test_esp_in_udp_over_ipv6_carries_a_valid_checksum():
    tx, rx = _pair(udp=True, tunnel=("2001:db8:ff::1", "2001:db8:ff::2"))
    raw = tx.protect(_ip(200))
    wire = IPv6(raw)
    got = wire[UDP].chksum
    del wire[UDP].chksum
    assert got != 0 and IPv6(bytes(wire))[UDP].chksum == got
    assert rx.unprotect(raw) == _ip(200)


# --- errors: one type and one counter each; the window never moves ------------------------------------------


def test_truncated_packets():
    tx, rx = _pair()
    wire = tx.protect(_ip(100))
    for cut in (10, 25, 36, len(wire) - 30):
        bad = bytearray(wire[:cut])
        if cut >= 20:
            bad[2:4] = struct.pack("!H", cut)  # a consistent IP header around a short ESP packet
        with pytest.raises((TruncatedPacketError, IntegrityError)):
            rx.unprotect(bytes(bad))
    assert rx.window.top == 0 and rx.counters.decode_errors >= 3


def test_unknown_spi():
    tx, _ = _pair()
    other = EspSA(0x2222, **GCM, tunnel=TUN)
    with pytest.raises(UnknownSpiError) as err:
        other.unprotect(tx.protect(_ip(64)))
    assert err.value.spi == 0x1111 and err.value.notify == 11 and other.counters.unknown_spi == 1


def test_bad_padding_with_a_good_icv_is_a_padding_error():
    ikey = bytes(range(20))
    sa = EspSA(0x44, EncrId.NULL, b"", integ=IntegId.HMAC_SHA1_96, integ_key=ikey, mode="transport")
    body = b"data" + b"\x01\x02\x09" + bytes((3, 17))  # pad bytes 1, 2, 9: not 1, 2, 3
    signed = struct.pack("!II", 0x44, 1) + body
    esp = signed + get_integ(IntegId.HMAC_SHA1_96).compute(ikey, signed)
    with pytest.raises(PaddingError):
        sa.decapsulate(esp)
    long_pad = struct.pack("!II", 0x44, 1) + b"ab" + bytes((40, 17))
    with pytest.raises(PaddingError, match="longer"):
        sa.decapsulate(long_pad + get_integ(IntegId.HMAC_SHA1_96).compute(ikey, long_pad))
    assert sa.counters.padding_errors == 2 and sa.window.top == 0


def test_every_error_is_an_ipseclab_error_of_the_documented_family():
    from ipseclab.errors import IpsecLabError, LocalProtocolError, RemoteProtocolError

    for cls in (TruncatedPacketError, PaddingError, UnknownSpiError, ReplayError, IntegrityError,
                SelectorMismatchError):
        assert issubclass(cls, RemoteProtocolError)
    assert issubclass(TruncatedPacketError, DecodeError) and issubclass(PaddingError, DecodeError)
    assert issubclass(NoPolicyError, LocalProtocolError) and issubclass(NoPolicyError, IpsecLabError)


def test_outer_ecn_congestion_mark_reaches_the_inner_packet():
    tx, rx = _pair()
    inner = bytes(IP(src="10.0.0.1", dst="10.0.1.1", tos=0x02) / UDP())  # ECT(0)
    wire = IP(tx.protect(inner))
    assert wire.tos == 0x02  # copied out (RFC 6040 normal mode)
    wire.tos = 0x03  # a router marked CE on the outer header
    del wire.chksum
    out = IP(rx.unprotect(bytes(wire)))
    assert out.tos == 0x03 and IP(bytes(out.copy())).chksum == out.chksum


# --- SPD --------------------------------------------------------------------------------------------------


def _spd():
    key = bytes(range(20))
    web_out, web_in = EspSA(0xA1, EncrId.AES_GCM_16, key, tunnel=TUN), EspSA(0xA2, EncrId.AES_GCM_16, key, tunnel=TUN)
    dns_out = EspSA(0xB1, EncrId.AES_GCM_16, key, tunnel=TUN)
    spd = Spd()
    local = TrafficSelector.subnet("10.0.0.0/24")
    spd.add(local, TrafficSelector.subnet("10.0.2.0/24", proto=17, ports=53), outbound=dns_out, name="dns")
    spd.add(local, TrafficSelector.subnet("10.0.1.0/24"), outbound=web_out, inbound=web_in, name="lan")
    spd.add(TrafficSelector.any(), TrafficSelector.any(), "bypass", name="rest")
    return spd, web_out, web_in, dns_out


def test_spd_picks_the_sa_by_selectors_and_bypasses_the_rest():
    spd, *_ = _spd()
    assert spd.lookup(_ip(64, dst="10.0.1.9")).name == "lan"
    dns = bytes(IP(src="10.0.0.1", dst="10.0.2.2") / UDP(sport=3333, dport=53))
    assert spd.lookup(dns).name == "dns"
    assert spd.lookup(bytes(IP(src="10.0.0.1", dst="10.0.2.2") / UDP(dport=54))).name == "rest"
    wire = spd.outbound(dns)
    assert wire is not None and struct.unpack("!I", wire[20:24])[0] == 0xB1
    assert spd.outbound(_ip(64, dst="192.0.2.77")) == _ip(64, dst="192.0.2.77")


def test_spd_discard_and_no_policy():
    spd = Spd()
    spd.add(TrafficSelector.subnet("10.0.0.0/8"), TrafficSelector.subnet("10.0.0.0/8"), "discard")
    assert spd.outbound(_ip(64)) is None and spd.counters.outbound_discarded == 1
    with pytest.raises(NoPolicyError):
        spd.outbound(_ip(64, src="172.16.0.1"))


def test_spd_inbound_demux_selector_check_and_unknown_spi():
    spd, _, web_in, _ = _spd()
    peer = EspSA(0xA2, **GCM, tunnel=(TUN[1], TUN[0]))  # the peer's outbound SA = our inbound one
    ok = bytes(IP(src="10.0.1.5", dst="10.0.0.7") / ICMP())
    assert spd.inbound(peer.protect(ok)) == ok
    spoofed = bytes(IP(src="10.9.9.9", dst="10.0.0.7") / ICMP())  # authentic, but outside the SA's selectors
    with pytest.raises(SelectorMismatchError):
        spd.inbound(peer.protect(spoofed))
    assert web_in.counters.selector_mismatches == 1 and web_in.window.top == 1
    stranger = EspSA(0xDEAD, **GCM, tunnel=TUN)
    with pytest.raises(UnknownSpiError):
        spd.inbound(stranger.protect(ok))
    assert spd.counters.unknown_spi == 1


def test_spd_inbound_clear_packets_need_bypass():
    spd, *_ = _spd()
    clear = _ip(64, src="192.0.2.1", dst="10.0.0.1")
    assert spd.inbound(clear) == clear
    strict = Spd()
    with pytest.raises(NoPolicyError):
        strict.inbound(clear)
    assert strict.inbound(nat_keepalive(*TUN)) is None


def test_ah_sa_in_the_spd():
    key = bytes(32)
    ah_in = AhSA(0xC1, IntegId.HMAC_SHA2_256_128, key, mode="transport")
    spd = Spd()
    spd.add(TrafficSelector.subnet("10.0.0.1/32"), TrafficSelector.subnet("10.0.1.0/24"), inbound=ah_in)
    peer = AhSA(0xC1, IntegId.HMAC_SHA2_256_128, key, mode="transport")
    pkt = bytes(IP(src="10.0.1.1", dst="10.0.0.1") / UDP() / Raw(b"a" * 10))
    assert spd.inbound(peer.protect(pkt)) == pkt


def test_packet_flow_reads_ports_and_icmp_type():
    f = packet_flow(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=6)))
    assert (f.version, f.proto, f.sport, f.dport) == (6, 17, 5, 6)
    f = packet_flow(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0)))
    assert (f.proto, f.sport) == (1, 8 << 8)


# --- the Scapy face ------------------------------------------------------------------------------------------


def test_scapy_packets_in_and_out():
    tx, rx = _pair()
    pkt = IP(src="10.0.0.1", dst="10.0.1.1") / ICMP() / Raw(b"ping")
    enc = tx.encrypt(pkt)
    assert isinstance(enc, IP) and enc.haslayer(ESP) and enc[ESP].spi == 0x1111 and enc.dst == TUN[1]
    assert bytes(rx.decrypt(enc)) == bytes(pkt)
    assert bytes(rx.decrypt(tx.encrypt(Ether() / pkt))) == bytes(pkt)  # a link layer in front is dropped
    crafted = tx.encrypt(pkt, seq_num=77, iv=b"\x01" * 8)
    assert crafted[ESP].seq == 77 and bytes(crafted[ESP])[8:16] == b"\x01" * 8 and tx.seq == 2
    assert rx.decrypt(bytes(tx.encrypt(pkt))) == bytes(pkt)  # bytes in, bytes out
    assert "EspSA(spi=0x00001111" in repr(tx) and "AhSA" in repr(AhSA(5, key=bytes(32), mode="transport"))


@pytest.mark.parametrize("udp", [False, True], ids=["esp", "esp-in-udp"])
def test_bad_padding_inside_an_aead_tunnel_packet(udp):
    """The inline receive path (tunnel, AEAD, IPv4) hands unusual plaintexts to the general checks."""
    from ipseclab.crypto import get_encr

    key = bytes(range(20))
    rx = EspSA(0x1111, EncrId.AES_GCM_16, key, tunnel=TUN, udp=udp)
    inner = _ip(64)
    hdr, iv = struct.pack("!II", 0x1111, 1), b"\x07" * 8
    body = get_encr(EncrId.AES_GCM_16, 128).keyed(key).encrypt(iv, inner + b"\x01\x07" + bytes((2, 4)), hdr)
    esp = hdr + iv + body
    outer = IP(src=TUN[0], dst=TUN[1]) / (UDP(sport=4500, dport=4500, chksum=0) / Raw(esp) if udp else Raw(esp))
    if not udp:
        outer.proto = 50
    with pytest.raises(PaddingError):
        rx.unprotect(bytes(outer))
    assert rx.counters.padding_errors == 1 and rx.window.top == 0

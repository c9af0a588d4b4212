"""The endpoint's data plane without root: SPD lookup over every installed pair, the rekey hand-over, the
inbound policy check of RFC 4301 5.2 with its counters, and RFC 3948 3.1.2's checksum fix.

Packets are built by Scapy, and Scapy's own checksum computation is the oracle for the fix; the pairs
come from two engines that negotiated in memory (ike.loopback)."""

from __future__ import annotations

import dataclasses

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from ipseclab.endpoint.dataplane import DataPlane, pair_selectors, selector_networks
from ipseclab.esp.iphdr import fix_l4_checksum
from ipseclab.ike import ChildSaEstablished, IkeConfig
from ipseclab.ike.loopback import handshake

LEFT, RIGHT = "198.51.100.10", "198.51.100.20"


def _children(**kw) -> tuple[ChildSaEstablished, ChildSaEstablished]:
    li = IkeConfig("left.lab", "right.lab", b"psk", local_ts=kw.pop("left_ts", ("203.0.113.0/26",)),
                   remote_ts=kw.pop("right_ts", ("203.0.113.64/26",)), **kw)
    ri = IkeConfig("right.lab", "left.lab", b"psk", local_ts=li.remote_ts, remote_ts=li.local_ts, **kw)
    i, r = handshake(li, ri)
    (ci,), (cr,) = i.of(ChildSaEstablished), r.of(ChildSaEstablished)
    return ci, cr  # type: ignore[return-value]


def _planes(**kw) -> tuple[DataPlane, DataPlane, ChildSaEstablished, ChildSaEstablished]:
    ci, cr = _children(**kw)
    left, right = DataPlane(LEFT), DataPlane(RIGHT)
    left.install(ci, RIGHT)
    right.install(cr, LEFT)
    return left, right, ci, cr


def _ping(src: str = "203.0.113.1", dst: str = "203.0.113.65", seq: int = 1) -> bytes:
    return bytes(IP(src=src, dst=dst, id=seq) / ICMP(id=7, seq=seq) / Raw(b"x" * 32))


def test_a_packet_the_spd_covers_crosses_and_one_it_does_not_is_dropped_and_counted():
    left, right, _, _ = _planes()
    out = left.outbound(_ping())
    assert out is not None and not out.udp and IP(out.data).dst == RIGHT and IP(out.data).proto == 50
    got = right.inbound(out.data)
    assert got is not None and got[1] == _ping()
    assert left.outbound(_ping(dst="203.0.113.200")) is None
    assert left.counters.no_policy == 1 and (left.counters.packets_out, right.counters.packets_in) == (1, 1)


def test_replay_integrity_unknown_spi_each_have_their_counter():
    left, right, _, _ = _planes()
    out = left.outbound(_ping())
    assert out is not None
    assert right.inbound(out.data) is not None and right.inbound(out.data) is None
    forged = bytearray(left.outbound(_ping(seq=2)).data)  # type: ignore[union-attr]
    forged[-1] ^= 1
    assert right.inbound(bytes(forged)) is None
    stranger = bytearray(left.outbound(_ping(seq=3)).data)  # type: ignore[union-attr]
    stranger[20:24] = b"\x0b\xad\xbe\xef"
    assert right.inbound(bytes(stranger)) is None
    c = right.counters
    assert (c.replay, c.integrity, c.unknown_spi, c.packets_in) == (1, 1, 1, 1)


def test_a_packet_that_decrypts_but_lies_outside_the_sas_selectors_is_dropped_as_policy_mismatch():
    """RFC 4301 5.2: the peer (here its SA used directly, bypassing its SPD) sends what the SA does not cover."""
    left, right, ci, _ = _planes()
    sa = left.pairs[ci.spi_in].out
    assert right.inbound(sa.protect(_ping(src="203.0.113.1", dst="203.0.113.70"))) is not None
    assert right.inbound(sa.protect(_ping(src="203.0.113.99", dst="203.0.113.70"))) is None
    assert right.counters.policy_mismatch == 1


def test_rekey_hand_over_old_inbound_stays_valid_and_outbound_moves_when_the_engine_says():
    left, right, ci, cr = _planes()
    old_sa = left.pairs[ci.spi_in].out
    # a peer's rekey: the new pair is installed inbound-only (the engine's ``outbound`` False), then moved
    new_r = dataclasses.replace(cr, spi_in=cr.spi_in + 1, spi_out=cr.spi_out + 1, rekeyed=cr.spi_in,
                                outbound=False)
    right.install(new_r, LEFT)
    assert right.pairs[cr.spi_in].policy is not None and right.pairs[new_r.spi_in].policy is None
    still_old = right.outbound(_ping("203.0.113.65", "203.0.113.1"))
    assert still_old is not None and int.from_bytes(still_old.data[20:24], "big") == cr.spi_out
    right.carry(new_r.spi_in, cr.spi_in)  # ChildSaOutbound
    out = right.outbound(_ping("203.0.113.65", "203.0.113.1"))
    assert out is not None and int.from_bytes(out.data[20:24], "big") == new_r.spi_out
    assert len(right.spd.policies) == 1
    # the old inbound SA still accepts until its ChildSaDeleted
    assert right.inbound(old_sa.protect(_ping(seq=5))) is not None
    right.remove(cr.spi_in)
    assert right.inbound(old_sa.protect(_ping(seq=6))) is None and right.counters.unknown_spi == 1
    assert right.remove(cr.spi_in) is None


def test_our_own_rekey_moves_outbound_at_once():
    left, _, ci, _ = _planes()
    new = dataclasses.replace(ci, spi_in=ci.spi_in + 1, spi_out=ci.spi_out + 1, rekeyed=ci.spi_in)
    left.install(new, RIGHT)
    out = left.outbound(_ping())
    assert out is not None and out.pair.spi_in == new.spi_in and left.pairs[ci.spi_in].policy is None


def test_an_additional_child_sa_for_other_selectors_gets_its_own_policy():
    left, _, _, _ = _planes()
    ci2, _ = _children(left_ts=("10.1.0.0/16",), right_ts=("10.2.0.0/16",))
    left.install(dataclasses.replace(ci2, spi_in=ci2.spi_in ^ 1), RIGHT)
    a, b = left.outbound(_ping()), left.outbound(_ping("10.1.0.5", "10.2.0.9"))
    assert a is not None and b is not None and a.pair is not b.pair and len(left.spd.policies) == 2
    assert [str(n) for n in selector_networks(b.pair.selectors.remote)] == ["10.2.0.0/16"]
    assert len(left.clear()) == 2 and left.outbound(_ping()) is None


def test_selectors_of_a_range_become_the_cidr_blocks_routes_need():
    ci, _ = _children(left_ts=("203.0.113.0/26",), right_ts=("203.0.113.64/26", "2001:db8:2::/64"))
    sel = pair_selectors(ci, LEFT, RIGHT)
    assert [str(n) for n in selector_networks(sel.remote)] == ["203.0.113.64/26", "2001:db8:2::/64"]


def _tcp(src: str, dst: str) -> IP:
    return IP(src=src, dst=dst, id=9) / TCP(sport=40000, dport=5001, flags="PA", seq=1, ack=1) / Raw(b"y" * 101)


@pytest.mark.parametrize("pkt", [
    _tcp("198.51.100.10", "203.0.113.130"),
    IP(src="198.51.100.10", dst="203.0.113.130") / UDP(sport=1, dport=2) / Raw(b"abc"),
    IPv6(src="2001:db8:1::10", dst="2001:db8:1::20") / TCP(sport=1, dport=2) / Raw(b"z" * 7),
    IPv6(src="2001:db8:1::10", dst="2001:db8:1::20") / UDP(sport=1, dport=2) / Raw(b"z" * 33),
])
def test_the_checksum_fix_gives_what_scapy_computes_for_the_addresses_on_the_wire(pkt):
    """RFC 3948 3.1.2: the sender's checksum covers its addresses; the receiver sees the NAT's."""
    sent = bytes(pkt)  # checksums for the sender's view
    seen = pkt.__class__(sent)
    seen.src = "203.0.113.129" if seen.version == 4 else "2001:db8:9::1"
    if seen.version == 4:
        del seen.chksum
    wrong = bytes(seen)  # the IP header rewritten, the TCP/UDP checksum as sent
    oracle = seen.__class__(wrong)
    del oracle.payload.chksum  # Scapy computes it again for the header as it is now
    assert fix_l4_checksum(wrong) == bytes(oracle) != wrong


def test_the_checksum_fix_leaves_udp_without_checksum_icmp_and_fragments_alone():
    none = bytearray(bytes(IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2) / Raw(b"q")))
    none[26:28] = b"\0\0"
    assert fix_l4_checksum(bytes(none)) == bytes(none)
    icmp = _ping()
    assert fix_l4_checksum(icmp) == icmp
    frag = bytes(IP(src="1.2.3.4", dst="5.6.7.8", flags="MF") / TCP() / Raw(b"r" * 8))
    assert fix_l4_checksum(frag) == frag


def test_transport_mode_behind_a_nat_uses_the_wire_addresses_and_fixes_tcp_checksums():
    """The left host is 198.51.100.10 behind a NAT that right sees as 203.0.113.129 (the lab's nat topology)."""
    ci, cr = _children(mode="transport", left_ts=("198.51.100.10/32",), right_ts=("203.0.113.130/32",))
    ci, cr = dataclasses.replace(ci, udp_encap=True), dataclasses.replace(cr, udp_encap=True)
    left, right = DataPlane("198.51.100.10"), DataPlane("203.0.113.130")
    left.install(ci, "203.0.113.130")
    right.install(cr, "203.0.113.129")
    sent = bytes(_tcp("198.51.100.10", "203.0.113.130"))
    out = left.outbound(sent)
    assert out is not None and out.udp  # ESP bytes for the UDP 4500 socket
    got = right.inbound_udp(out.data, "203.0.113.129", "203.0.113.130")
    assert got is not None
    oracle = IP(got[1])
    assert (oracle.src, oracle.dst) == ("203.0.113.129", "203.0.113.130")
    del oracle[TCP].chksum
    assert got[1] == bytes(oracle) and right.counters.checksum_fixed == 1
    reply = bytes(_tcp("203.0.113.130", "203.0.113.129"))
    back = right.outbound(reply)
    assert back is not None
    got = left.inbound_udp(back.data, "203.0.113.130", "198.51.100.10")
    assert got is not None and IP(got[1]).dst == "198.51.100.10"
    oracle = IP(got[1])
    del oracle[TCP].chksum
    assert got[1] == bytes(oracle)


def test_ah_over_ipv6_checks_the_header_rebuilt_from_a_raw_sockets_payload():
    """A raw IPv6 socket hands over AH and what follows; the rebuilt header must give the same ICV."""
    ci, cr = _children(mode="transport", protocol="ah", left_ts=("2001:db8:1::10/128",),
                       right_ts=("2001:db8:1::20/128",))
    left, right = DataPlane("2001:db8:1::10"), DataPlane("2001:db8:1::20")
    left.install(ci, "2001:db8:1::20")
    right.install(cr, "2001:db8:1::10")
    sent = bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:1::20", hlim=64) / TCP(sport=1, dport=2) / Raw(b"h"))
    out = left.outbound(sent)
    assert out is not None and IPv6(out.data).nh == 51
    wire = bytearray(out.data)
    wire[7] = 61  # routers decrement the hop limit: mutable, outside the ICV (RFC 4302 3.3.3.1.2)
    packet = right.ipv6_packet(bytes(wire[40:]), 51, "2001:db8:1::10", "2001:db8:1::20")
    got = right.inbound(packet)
    assert got is not None and IPv6(got[1])[Raw].load == b"h"


# --- TFC padding and dummy packets (RFC 4303 2.6, 2.7), Scapy's ESP as the oracle ---------------------------

scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")


def _scapy_sa(child: ChildSaEstablished, *, outbound: bool, tunnel: tuple[str, str] | None) -> object:
    """Scapy's SecurityAssociation for one direction of a negotiated AES-GCM pair (key with its salt)."""
    assert child.encr_id == 20  # the engine's default proposal, aes256gcm16
    return scapy_ipsec.SecurityAssociation(
        scapy_ipsec.ESP, spi=child.spi_out if outbound else child.spi_in, crypt_algo="AES-GCM",
        crypt_key=child.encr_key_out if outbound else child.encr_key_in,
        tunnel_header=IP(src=tunnel[0], dst=tunnel[1]) if tunnel else None)


def test_tfc_padding_pads_the_inner_packet_with_zeros_as_scapy_decrypts_it():
    ci, cr = _children()
    left, right = DataPlane(LEFT, tfc_padding=1200), DataPlane(RIGHT)
    left.install(ci, RIGHT)
    right.install(cr, LEFT)
    out = left.outbound(_ping())
    assert out is not None
    theirs = _scapy_sa(ci, outbound=True, tunnel=(LEFT, RIGHT))
    inner = bytes(theirs.decrypt(IP(out.data)))  # type: ignore[attr-defined]
    assert len(inner) == 1200 and inner == _ping() + bytes(1200 - len(_ping()))
    got = right.inbound(out.data)  # and the padding is cut off by the inner header's length
    assert got is not None and got[1] == _ping()


def test_a_tfc_padded_packet_from_scapy_is_delivered_without_its_padding():
    ci, cr = _children()
    right = DataPlane(RIGHT)
    right.install(cr, LEFT)
    theirs = _scapy_sa(ci, outbound=True, tunnel=(LEFT, RIGHT))
    padded = IP(_ping() + bytes(900))  # the IP header's length still says 60: Scapy keeps the rest as Padding
    got = right.inbound(bytes(theirs.encrypt(padded)))  # type: ignore[attr-defined]
    assert got is not None and got[1] == _ping()
    assert right.counters.packets_in == 1 and right.counters.dummies_in == 0


def test_a_dummy_packet_from_scapy_is_counted_and_never_delivered_and_moves_the_window():
    ci, cr = _children()
    right = DataPlane(RIGHT)
    right.install(cr, LEFT)
    # a tunnel-mode dummy on the wire is the outer header, ESP, and next header 59 inside (RFC 4303 2.6):
    # Scapy makes it with a transport-mode SA over an outer header whose protocol is 59
    theirs = scapy_ipsec.SecurityAssociation(scapy_ipsec.ESP, spi=ci.spi_out, crypt_algo="AES-GCM",
                                             crypt_key=ci.encr_key_out)
    dummy = bytes(theirs.encrypt(IP(src=LEFT, dst=RIGHT, proto=59) / Raw(bytes(100))))
    assert right.inbound(dummy) is None
    sa = right.pairs[cr.spi_in].inn
    c = right.counters
    assert (c.dummies_in, c.packets_in, c.integrity, c.malformed) == (1, 0, 0, 0)
    assert sa.counters.dummies_in == 1 and sa.window.top == 1
    assert right.inbound(dummy) is None and c.replay == 1 and c.dummies_in == 1  # its sequence number was taken


def test_the_endpoints_dummies_decrypt_in_scapy_as_next_header_59_and_are_not_padded():
    ci, cr = _children()
    left = DataPlane(LEFT, tfc_padding=1200)
    left.install(ci, RIGHT)
    outs = left.dummies(300, 2, RIGHT)
    assert len(outs) == 2 and left.counters.dummies_out == 2
    theirs = scapy_ipsec.SecurityAssociation(scapy_ipsec.ESP, spi=ci.spi_out, crypt_algo="AES-GCM",
                                             crypt_key=ci.encr_key_out)
    for out in outs:
        plain = theirs.decrypt(IP(out.data))  # type: ignore[attr-defined]
        assert (plain.src, plain.dst, plain.proto) == (LEFT, RIGHT, 59) and bytes(plain.payload) == bytes(300)
    right = DataPlane(RIGHT)
    right.install(cr, LEFT)
    assert [right.inbound(o.data) for o in outs] == [None, None] and right.counters.dummies_in == 2
    assert left.pairs[ci.spi_in].out.counters.dummies_out == 2 and left.pairs[ci.spi_in].out.counters.packets_out == 0


def test_replay_window_0_checks_no_replay_and_window_and_esn_reach_the_sas():
    """PeerConfig.replay_window goes to the data plane, ESN comes from the negotiation; 0: no replay check
    (RFC 4303 3.4.3 lets the receiver turn it off), as the kernel's xfrm does with replay-window 0."""
    ci, cr = _children(esp_proposals=("aes256gcm16-esn",))
    right = DataPlane(RIGHT, replay_window=0)
    right.install(cr, LEFT)
    left = DataPlane(LEFT)
    left.install(ci, RIGHT)
    inn = right.pairs[cr.spi_in].inn
    assert inn.esn and inn.window.size == 0
    out = left.outbound(_ping())
    assert out is not None and right.inbound(out.data) is not None and right.inbound(out.data) is not None
    assert right.counters.replay == 0 and right.counters.packets_in == 2

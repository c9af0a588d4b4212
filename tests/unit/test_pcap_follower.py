"""PcapFollower: reading a classic pcap while tcpdump is still writing it, only what is new each time."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from ipseclab.errors import PcapError
from ipseclab.pcap.reader import IpPacket, PcapFollower, read_ip


def _frames() -> list:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        eth / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=500, dport=500) / b"one",
        eth / ARP(),
        eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=4500, dport=4500) / b"two",
        eth / IP(src="198.51.100.2", dst="198.51.100.1", proto=50) / (b"\x00\x00\x10\x01" + bytes(20)),
    ]


def test_follower_reads_only_what_was_appended_and_waits_for_a_partial_record(tmp_path):
    whole = tmp_path / "whole.pcap"
    wrpcap(str(whole), _frames())
    data = whole.read_bytes()
    expected = list(read_ip(whole))
    assert [p.frame for p in expected] == [1, 3, 4]  # the ARP frame is skipped, as read_ip does

    live = tmp_path / "live.pcap"
    follower = PcapFollower(live)
    live.write_bytes(data[:10])  # not even the file header yet
    assert follower.read() == []
    cut = 24 + 16 + len(bytes(_frames()[0])) + 7  # the first frame and 7 bytes of the next record header
    live.write_bytes(data[:cut])
    first = follower.read()
    assert first == expected[:1]
    assert follower.read() == []
    live.write_bytes(data)
    rest = follower.read()
    assert rest == expected[1:]
    assert isinstance(rest[0], IpPacket) and rest[0].src == "2001:db8::1" and rest[0].payload[8:] == b"two"


def test_follower_refuses_pcapng(tmp_path):
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(bytes.fromhex("0a0d0d0a") + bytes(28))
    with pytest.raises(PcapError, match="pcapng"):
        PcapFollower(ng).read()

"""The injector's Ethernet frames (lab/inject.py), checked against Scapy's own build of the same frame."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ipseclab.lab.inject import frame

SRC, DST = "02:00:00:00:00:0a", "52:54:00:12:34:56"


@pytest.mark.parametrize("packet", [
    bytes(IP(src="198.51.100.10", dst="198.51.100.20") / ESP(spi=0x1234, seq=7, data=b"x" * 40)),
    bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:1::20") / ESP(spi=0x1234, seq=7, data=b"x" * 40)),
    bytes(IP(src="203.0.113.1", dst="203.0.113.65") / ICMP()),
])
def test_frame_is_what_scapy_builds(packet: bytes):
    ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    assert frame(SRC, DST, packet) == bytes(Ether(src=SRC, dst=DST, type=ethertype) / Raw(packet))

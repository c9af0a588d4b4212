"""Traffic selectors (RFC 4301 4.4.1, in the IKEv2 shape of RFC 7296 3.13.1) and packet flows.

A selector is an address range, an IP protocol (0 = any) and a port range; an SA
carries the pair (local, remote) that IKE negotiated as TSi/TSr.  Addresses are kept
as ints so a match is a few comparisons, not ``ipaddress`` objects per packet.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ConfigError, TruncatedPacketError
from .iphdr import ip_version, ipv4_header_len

_PORTS = struct.Struct("!HH")
_H = struct.Struct("!H")
_IPV6_EXT = frozenset((0, 43, 44, 60))
_PORT_PROTOS = frozenset((6, 17, 33, 132, 136))  # TCP, UDP, DCCP, SCTP, UDP-Lite
_ICMP_PROTOS = frozenset((1, 58))


class Flow(NamedTuple):
    """What selectors look at in a packet.  ICMP type/code go in the ports as RFC 4301 4.4.1.1 says."""

    version: int
    src: int
    dst: int
    proto: int
    sport: int
    dport: int


def packet_flow(packet: bytes) -> Flow:
    """The flow of an IP packet (IPv6 extension headers skipped).

    Ports are 0 when the protocol has none, and for non-initial fragments (RFC 4301
    4.4.1.1 calls them OPAQUE): a selector with a port range then matches only if it
    allows port 0, as on Linux.
    """
    v = ip_version(packet)
    if v == 4:
        ihl, end = ipv4_header_len(packet)
        src, dst, proto = int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big"), packet[9]
        off = ihl if not _H.unpack_from(packet, 6)[0] & 0x1FFF else end
    else:
        if len(packet) < 40:
            raise TruncatedPacketError(f"{len(packet)}-byte IPv6 packet is shorter than its 40-byte header", 0)
        src, dst = int.from_bytes(packet[8:24], "big"), int.from_bytes(packet[24:40], "big")
        end = min(len(packet), 40 + _H.unpack_from(packet, 4)[0])
        proto, off = packet[6], 40
        while proto in _IPV6_EXT and off + 8 <= end:
            if proto == 44 and _H.unpack_from(packet, off + 2)[0] & 0xFFF8:
                proto, off = packet[off], end  # a non-initial fragment: no ports
                break
            proto, off = packet[off], off + (8 if proto == 44 else (packet[off + 1] + 1) * 8)
    sport = dport = 0
    if end - off >= 4:
        if proto in _PORT_PROTOS:
            sport, dport = _PORTS.unpack_from(packet, off)
        elif proto in _ICMP_PROTOS:
            # RFC 4301 4.4.1.1: ICMP type and code take the place of the ports
            sport = dport = (packet[off] << 8) | packet[off + 1]
    return Flow(v, src, dst, proto, sport, dport)


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """An address range, a protocol (0 = any) and a port range, both ends inclusive."""

    version: int
    start: int
    end: int
    proto: int = 0
    start_port: int = 0
    end_port: int = 0xFFFF

    @classmethod
    def subnet(cls, cidr: str, proto: int = 0, ports: tuple[int, int] | int | None = None) -> TrafficSelector:
        """A selector for ``cidr`` ("10.1.0.0/16", "2001:db8::/64", or one address)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ConfigError(f"traffic selector {cidr!r}: {exc}") from None
        lo, hi = _ports(ports)
        return cls(net.version, int(net.network_address), int(net.broadcast_address), proto, lo, hi)

    @classmethod
    def range(
        cls, first: str, last: str, proto: int = 0, ports: tuple[int, int] | int | None = None
    ) -> TrafficSelector:
        """A selector for the address range ``first``..``last``."""
        try:
            a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
        except ValueError as exc:
            raise ConfigError(f"traffic selector: {exc}") from None
        if a.version != b.version or int(a) > int(b):
            raise ConfigError(f"traffic selector {first}..{last} is not an address range of one IP version")
        lo, hi = _ports(ports)
        return cls(a.version, int(a), int(b), proto, lo, hi)

    @classmethod
    def any(cls, version: int = 4) -> TrafficSelector:
        """Every address of an IP version, every protocol and port."""
        return cls(version, 0, (1 << (32 if version == 4 else 128)) - 1)

    def matches(self, version: int, addr: int, proto: int, port: int) -> bool:
        """Whether one end of a flow (address, protocol, port on that side) is inside this selector."""
        return (
            version == self.version
            and self.start <= addr <= self.end
            and (self.proto == 0 or self.proto == proto)
            and self.start_port <= port <= self.end_port
        )

    def __str__(self) -> str:
        fam = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        text = f"{fam(self.start)}-{fam(self.end)}"
        if self.proto:
            text += f" proto {self.proto}"
        if (self.start_port, self.end_port) != (0, 0xFFFF):
            text += f" ports {self.start_port}-{self.end_port}"
        return text


def _ports(ports: tuple[int, int] | int | None) -> tuple[int, int]:
    if ports is None:
        return 0, 0xFFFF
    lo, hi = (ports, ports) if isinstance(ports, int) else ports
    if not 0 <= lo <= hi <= 0xFFFF:
        raise ConfigError(f"port range {lo}-{hi} is not within 0-65535")
    return lo, hi


@dataclass(frozen=True, slots=True)
class Selectors:
    """An SA's traffic selectors, from this host's point of view: packets go local -> remote."""

    local: tuple[TrafficSelector, ...]
    remote: tuple[TrafficSelector, ...]

    def outbound(self, f: Flow) -> bool:
        """A packet we send: source in ``local``, destination in ``remote``."""
        return any(ts.matches(f.version, f.src, f.proto, f.sport) for ts in self.local) and any(
            ts.matches(f.version, f.dst, f.proto, f.dport) for ts in self.remote
        )

    def inbound(self, f: Flow) -> bool:
        """A packet we receive: source in ``remote``, destination in ``local``."""
        return any(ts.matches(f.version, f.src, f.proto, f.sport) for ts in self.remote) and any(
            ts.matches(f.version, f.dst, f.proto, f.dport) for ts in self.local
        )

    def __str__(self) -> str:
        return f"{', '.join(map(str, self.local))} <=> {', '.join(map(str, self.remote))}"

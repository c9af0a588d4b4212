"""ICMP echo packets on bytes (IPv4), what the endpoint sends through a Child SA to prove it carries traffic."""

from __future__ import annotations

import ipaddress
import struct

PAYLOAD = b"ipseclab-endpoint-echo"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def echo_request(src: str, dst: str, ident: int, seq: int) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + PAYLOAD
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    a, b = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0, a.packed, b.packed)
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + icmp


def echo_reply_of(packet: bytes, ident: int) -> int | None:
    """The sequence number if ``packet`` is an IPv4 ICMP echo reply with ``ident``, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    off = (packet[0] & 0x0F) * 4
    icmp_type, _code, _sum, rid, seq = struct.unpack_from("!BBHHH", packet, off)
    return seq if icmp_type == 0 and rid == ident else None


def echo_reply_to(packet: bytes, ip_id: int = 1) -> bytes | None:
    """The echo reply a host would send for an IPv4 ICMP echo request (None if ``packet`` is not one).

    ``ip_id`` must not be 0: a raw socket would fill in an ID of 0 after AH's ICV covered it (RFC 4302
    3.3.3.1.1.1 counts the ID as immutable), and the peer would reject the packet.
    """
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = (packet[2] << 8) | packet[3]
    if packet[ihl] != 8 or total > len(packet) or total < ihl + 8:
        return None
    icmp = bytes((0,)) + packet[ihl + 1 : ihl + 2] + b"\0\0" + packet[ihl + 4 : total]
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, packet[1] & 0xFC, 20 + len(icmp), ip_id or 1, 0, 64, 1, 0,
                       packet[16:20], packet[12:16])
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + icmp

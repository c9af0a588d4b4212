"""Read UDP datagrams (and their addresses) from pcap and pcapng files, on bytes.

Scapy's raw readers give frames and the link type; link, IP and UDP headers
are peeled here with ``struct`` so a capture of thousands of packets reads in
milliseconds, and a frame that is truncated or not IP/UDP is reported, not fatal.
``PcapFollower`` reads a classic pcap that tcpdump is still writing, only what is new.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PcapError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

IPPROTO_UDP = 17
IPPROTO_ESP = 50
IPPROTO_AH = 51


@dataclass(frozen=True, slots=True)
class IpPacket:
    """One IP packet of a capture: frame number (from 1, as Wireshark counts), time and the IP header facts."""

    frame: int
    time: float
    src: str
    dst: str
    proto: int
    payload: bytes  # the transport payload (after IP and extension headers)
    fragment: bool = False
    packet: bytes = b""  # the whole IP packet, header included


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A UDP datagram of a capture."""

    frame: int
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be read as IP; ``reason`` says why."""

    frame: int
    reason: str


_IPV6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options (fragment handled apart)


def _ip(frame: int, ts: float, data: bytes, off: int) -> IpPacket | BadFrame:
    if len(data) <= off:
        return BadFrame(frame, "no IP header")
    version = data[off] >> 4
    if version == 4:
        if len(data) < off + 20:
            return BadFrame(frame, "truncated IPv4 header")
        ihl = (data[off] & 0x0F) * 4
        total = struct.unpack_from("!H", data, off + 2)[0]
        frag = struct.unpack_from("!H", data, off + 6)[0]
        if ihl < 20 or len(data) < off + total or total < ihl:
            return BadFrame(frame, "truncated IPv4 packet")
        src = str(ipaddress.IPv4Address(data[off + 12 : off + 16]))
        dst = str(ipaddress.IPv4Address(data[off + 16 : off + 20]))
        return IpPacket(frame, ts, src, dst, data[off + 9], data[off + ihl : off + total], bool(frag & 0x3FFF),
                        data[off : off + total])
    if version == 6:
        if len(data) < off + 40:
            return BadFrame(frame, "truncated IPv6 header")
        plen = struct.unpack_from("!H", data, off + 4)[0]
        nh = data[off + 6]
        src = str(ipaddress.IPv6Address(data[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(data[off + 24 : off + 40]))
        end = off + 40 + plen
        if len(data) < end:
            return BadFrame(frame, "truncated IPv6 packet")
        pos = off + 40
        fragment = False
        while nh in _IPV6_EXT or nh == 44:
            if pos + 8 > end:
                return BadFrame(frame, "truncated IPv6 extension header")
            if nh == 44:
                fragment = True
                nh, pos = data[pos], pos + 8
            else:
                nh, pos = data[pos], pos + 8 * (data[pos + 1] + 1)
        return IpPacket(frame, ts, src, dst, nh, data[pos:end], fragment, data[off:end])
    return BadFrame(frame, f"IP version {version}")


_NOT_IP = -1  # a frame of a known link type that carries something else (ARP, LLDP): skipped silently


def _link_offset(linktype: int, data: bytes) -> int | None:
    """Where the IP header starts; _NOT_IP for non-IP frames; None for a link type we cannot read."""
    if linktype == LINKTYPE_ETHERNET:
        off, etype = 14, struct.unpack_from("!H", data, 12)[0] if len(data) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(data) >= off + 4:
            etype = struct.unpack_from("!H", data, off + 2)[0]
            off += 4
        return off if etype in (0x0800, 0x86DD) else _NOT_IP
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, 12, 14):
        return 0
    if linktype == LINKTYPE_LINUX_SLL:
        return 16
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20
    if linktype == LINKTYPE_NULL:
        return 4
    return None


def read_ip(path: str | Path) -> Iterator[IpPacket | BadFrame]:
    """Every frame of a pcap/pcapng file as an IpPacket, or a BadFrame saying why not."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    try:
        reader = RawPcapReader(str(path))
    except FileNotFoundError:
        raise PcapError(f"{path}: no such file") from None
    except (Scapy_Exception, OSError, EOFError, struct.error) as exc:
        raise PcapError(f"{path}: not a pcap or pcapng capture ({exc})") from None
    with reader:
        n = 0
        records = iter(reader)
        while True:
            try:
                rec = next(records)
            except (StopIteration, EOFError):
                return
            except (Scapy_Exception, struct.error, ValueError) as exc:
                yield BadFrame(n + 1, f"unreadable record, capture truncated? ({exc})")
                return
            if rec is None:
                return
            n += 1
            data, meta = rec
            ts = _timestamp(meta)
            lt = getattr(meta, "linktype", None) or getattr(reader, "linktype", None)
            linktype = int(lt) if lt is not None else LINKTYPE_ETHERNET
            off = _link_offset(linktype, data)
            if off == _NOT_IP:
                continue
            if off is None:
                yield BadFrame(n, f"link type {linktype} is not supported (Ethernet, raw IP, Linux SLL, null)")
                continue
            yield _ip(n, ts, data, off)


class PcapFollower:
    """Follow a classic pcap file while it is being written (``tcpdump -U -w``): only new frames are read.

    Each :meth:`read` returns the frames appended since the previous call, as ``read_ip`` would
    give them (frame numbers count from the start of the file); a record still being written
    is left for the next call.  pcapng is refused (tcpdump writes classic pcap).
    """

    __slots__ = ("_end", "_frame", "_linktype", "_nano", "_offset", "path")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0  # 0: the file header is not read yet
        self._frame = 0
        self._end = "<"
        self._nano = False
        self._linktype = LINKTYPE_ETHERNET

    def read(self) -> list[IpPacket | BadFrame]:
        try:
            with open(self.path, "rb") as f:
                if not self._offset:
                    head = f.read(24)
                    if len(head) < 24:
                        return []
                    self._header(head)
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            raise PcapError(f"{self.path}: no such file") from None
        out: list[IpPacket | BadFrame] = []
        pos = 0
        rec = struct.Struct(self._end + "IIII")
        while pos + 16 <= len(data):
            sec, frac, caplen, _ = rec.unpack_from(data, pos)
            if pos + 16 + caplen > len(data):
                break
            frame = data[pos + 16 : pos + 16 + caplen]
            pos += 16 + caplen
            self._frame += 1
            off = _link_offset(self._linktype, frame)
            if off == _NOT_IP:
                continue
            if off is None:
                out.append(BadFrame(self._frame, f"link type {self._linktype} is not supported"))
                continue
            out.append(_ip(self._frame, sec + frac / (1e9 if self._nano else 1e6), frame, off))
        self._offset += pos
        return out

    def _header(self, head: bytes) -> None:
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            self._end = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            self._end = ">"
        else:
            raise PcapError(f"{self.path}: not a classic pcap file (magic {magic.hex()}); pcapng cannot be followed")
        self._nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        self._linktype = struct.unpack_from(self._end + "I", head, 20)[0] & 0xFFFF
        self._offset = 24


def _timestamp(meta: object) -> float:
    sec = getattr(meta, "sec", None)
    if sec is not None:
        return float(sec) + float(getattr(meta, "usec", 0)) / 1e6
    high, low = getattr(meta, "tshigh", 0), getattr(meta, "tslow", 0)
    res = getattr(meta, "tsresol", 1_000_000) or 1_000_000
    return ((high << 32) | low) / res


def read_udp(path: str | Path) -> Iterator[UdpDatagram | BadFrame]:
    """UDP datagrams of a capture; frames that are not UDP are skipped, broken ones reported."""
    for pkt in read_ip(path):
        if isinstance(pkt, BadFrame):
            yield pkt
            continue
        if pkt.proto != IPPROTO_UDP:
            continue
        if pkt.fragment:
            yield BadFrame(pkt.frame, "IP fragment (reassembly is not supported)")
            continue
        if len(pkt.payload) < 8:
            yield BadFrame(pkt.frame, "truncated UDP header")
            continue
        sport, dport, length = struct.unpack_from("!HHH", pkt.payload, 0)
        if length < 8 or length > len(pkt.payload):
            yield BadFrame(pkt.frame, f"UDP length {length} does not match the {len(pkt.payload)} bytes captured")
            continue
        yield UdpDatagram(pkt.frame, pkt.time, pkt.src, pkt.dst, sport, dport, pkt.payload[8:length])

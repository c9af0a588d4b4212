"""Read IP packets and UDP datagrams (and their addresses) from pcap and pcapng files, on bytes.

Records, link, IP and UDP headers are all peeled here with ``struct``, so a capture of thousands
of packets reads in milliseconds and every byte is accounted for: a capture that ends inside a
record, or whose next record cannot be one (a length over 256 KiB, a pcapng block whose two length
fields differ), ends with a :class:`BadFrame` saying so, after every packet read before it.  Scapy's
readers were used before and could not say this: they warn on stderr and read on, or stop silently.
A frame that is truncated or not IP/UDP is reported too, never fatal.  Memory per record is bounded
by :data:`MAX_RECORD` (pcapng non-packet blocks by :data:`MAX_BLOCK`), whatever the file says.
``PcapFollower`` reads a classic pcap that tcpdump is still writing, only what is new.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import PcapError

MAX_RECORD = 262_144  # Wireshark's largest packet (WTAP_MAX_PACKET_SIZE_STANDARD): a longer record is corruption
MAX_BLOCK = 16 << 20  # the largest pcapng block read (name resolution, decryption secrets); larger is corruption

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


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4x as much to make, once per packet
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


@dataclass(slots=True)
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


_UDP = struct.Struct("!HHH")
_H = struct.Struct("!H")
_IPV6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options (fragment handled apart)


_NAMES: dict[bytes, str] = {}  # address bytes -> text: a capture names few hosts, and ipaddress costs ~1 us each
_MAX_NAMES = 1 << 16


def address_text(raw: bytes) -> str:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address as text, from a bounded cache."""
    text = _NAMES.get(raw)
    if text is None:
        if len(_NAMES) >= _MAX_NAMES:  # a capture of many hosts: memory stays bounded, the cache starts over
            _NAMES.clear()
        text = _NAMES[raw] = str(ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw))
    return text


def _ip(frame: int, ts: float, data: bytes, off: int) -> IpPacket | BadFrame:
    if len(data) <= off:
        return BadFrame(frame, "no IP header")
    version = data[off] >> 4
    if version == 4:
        if len(data) < off + 20:
            return BadFrame(frame, "truncated IPv4 header")
        ihl = (data[off] & 0x0F) * 4
        total = (data[off + 2] << 8) | data[off + 3]
        if ihl < 20 or len(data) < off + total or total < ihl:
            return BadFrame(frame, "truncated IPv4 packet")
        src = address_text(data[off + 12 : off + 16])
        dst = address_text(data[off + 16 : off + 20])
        packet = data[off : off + total] if off or total != len(data) else data
        return IpPacket(frame, ts, src, dst, data[off + 9], packet[ihl:], bool(data[off + 6] & 0x3F or data[off + 7]),
                        packet)
    if version == 6:
        if len(data) < off + 40:
            return BadFrame(frame, "truncated IPv6 header")
        plen = struct.unpack_from("!H", data, off + 4)[0]
        nh = data[off + 6]
        src = address_text(data[off + 8 : off + 24])
        dst = address_text(data[off + 24 : off + 40])
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


def parse_ip(packet: bytes) -> IpPacket | BadFrame:
    """One IP packet (an inner packet a tunnel carried, say) read as a capture's frames are: frame 0, time 0."""
    return _ip(0, 0.0, packet, 0)


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


# --- records: classic pcap and pcapng --------------------------------------------------------------------

_PCAP_MAGIC = {  # magic -> (byte order, nanosecond timestamps)
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_GZIP = b"\x1f\x8b"

Record = tuple[bytes, float, int]  # frame bytes, time, link type
# a record, or the reason the capture cannot be read further (always the last item)
RecordOrStop = Record | str


def pcap_header(head: bytes, source: str) -> tuple[str, bool, int]:
    """(byte order, nanosecond timestamps, link type) of a classic pcap file header (24 bytes)."""
    fmt = _PCAP_MAGIC.get(head[:4])
    if fmt is None or len(head) < 24:
        raise PcapError(f"{source}: not a classic pcap file (magic {head[:4].hex()}, {len(head)}-byte header)")
    return fmt[0], fmt[1], struct.unpack_from(fmt[0] + "I", head, 20)[0] & 0xFFFF  # the high bits say FCS length


def truncated_reason(what: str, pos: int, need: int, got: int) -> str:
    return f"capture truncated: {what} at byte {pos} needs {need} bytes, {got} present; the capture ends here"


def undecodable_reason(what: str, pos: int, why: str) -> str:
    return f"undecodable {what} at byte {pos}: {why}; the rest of the capture is not read"


CHUNK = 64 << 10  # classic pcap is read in chunks and its records sliced out: two reads a record cost more


def _pcap_records(f: BinaryIO, head: bytes, source: str) -> Iterator[RecordOrStop]:
    """Records of a classic pcap; memory at most a chunk and two records (a record that spans chunks is joined)."""
    head += f.read(24 - len(head))
    order, nano, linktype = pcap_header(head, source)
    unpack = struct.Struct(order + "IIII").unpack_from
    scale = 1e-9 if nano else 1e-6
    base, n = 24, 0  # the file offset of buf[0], records so far
    buf, pos = b"", 0
    while True:
        if pos + 16 > len(buf):  # the next header is not all in the buffer: what is left of it, and a new chunk
            base += pos
            buf, pos = buf[pos:] + f.read(CHUNK), 0
            if not buf:
                return
        n += 1
        if pos + 16 > len(buf):
            yield truncated_reason(f"record {n}'s header", base + pos, 16, len(buf) - pos)
            return
        sec, frac, caplen, _ = unpack(buf, pos)
        if caplen > MAX_RECORD:
            why = f"a captured length of {caplen} bytes (at most {MAX_RECORD})"
            yield undecodable_reason(f"record {n}", base + pos, why)
            return
        end = pos + 16 + caplen
        if end <= len(buf):
            data = buf[pos + 16 : end]
            pos = end
        else:  # the record runs past the chunk: the rest of it straight from the file
            data, buf = buf[pos + 16 :], b""  # the chunk let go before the rest is read: memory stays bounded
            data += f.read(caplen - len(data))
            if len(data) < caplen:
                yield truncated_reason(f"record {n}", base + pos, 16 + caplen, 16 + len(data))
                return
            base, pos = base + end, 0
        yield data, sec + frac * scale, linktype
        data = b""  # not held while the next record is read


def _resolution(options: bytes, order: str) -> tuple[int, int]:
    """(timestamp units per second, offset in seconds) from an interface block's options (if_tsresol, if_tsoffset)."""
    units, offset, pos = 1_000_000, 0, 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        value = options[pos + 4 : pos + 4 + length]
        if code == 0 or len(value) < length:  # end of options, or a malformed option: the defaults stand
            break
        if code == 9 and length == 1:
            units = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
        elif code == 14 and length == 8:
            offset = struct.unpack(order + "q", value)[0]
        pos += 4 + length + (-length % 4)
    return units, offset


def _pcapng_records(f: BinaryIO, head: bytes) -> Iterator[RecordOrStop]:
    """Packets of a pcapng file (RFC draft-ietf-opsawg-pcapng): EPB, SPB and the obsolete PB; other blocks skipped."""
    order = "<"
    interfaces: list[tuple[int, int, int, int]] = []  # link type, snaplen, timestamp units per second, offset
    pos, pending = 0, head
    while True:
        hdr = pending + f.read(8 - len(pending))
        pending = b""
        if not hdr:
            return
        if len(hdr) < 8:
            yield truncated_reason("block header", pos, 8, len(hdr))
            return
        first = b""
        if hdr[:4] == _PCAPNG_SHB:  # a new section: its byte-order magic says how to read the length
            first = f.read(4)
            if len(first) < 4:
                yield truncated_reason("section header", pos, 12, 8 + len(first))
                return
            if first not in _PCAPNG_BOM:
                yield undecodable_reason("section header", pos, f"byte-order magic {first.hex()}")
                return
            order = _PCAPNG_BOM[first]
            interfaces = []
        kind, length = struct.unpack(order + "II", hdr)
        if length < 12 or length % 4 or length > MAX_BLOCK:
            yield undecodable_reason("block", pos, f"a block length of {length} bytes")
            return
        body = first + f.read(length - 8 - len(first))
        if len(body) < length - 8:
            yield truncated_reason("block", pos, length, 8 + len(body))
            return
        if struct.unpack_from(order + "I", body, len(body) - 4)[0] != length:
            yield undecodable_reason("block", pos, "its two length fields differ")
            return
        body = body[:-4]
        pos += length
        if kind == 1:  # interface description
            if len(body) < 8:
                yield undecodable_reason("interface block", pos - length, "shorter than 8 bytes")
                return
            linktype, _, snaplen = struct.unpack_from(order + "HHI", body)
            interfaces.append((linktype, snaplen, *_resolution(body[8:], order)))
            continue
        if kind in (2, 6):  # (obsolete) packet block, enhanced packet block
            if len(body) < 20:
                yield undecodable_reason("packet block", pos - length, "shorter than its 20-byte header")
                return
            if kind == 6:
                iface, hi, lo, caplen, _ = struct.unpack_from(order + "IIIII", body)
            else:
                iface, _, hi, lo, caplen, _ = struct.unpack_from(order + "HHIIII", body)
            if iface >= len(interfaces) or caplen > min(len(body) - 20, MAX_RECORD):
                why = (f"interface {iface} was never described" if iface >= len(interfaces)
                       else f"a captured length of {caplen} bytes in a {length}-byte block")
                yield undecodable_reason("packet block", pos - length, why)
                return
            linktype, _, units, offset = interfaces[iface]
            yield body[20 : 20 + caplen], ((hi << 32) | lo) / units + offset, linktype
        elif kind == 3:  # simple packet block: interface 0, no timestamp
            if not interfaces or len(body) < 4:
                yield undecodable_reason("simple packet block", pos - length, "no interface, or shorter than 4 bytes")
                return
            linktype, snaplen = interfaces[0][:2]
            wire = struct.unpack_from(order + "I", body)[0]
            yield body[4 : 4 + min(wire, snaplen or wire, MAX_RECORD)], 0.0, linktype


Capture = str | Path | bytes  # a file name, or the capture itself (bytes read from elsewhere, a fuzzer's input)


def open_capture(path: Capture) -> tuple[BinaryIO, BinaryIO, bytes, str]:
    """(file to close, stream to read, its first 4 bytes, name for messages) of a capture, gzip undone.

    PcapError when the file is missing or is not a capture at all.  The file is opened once and
    only read forward, so a FIFO works; ``records_of`` reads its records.
    """
    source = f"<{len(path)}-byte capture>" if isinstance(path, bytes) else str(path)
    try:
        f: BinaryIO = io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise PcapError(f"{source}: no such file") from None
    except OSError as exc:
        raise PcapError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        head = f.read(4)
        stream: BinaryIO = f
        if head[:2] == _GZIP:
            stream = gzip.GzipFile(fileobj=f)  # type: ignore[assignment]
            try:
                head = stream.read(4)
            except (OSError, EOFError, zlib.error) as exc:
                raise PcapError(f"{source}: not a pcap or pcapng capture (bad gzip stream: {exc})") from None
        if head not in _PCAP_MAGIC and head != _PCAPNG_SHB:
            raise PcapError(f"{source}: not a pcap or pcapng capture (it starts with {head.hex() or 'nothing'})")
    except BaseException:
        f.close()
        raise
    return f, stream, head, source


def is_classic(head: bytes) -> bool:
    """Whether a capture's first 4 bytes are a classic pcap magic (any byte order, micro- or nanoseconds)."""
    return head in _PCAP_MAGIC


def records_of(stream: BinaryIO, head: bytes, source: str) -> Iterator[RecordOrStop]:
    """The records of an opened capture (``open_capture``); a str, last, says why the rest is unread."""
    records = _pcap_records(stream, head, source) if head in _PCAP_MAGIC else _pcapng_records(stream, head)
    try:
        yield from records
    except (OSError, EOFError, zlib.error) as exc:  # a compressed capture cut short
        yield read_failed(exc)


def read_failed(exc: BaseException) -> str:
    return f"capture truncated or corrupt ({exc}); the capture ends here"


def capture_records(path: Capture) -> Iterator[RecordOrStop]:
    """Every record of a pcap or pcapng file (gzip-compressed too); a str, last, says why the rest is unread.

    PcapError when the file is missing or is not a capture at all.
    """
    f, stream, head, source = open_capture(path)
    with f:  # closed when the generator ends or is dropped
        yield from records_of(stream, head, source)


def read_ip(path: Capture) -> Iterator[IpPacket | BadFrame]:
    """Every frame of a pcap/pcapng file as an IpPacket, or a BadFrame saying why not.

    When the capture cannot be read to its end, the last item is a BadFrame saying where and why.
    """
    return ip_packets(capture_records(path))


def ip_packets(records: Iterator[RecordOrStop]) -> Iterator[IpPacket | BadFrame]:
    """read_ip over records already opened (``records_of``)."""
    n = 0
    for rec in records:  # not enumerate(): its cached result tuple would keep the previous record alive
        n += 1  # noqa: SIM113
        if isinstance(rec, str):
            yield BadFrame(n, rec)
            return
        data, ts, linktype = rec
        rec = None  # type: ignore[assignment]  # not held while the next record is read: memory stays bounded
        item = frame_ip(n, ts, data, linktype)
        data = b""
        if item is not None:
            yield item


def frame_ip(frame: int, ts: float, data: bytes, linktype: int) -> IpPacket | BadFrame | None:
    """One captured frame as read_ip gives it: an IpPacket, a BadFrame, or None for a non-IP frame (ARP, LLDP)."""
    if linktype == LINKTYPE_ETHERNET and data[12:14] == b"\x08\x00":  # the common case without a call
        return _ip(frame, ts, data, 14)
    off = _link_offset(linktype, data)
    if off is None:
        return BadFrame(frame, f"link type {linktype} is not supported (Ethernet, raw IP, Linux SLL, null)")
    if off == _NOT_IP:
        return None
    return _ip(frame, ts, data, off)


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
            if caplen > MAX_RECORD:
                why = f"a captured length of {caplen} bytes (at most {MAX_RECORD})"
                where = self._offset + pos
                raise PcapError(f"{self.path}: {undecodable_reason(f'record {self._frame + 1}', where, why)}")
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
        if head[:4] == _PCAPNG_SHB:
            raise PcapError(f"{self.path}: a pcapng file cannot be followed (tcpdump -w writes classic pcap)")
        self._end, self._nano, self._linktype = pcap_header(head, str(self.path))
        self._offset = 24


def udp_of(pkt: IpPacket) -> UdpDatagram | BadFrame | None:
    """The UDP datagram an IP packet carries, a BadFrame when it cannot be read as one, None when it is not UDP."""
    if pkt.proto != IPPROTO_UDP:
        return None
    if pkt.fragment:
        return BadFrame(pkt.frame, "IP fragment (reassembly is not supported)")
    payload = pkt.payload
    if len(payload) < 8:
        return BadFrame(pkt.frame, "truncated UDP header")
    sport, dport, length = _UDP.unpack_from(payload, 0)
    if length < 8 or length > len(payload):
        return BadFrame(pkt.frame, f"UDP length {length} does not match the {len(payload)} bytes captured")
    return UdpDatagram(pkt.frame, pkt.time, pkt.src, pkt.dst, sport, dport, payload[8:length])


def read_udp(path: Capture) -> Iterator[UdpDatagram | BadFrame]:
    """UDP datagrams of a capture; frames that are not UDP are skipped, broken ones reported."""
    for pkt in read_ip(path):
        d = pkt if isinstance(pkt, BadFrame) else udp_of(pkt)
        if d is not None:
            yield d

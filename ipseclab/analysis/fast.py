"""``ipseclab decrypt`` written straight from a classic pcap: the common ESP packet read, checked and printed inline.

The general path (``stream.records`` then ``render``) makes four objects and a dozen calls per
packet; on a capture of a million pings that is most of the time, the AES-GCM call a tenth of it.
Here the file is cut into chunks of whole records (``ranges``: 512 KiB, read once) and
``scan`` walks each chunk's records in one loop with precompiled ``struct`` unpackers, taking
without a call of its own the packet that is by far the most common:

* Ethernet or Linux SLL, IPv4 without options or fragmentation, ESP (or ESP in UDP 4500, the
  UDP length matching);
* an SA the general path has already learned from its first packet (whether it uses ESN, from
  which high-order bits), keyed by the raw addresses and SPI, whose cipher is exactly
  ``open(salt + iv, data, aad)`` (AES-GCM-16, ChaCha20-Poly1305: ``crypto.cipher.raw_aead``);
* a good ICV, the default padding, and an inner IPv4/IPv6 packet of exactly the length it says.

A scan keeps no window and counts nothing, so it can run ahead in another process
(``analysis.workers``); it returns the chunk's output and its items: runs of such packets
(consecutive records of one SA with consecutive sequence numbers) and the records it left.
``Reconciler`` applies them in record order on the SA objects themselves: a run whose first
sequence number is right of the window (with ESN: inferred as the window infers it) passes as a
whole, the window sliding over it (``ReplayWindow.advance_span``) and the counters counting as
``EspSA.decapsulate``'s fast path would; any other run (a replay, a packet inside the window) and
every left record (IKE, AH, IPv6 outer headers, a bad ICV, an SA not learned yet, a record the
reader must report) goes through the general path (``stream.Dispatcher``) as it is, which checks
in RFC 4303 3.4's order.  The line or JSON object of a run is made from a format prebuilt per SA
from ``render``'s own functions, so what is printed does not depend on which path, or which
process, took a packet (unit tests check both paths, and workers against one process, on a varied
capture).  pcapng and compressed captures, and ``--verbose`` (Scapy), take the general path.

Memory: a chunk and its output, per SA a tuple; in one process, one read of the file.
"""

from __future__ import annotations

import struct
from binascii import hexlify
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import BinaryIO

from ..crypto.cipher import AeadFunc, AeadTagError, Encr, raw_aead
from ..esp.common import SaCounters
from ..esp.esp import _FAST_TAILS  # every default ESP trailer before an IP packet -> IP version: one table
from ..esp.replay import ReplayWindow
from ..pcap.esp_keyfiles import EspSaRow
from ..pcap.keyfiles import IkeSaKeyRow
from ..pcap.reader import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    MAX_RECORD,
    BadFrame,
    Capture,
    IpPacket,
    frame_ip,
    ip_packets,
    is_classic,
    open_capture,
    pcap_header,
    read_failed,
    records_of,
    truncated_reason,
    undecodable_reason,
)
from .ike import IkeRecord
from .render import (
    Tally,
    echo_head,
    esp_json,
    esp_line,
    esp_line_head,
    ike_json,
    inner_summary,
    verified_esp_json_format,
    write_json,
    write_text,
)
from .stream import Dispatcher

# the inner packet's bytes after this many are hexed through a one-entry memo: a ping's or a bulk transfer's
# payload repeats from packet to packet, its headers do not (IPv6 + ICMPv6 + a ping's timestamp: 64 bytes)
HEX_SPLIT = 64
CHUNK = 1 << 19  # bytes read at a time; records are sliced out of the chunk (1 MiB: a JSON worker held ~10 MB more)
_AAD_ESN = struct.Struct("!III")  # SPI, sequence number high, low (RFC 4106 5)
_UDP = struct.Struct("!HHH2x4s")  # source and destination port, length, the first 4 bytes of the payload
# version/IHL, flags/fragment offset, protocol, source+destination+ICMP type, ICMP identifier and sequence
_INNER = struct.Struct("!B5xHxB2x9s3xHH")
_NATT = 4500
_LINK_OFFSET = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}  # link types with the ethertype just before IP
_M32 = 0xFFFFFFFF

# What a scan needs to know of one learned SA (a "slot"), sent to worker processes as it is:
# (cipher, its key and salt, source, destination, SPI, ESN, window size)
SlotSpec = tuple[Encr, bytes, str, str, int, bool, int]
# per slot in a scan: (open, salt, smallest ESP packet, esn, SPI, the text head or the JSON format of an inner
# IPv4 packet, the same of an IPv6 one)
Slot = tuple[AeadFunc, bytes, int, bool, int, bytes, bytes]
# A scan's items in record order.  A run: fast packets of consecutive records, one slot, consecutive sequence
# numbers (slot, first seq, count, inner bytes, first frame number, its record offset, output start, output
# end); a record left to the general path: (frame number, record offset, addresses + SPI if of the inline
# shape, UDP).
Learn = Callable[[bool, bytes, "SlotSpec | None"], None]  # (UDP, raw addresses + SPI, the SA or None: not inline)
Run = tuple[int, int, int, int, int, int, int, int]
Left = tuple[int, int, bytes, bool]  # (frame number, record offset, addresses + SPI or b"", UDP)
Item = Run | Left


def write_decrypted(capture: Capture, ike_rows: list[IkeSaKeyRow], esp_rows: list[EspSaRow] | None,
                    out: BinaryIO, *, as_json: bool, scapy: bool = False, workers: int | None = None,
                    chunk: int = CHUNK) -> Tally:
    """Every record of ``capture`` written to ``out`` as ``render.write_json``/``write_text`` write them.

    PcapError before anything is written when the file is missing or not a capture.  ``workers``: how many
    processes scan a classic pcap beside this one (0: none; None: ``workers.auto_workers`` decides).
    """
    f, stream, head, source = open_capture(capture)
    with f:
        if stream is f and is_classic(head) and esp_rows is not None and not scapy:
            head += f.read(24 - len(head))
            order, nano, linktype = pcap_header(head, source)
            link = Link(order, nano, linktype, as_json, True)
            if workers is None:
                from .workers import auto_workers

                workers = auto_workers(f)
            return _classic(f, link, Dispatcher(ike_rows, esp_rows), out, workers, chunk)
        dispatch = Dispatcher(ike_rows, esp_rows)
        recs = (r for r in map(dispatch, ip_packets(records_of(stream, head, source))) if r is not None)
        return write_json(recs, out) if as_json else write_text(recs, out, scapy=scapy)


_FRACTIONS: dict[int, bytes] = {}  # microseconds -> ".000123" as repr() ends a time with them
_MAX_FRACTIONS = 1 << 16
TIME_MIN, TIME_MAX = 1 << 20, 1 << 33  # seconds for which repr(sec + usec * 1e-6) is "sec" + fraction text


def time_fraction(usec: int) -> bytes:
    """What ``repr(sec + usec * 1e-6)`` writes after ``sec``, for TIME_MIN <= sec < TIME_MAX (1970-01-13 to 2242).

    There the float is the one nearest the decimal time (its ulp, 2^-32 to 2^-20 s, dwarfs the product's
    rounding, and a multiple of 1e-6 is never a midpoint between floats), and no shorter decimal is that
    close (another one with as many or fewer fractional digits is at least 1e-6 away, more than an ulp),
    so repr's shortest round-trip string is the decimal itself, trailing zeros dropped.  repr costs about
    1 us; this is a lookup.  A unit test compares the two over random times.
    """
    text = _FRACTIONS.get(usec)
    if text is None:
        if len(_FRACTIONS) >= _MAX_FRACTIONS:
            _FRACTIONS.clear()
        text = _FRACTIONS[usec] = (b".%06d" % usec).rstrip(b"0") if usec else b".0"
    return text


def _no_slot(nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
    raise RuntimeError("scan: no slot read")


_NO_SLOT: Slot = (_no_slot, b"", 0, False, 0, b"", b"")


class Link:
    """The per-capture facts a scan uses: record header order, link layer, whether JSON takes the inline time."""

    __slots__ = ("as_json", "caplen", "frac_max", "ip_head", "linktype", "nano", "off", "record", "scale",
                 "shortest", "time_max", "time_min")

    def __init__(self, order: str, nano: bool, linktype: int, as_json: bool, esp: bool) -> None:
        self.record = struct.Struct(order + "IIII").unpack_from
        self.caplen = struct.Struct(order + "8xI").unpack_from  # a record header's captured length, alone
        self.nano, self.linktype, self.as_json = nano, linktype, as_json
        self.scale = 1e-9 if nano else 1e-6
        self.off = off = _LINK_OFFSET.get(linktype, 0)
        # ethertype, version/IHL, total length, flags/fragment offset, protocol, source+destination+4 bytes, 4 bytes
        self.ip_head = struct.Struct(f"!{off - 2}xHBxH2xHxB2x12sI").unpack_from if off and esp else None
        self.shortest = off + 20 + 8
        # the seconds and fraction for which a packet may be inline: JSON writes the time as repr would
        # (time_fraction), so only microsecond times in its range; text does not write the time
        self.time_min, self.time_max, self.frac_max = (
            (TIME_MIN, TIME_MAX, 1_000_000) if not nano else (0, -1, 0)) if as_json else (0, 1 << 32, 1 << 32)


class Keys:
    """The learned SAs a scan takes inline, by raw addresses + SPI; in a worker process, the copy the parent sent."""

    __slots__ = ("by_esp", "by_udp", "esn", "slots")

    def __init__(self) -> None:
        self.by_esp: dict[bytes, int] = {}
        self.by_udp: dict[bytes, int] = {}
        self.slots: list[Slot] = []
        self.esn: dict[int, ReplayWindow] = {}  # ESN slots: a window used only to infer the high bits

    def add(self, udp: bool, key: bytes, spec: SlotSpec | None, as_json: bool) -> None:
        if spec is None:
            (self.by_udp if udp else self.by_esp)[key] = -2
            return
        encr, enc_key, src, dst, spi, esn, size = spec
        raw = raw_aead(encr.keyed(enc_key))
        if raw is None:  # the parent sends only SAs whose cipher is a raw AEAD call
            raise ValueError(f"{encr.name} is not a raw AEAD cipher")
        slot = len(self.slots)
        smallest = 8 + encr.iv_size + encr.icv_size + 2
        if as_json:
            head4 = b",\n" + verified_esp_json_format(src, dst, spi, udp, esn, 4)
            head6 = b",\n" + verified_esp_json_format(src, dst, spi, udp, esn, 41)
        else:
            head4 = head6 = esp_line_head(src, dst, spi, udp).encode()
        self.slots.append((raw[1], raw[2], smallest, esn, spi, head4, head6))
        (self.by_udp if udp else self.by_esp)[key] = slot
        if esn:
            self.esn[slot] = ReplayWindow(size, esn=True)

    def set_tops(self, tops: dict[int, int]) -> None:
        for slot, top in tops.items():
            self.esn[slot].top = top


def scan(buf: bytes, pos: int, end: int, n0: int, keys: Keys, link: Link, learn: bool = False
         ) -> tuple[bytes, list[Item], int, int]:
    """The whole records of ``buf[pos:end]``, frames ``n0 + 1`` on: the output of every packet a learned SA
    decrypts inline, and the rest as items.

    Runs no window and counts nothing: that is :class:`Reconciler`'s, in record order, so a scan may run
    in another process ahead of it.  With ESN the high bits are inferred from the tops ``keys`` was given
    (the reconciler checks each run's inference against the window).  Every record of the range is an item
    or part of a run.  Returns (output, items, where it stopped, records scanned): at ``end``, or with ``learn``
    right after a record of the inline shape whose SA ``keys`` does not know yet (the caller may learn it
    and resume, as the one-process path does).
    """
    record, off, ip_head, shortest = link.record, link.off, link.ip_head, link.shortest
    as_json, time_min, time_max, frac_max = link.as_json, link.time_min, link.time_max, link.frac_max
    udp_of = _UDP.unpack_from
    inner_of = _INNER.unpack_from
    tails = _FAST_TAILS.get
    fractions = _FRACTIONS.get
    by_esp, by_udp, slots, esn_windows = keys.by_esp, keys.by_udp, keys.slots, keys.esn
    echoes: dict[bytes, bytes] = {}  # addresses + ICMP type -> render.echo_head's text, in UTF-8
    pieces: list[bytes] = []
    append = pieces.append
    items: list[Item] = []
    # the run being extended: its slot, first sequence number, the next one, inner bytes, first frame, its
    # record's offset, its first piece
    r_slot, r_first, r_next, r_bytes, r_n, r_off, r_start = -1, 0, 0, 0, 0, 0, 0
    cur = -1  # the slot whose fields are in the locals below
    aead_open, salt, smallest, esn, spi, head4, head6 = _NO_SLOT
    memo, memo_len, memo_hex = b"", -1, b""  # the last inner packet's bytes after HEX_SPLIT, their length and hex
    sec_now, sec_text = -1, b""
    off20 = off + 20
    n = n0
    while pos < end:
        sec, frac, caplen, _ = record(buf, pos)
        s = pos + 16
        pos = s + caplen
        n += 1
        if ip_head is not None and caplen >= shortest:
            etype, vihl, total, frag, proto, key, seq_lo = ip_head(buf, s)
            slot = -1  # -1: not known to this scan; -2: known, not for the inline path
            if etype != 0x0800 or vihl != 0x45 or frag & 0x3FFF or total > caplen - off:
                key = b""
            elif proto == 50:
                e = s + off20
                slot = by_esp.get(key, -1)
            elif proto == 17 and total >= 36:
                e = s + off20
                sport, dport, ulen, spi_bytes = udp_of(buf, e)
                if (sport == _NATT or dport == _NATT) and ulen == total - 20 and spi_bytes != b"\0\0\0\0":
                    e += 8
                    key = key[:8] + spi_bytes
                    seq_lo = int.from_bytes(buf[e + 4 : e + 8], "big")
                    slot = by_udp.get(key, -1)
                else:
                    key = b""
            else:
                key = b""
            if slot >= 0 and time_min <= sec < time_max and frac < frac_max:
                if slot != cur:
                    aead_open, salt, smallest, esn, spi, head4, head6 = slots[slot]
                    cur = slot
                if esn:
                    window = esn_windows[slot]
                    seq = window.infer(seq_lo)
                else:
                    seq = seq_lo
                esp_end = s + off + total
                if esp_end - e >= smallest and seq:
                    try:
                        plain: bytes | None = aead_open(
                            salt + buf[e + 8 : e + 16], buf[e + 16 : esp_end],
                            _AAD_ESN.pack(spi, seq >> 32, seq_lo) if esn else buf[e : e + 8])
                    except AeadTagError:
                        plain = None  # the general path says why, in its words
                    if plain is not None:
                        pe = len(plain) - 2 - plain[-2]
                        version = tails(plain[pe:])  # padding, pad length and next header in one lookup
                        if (
                            (version == 4 and pe >= 28 and plain[0] >> 4 == 4 and ((plain[2] << 8) | plain[3]) == pe)
                            or (version == 6 and pe >= 40 and plain[0] >> 4 == 6
                                and 40 + ((plain[4] << 8) | plain[5]) == pe)
                        ):
                            if esn and seq > window.top:
                                window.top = seq
                            if as_json:
                                if sec != sec_now:
                                    sec_now, sec_text = sec, b"%d" % sec
                                if pe > HEX_SPLIT:  # hexlify is most of a packet's cost: a repeated payload once
                                    if pe - HEX_SPLIT != memo_len or not plain.endswith(memo, HEX_SPLIT, pe):
                                        memo = plain[HEX_SPLIT:pe]
                                        memo_len, memo_hex = pe - HEX_SPLIT, hexlify(memo)
                                    hex_head, hex_tail = hexlify(plain[:HEX_SPLIT]), memo_hex
                                else:
                                    hex_head, hex_tail = hexlify(plain[:pe]), b""
                                if esn:
                                    piece = (head4 if version == 4 else head6) % (
                                        n, sec_text, fractions(frac) or time_fraction(frac), seq_lo, hex_head,
                                        hex_tail, seq >> 32)
                                else:
                                    piece = (head4 if version == 4 else head6) % (
                                        n, sec_text, fractions(frac) or time_fraction(frac), seq_lo, hex_head,
                                        hex_tail)
                            else:
                                esn_text = (b" esn hi=%d" % (seq >> 32) if seq >> 32 else b" esn") if esn else b""
                                echo: bytes | None = None
                                if version == 4:
                                    vihl, frag, proto, echo_key, ident, iseq = inner_of(plain)
                                    if vihl == 0x45 and proto == 1 and not frag & 0x3FFF:
                                        echo = echoes.get(echo_key)
                                        if echo is None:
                                            echo_text = echo_head(plain[:pe])  # None: not an echo
                                            if echo_text is not None:
                                                echo = echo_text.encode()
                                                if len(echoes) < 4096:
                                                    echoes[echo_key] = echo
                                if echo is not None:
                                    piece = b"#%d%b%d%b: IPv4: %b%d seq=%d, %d bytes\n" % (
                                        n, head4, seq_lo, esn_text, echo, ident, iseq, pe)
                                else:
                                    piece = b"#%d%b%d%b: %b: %b\n" % (
                                        n, head4, seq_lo, esn_text, b"IPv4" if version == 4 else b"IPv6",
                                        inner_summary(plain[:pe]).encode())
                            if seq == r_next and slot == r_slot:
                                r_next += 1
                                r_bytes += pe
                            else:
                                if r_slot != -1:
                                    items.append((r_slot, r_first, r_next - r_first, r_bytes, r_n, r_off, r_start,
                                                  len(pieces)))
                                r_slot, r_first, r_next, r_bytes, r_n, r_off, r_start = (
                                    slot, seq, seq + 1, pe, n, s - 16, len(pieces))
                            append(piece)
                            continue
        else:
            key, proto = b"", 0
        if r_slot != -1:
            items.append((r_slot, r_first, r_next - r_first, r_bytes, r_n, r_off, r_start, len(pieces)))
            r_slot = -1
        items.append((n, s - 16, key, proto == 17))
        if learn and key and slot == -1:
            break
    if r_slot != -1:
        items.append((r_slot, r_first, r_next - r_first, r_bytes, r_n, r_off, r_start, len(pieces)))
    ends = [0, *accumulate(map(len, pieces))]  # a run's pieces -> its bytes in the output
    items = [(*it[:6], ends[it[6]], ends[it[7]]) if len(it) == 8 else it for it in items]
    return b"".join(pieces), items, pos, n - n0


class Reconciler:
    """The scans' items applied in record order: each run's window and counters, the general path for the rest.

    A run is taken as the inline path takes its packets when its first sequence number is right of the
    window (with ESN: inferred as the window infers it); its packets are then consecutive numbers, so the
    window slides over all of them at once (``ReplayWindow.advance_span``).  Any other run (a replay, a
    packet inside the window, an inference made from a stale top) goes through the general path packet by
    packet, which writes the same text for what it accepts and says why it refuses the rest.  Newly
    learned SAs of the inline shape get a slot, announced through ``on_learn`` (to the scans' ``Keys``).
    """

    def __init__(self, dispatch: Dispatcher, out: BinaryIO, link: Link, on_learn: Learn) -> None:
        self.dispatch, self.out, self.link, self.on_learn = dispatch, out, link, on_learn
        self.sas = dispatch.esp.sas if dispatch.esp is not None else {}
        self.known: tuple[dict[bytes, int | None], dict[bytes, int | None]] = ({}, {})  # ESP, UDP: key -> slot
        self.windows: list[tuple[ReplayWindow, SaCounters, bool]] = []
        self.esn_slots: list[int] = []
        self.tally = Tally()
        self.first = True
        if link.as_json:
            out.write(b"[")

    def esn_tops(self) -> dict[int, int]:
        windows = self.windows
        return {slot: windows[slot][0].top for slot in self.esn_slots}

    def write(self, piece: bytes | memoryview) -> None:
        if self.first:
            self.first = False
            if self.link.as_json:
                piece = piece[1:]  # the first object follows "[" and a newline, without the comma
        self.out.write(piece)

    def apply(self, buf: bytes, delta: int, blob: bytes | memoryview, items: list[Item]) -> None:
        """A scan's result; its record offsets are ``delta`` bytes before the same records in ``buf``."""
        view = memoryview(blob)
        windows = self.windows
        t = self.tally
        for item in items:
            if len(item) == 8:
                slot, first, count, size, n, off, start, stop = item
                window, counters, esn = windows[slot]
                if first > window.top and (not esn or window.infer(first & _M32) == first):
                    window.advance_span(first, first + count - 1)
                    counters.packets_in += count
                    counters.bytes_in += size
                    t.fast += count
                    self.write(view[start:stop])
                    continue
                pos = off + delta
                record = self.link.record
                for j in range(count):  # the run's records are consecutive
                    self.general(buf, pos, n + j, b"", False)
                    pos += 16 + record(buf, pos)[2]
            else:
                n, off, key, udp = item
                self.general(buf, off + delta, n, key, udp)

    def general(self, buf: bytes, pos: int, n: int, key: bytes, udp: bool) -> None:
        link = self.link
        sec, frac, caplen, _ = link.record(buf, pos)
        item = frame_ip(n, sec + frac * link.scale, buf[pos + 16 : pos + 16 + caplen], link.linktype)
        if item is None:
            return
        self.bad_or_record(item)
        if key and not isinstance(item, BadFrame) and key not in self.known[udp]:
            self._learn(key, udp, item)

    def bad_or_record(self, item: IpPacket | BadFrame) -> None:
        rec = self.dispatch(item)
        if rec is None:
            return
        t = self.tally
        as_json = self.link.as_json
        if isinstance(rec, IkeRecord):
            t.ike += 1
            t.decrypted += rec.decrypted
            text = (ike_json(rec) if as_json else rec.line()).encode()
        else:
            t.esp += 1
            t.verified += rec.verified
            text = esp_json(rec) if as_json else esp_line(rec).encode()
        t.errors += rec.error is not None
        self.write(b",\n" + text if as_json else text + b"\n")

    def _learn(self, key: bytes, udp: bool, item: IpPacket) -> None:
        """After the general path took a packet of the inline shape: its SA's slot, once the SA is learned."""
        sa = self.sas.get((int.from_bytes(key[8:12], "big"), item.src, item.dst))
        if sa is None:
            return
        if sa.integ is not None or raw_aead(sa.encr.keyed(sa.key)) is None:  # a combined-mode cipher only
            self.known[udp][key] = None
            self.on_learn(udp, key, None)
            return
        slot = self.known[udp][key] = len(self.windows)
        self.windows.append((sa.window, sa.counters, sa.esn))
        if sa.esn:
            self.esn_slots.append(slot)
        self.on_learn(udp, key, (sa.encr, sa.key, item.src, item.dst, sa.spi, sa.esn, sa.window.size))

    def finish(self, stop: BadFrame | None) -> Tally:
        if stop is not None:
            self.bad_or_record(stop)
        if self.link.as_json:
            self.out.write(b"\n]\n")
        t = self.tally
        t.esp += t.fast
        t.verified += t.fast
        return t


Range = tuple[bytes, int, int, int]  # a chunk, its offset in the file, the end of its last whole record, frame n0


def ranges(f: BinaryIO, link: Link, chunk: int = CHUNK) -> Iterator[Range | BadFrame]:
    """The file after its header as chunks of whole records, read once; a BadFrame last if it stops early.

    The incomplete record at a chunk's end is read again with the next chunk (a seek back) rather than
    the chunk copied after it; a stream that cannot seek, or a record longer than a chunk, is carried over.
    """
    caplen_of = link.caplen
    try:
        seek = f.seekable()
    except (OSError, ValueError):
        seek = False
    carry, base, n = b"", 24, 0  # the incomplete record carried over, where it starts in the file
    while True:
        try:
            data = f.read(chunk)
        except OSError as exc:
            yield BadFrame(n + 1, read_failed(exc))
            return
        if not data:
            break
        buf = carry + data if carry else data
        pos, end, n0 = 0, len(buf), n
        while pos + 16 <= end:
            (caplen,) = caplen_of(buf, pos)
            nxt = pos + 16 + caplen
            if nxt > end or caplen > MAX_RECORD:
                break
            pos = nxt
            n += 1
        if pos:
            yield buf, base, pos, n0
        if pos + 16 <= end and caplen_of(buf, pos)[0] > MAX_RECORD:
            why = f"a captured length of {caplen_of(buf, pos)[0]} bytes (at most {MAX_RECORD})"
            yield BadFrame(n + 1, undecodable_reason(f"record {n + 1}", base + pos, why))
            return
        base += pos
        if pos == end:
            carry = b""
        elif pos and seek:
            f.seek(pos - end, 1)
            carry = b""
        else:
            carry = buf[pos:]
    if carry:  # the file ends inside a record
        left = len(carry)
        if left < 16:
            yield BadFrame(n + 1, truncated_reason(f"record {n + 1}'s header", base, 16, left))
        else:
            yield BadFrame(n + 1, truncated_reason(f"record {n + 1}", base, 16 + caplen_of(carry, 0)[0], left))


def _classic(f: BinaryIO, link: Link, dispatch: Dispatcher, out: BinaryIO, workers: int, chunk: int) -> Tally:
    """The records of a classic pcap, scanned in this process or in ``workers`` forked ones (``analysis.workers``)."""
    keys = Keys()
    rec = Reconciler(dispatch, out, link, lambda udp, key, spec: keys.add(udp, key, spec, link.as_json))
    chunks = ranges(f, link, chunk)
    if workers:
        from .workers import scan_in_workers

        return rec.finish(scan_in_workers(f, chunks, link, rec, keys, workers))
    for r in chunks:
        if isinstance(r, BadFrame):
            return rec.finish(r)
        scan_here(r, keys, rec)
    return rec.finish(None)


def scan_here(r: Range, keys: Keys, rec: Reconciler) -> None:
    """One chunk scanned and applied in this process, a new SA taken inline from its next packet on."""
    buf, _, end, n0 = r
    pos = 0
    while pos < end:
        if rec.esn_slots:
            keys.set_tops(rec.esn_tops())
        blob, items, stop, count = scan(buf, pos, end, n0, keys, rec.link, learn=True)
        rec.apply(buf, 0, blob, items)
        pos = stop
        n0 += count

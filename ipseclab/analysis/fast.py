"""``ipseclab decrypt`` written straight from a classic pcap: the common ESP packet read, checked and printed inline.

The general path (``stream.records`` then ``render``) makes four objects and a dozen calls per
packet; on a capture of a million pings that is most of the time, the AES-GCM call a tenth of it.
Here one loop walks the records of each 1 MiB chunk of the file with precompiled ``struct``
unpackers and takes, without a call of its own, the packet that is by far the most common:

* Ethernet or Linux SLL, IPv4 without options or fragmentation, ESP (or ESP in UDP 4500, the
  UDP length matching);
* an SA the general path has already learned from its first packet (whether it uses ESN, from
  which high-order bits), keyed by the raw addresses and SPI, whose cipher is exactly
  ``open(salt + iv, data, aad)`` (AES-GCM-16, ChaCha20-Poly1305: ``crypto.cipher.raw_aead``);
* a sequence number right of the replay window (with ESN, inferred by the window as always);
* a good ICV, the default padding, and an inner IPv4/IPv6 packet of exactly the length it says.

Those are the checks of ``EspSA.decapsulate``'s own fast path, in the same RFC 4303 3.4 order,
on the same SA object: the window advances and the counters count as they would there.  The line
or JSON object is made from a format prebuilt per SA from ``render``'s own functions, so it is the
same text.  Any other frame (IKE, AH, IPv6 outer headers, a replay, a bad ICV, an SA not learned
yet, a record the reader must report) goes through the general path (``stream.Dispatcher``) as it
is, so what is printed does not depend on which path took a packet (a unit test checks both on a
varied capture).  pcapng and compressed captures, and ``--verbose`` (Scapy), take the general path.

Memory: a chunk, the batch of output not yet written, and per SA a tuple; one read of the file.
"""

from __future__ import annotations

import struct
from binascii import hexlify
from collections.abc import Iterator
from typing import BinaryIO

from ..crypto.cipher import AeadFunc, AeadTagError, raw_aead
from ..esp import EspSA
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
    BATCH,
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

CHUNK = 1 << 20  # bytes read at a time; records are sliced out of the chunk
_AAD_ESN = struct.Struct("!III")  # SPI, sequence number high, low (RFC 4106 5)
_UDP = struct.Struct("!HHH2x4s")  # source and destination port, length, the first 4 bytes of the payload
# version/IHL, flags/fragment offset, protocol, source+destination+ICMP type, ICMP identifier and sequence
_INNER = struct.Struct("!B5xHxB2x9s3xHH")
_NATT = 4500
_LINK_OFFSET = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}  # link types with the ethertype just before IP

# per SA: (window, open, salt, smallest ESP packet, esn, counters, SPI, text head, JSON format)
Entry = tuple[ReplayWindow, AeadFunc, bytes, int, bool, SaCounters, int, bytes, bytes]


def write_decrypted(capture: Capture, ike_rows: list[IkeSaKeyRow], esp_rows: list[EspSaRow] | None,
                    out: BinaryIO, *, as_json: bool, scapy: bool = False) -> Tally:
    """Every record of ``capture`` written to ``out`` as ``render.write_json``/``write_text`` write them.

    PcapError before anything is written when the file is missing or not a capture.
    """
    f, stream, head, source = open_capture(capture)
    with f:
        if stream is f and is_classic(head) and esp_rows is not None and not scapy:
            return _classic(f, head, source, Dispatcher(ike_rows, esp_rows), out, as_json)
        dispatch = Dispatcher(ike_rows, esp_rows)
        recs = (r for r in map(dispatch, ip_packets(records_of(stream, head, source))) if r is not None)
        return write_json(recs, out) if as_json else write_text(recs, out, scapy=scapy)


def _entry(sa: EspSA, src: str, dst: str, udp: bool) -> Entry | None:
    raw = raw_aead(sa.encr.keyed(sa.key))
    if raw is None or sa.integ is not None:  # a combined-mode cipher only: its tag is the ICV, always checked
        return None
    smallest = 8 + sa.encr.iv_size + sa.icv_size + 2
    text_head = esp_line_head(src, dst, sa.spi, udp).encode()
    return (sa.window, raw[1], raw[2], smallest, sa.esn, sa.counters, sa.spi, text_head,
            verified_esp_json_format(src, dst, sa.spi, udp, sa.esn))


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


def _classic(f: BinaryIO, head: bytes, source: str, dispatch: Dispatcher, out: BinaryIO, as_json: bool) -> Tally:
    """The loop over a classic pcap's records; see the module docstring for which packets it takes itself."""
    head += f.read(24 - len(head))
    order, nano, linktype = pcap_header(head, source)
    scale = 1e-9 if nano else 1e-6
    record = struct.Struct(order + "IIII").unpack_from
    off = _LINK_OFFSET.get(linktype, 0)
    # ethertype, version/IHL, total length, flags/fragment offset, protocol, source+destination+4 bytes, 4 bytes
    ip_head = struct.Struct(f"!{off - 2}xHBxH2xHxB2x12sI").unpack_from if off and dispatch.esp is not None else None
    shortest = off + 20 + 8
    udp_of = _UDP.unpack_from
    inner_of = _INNER.unpack_from
    tails = _FAST_TAILS.get
    fractions = _FRACTIONS.get
    echoes: dict[bytes, bytes] = {}  # addresses + ICMP type -> render.echo_head's text, in UTF-8
    time_min, time_max = (TIME_MIN, TIME_MAX) if as_json and not nano else (0, -1)  # else JSON is general
    sas = dispatch.esp.sas if dispatch.esp is not None else {}
    by_esp: dict[bytes, Entry | None] = {}  # addresses + SPI -> the SA's entry; None: learned, not for this loop
    by_udp: dict[bytes, Entry | None] = {}
    t = Tally()
    fast = 0
    batch: list[bytes] = []  # lines or JSON objects in UTF-8, joined once per write
    sep = b"\n"
    if as_json:
        out.write(b"[")

    def flush() -> None:
        nonlocal sep
        if as_json:
            out.write(sep)  # not sep + the batch: that copies a megabyte each time
            out.write(b",\n".join(batch))
            sep = b",\n"
        else:
            out.write(b"\n".join(batch))
            out.write(b"\n")
        batch.clear()

    def general(item: IpPacket | BadFrame) -> None:
        rec = dispatch(item)
        if rec is None:
            return
        if isinstance(rec, IkeRecord):
            t.ike += 1
            t.decrypted += rec.decrypted
            batch.append((ike_json(rec) if as_json else rec.line()).encode())
        else:
            t.esp += 1
            t.verified += rec.verified
            batch.append(esp_json(rec) if as_json else esp_line(rec).encode())
        t.errors += rec.error is not None

    buf, pos, base, n = b"", 0, 24, 0
    stop: str | None = None
    for chunk in _chunks(f):
        if isinstance(chunk, BaseException):
            stop = read_failed(chunk)
            break
        base += pos
        buf = buf[pos:] + chunk if pos < len(buf) else chunk
        pos, end = 0, len(buf)
        while pos + 16 <= end:
            sec, frac, caplen, _ = record(buf, pos)
            s = pos + 16
            nxt = s + caplen
            if nxt > end or caplen > MAX_RECORD:
                break
            pos = nxt
            n += 1
            key = b""
            if ip_head is not None and caplen >= shortest:
                etype, vihl, total, frag, proto, key, seq_lo = ip_head(buf, s)
                entry: Entry | None = None
                if etype != 0x0800 or vihl != 0x45 or frag & 0x3FFF or total > caplen - off:
                    key = b""
                elif proto == 50:
                    e = s + off + 20
                    entry = by_esp.get(key)
                elif proto == 17 and total >= 36:
                    e = s + off + 20
                    sport, dport, ulen, spi_bytes = udp_of(buf, e)
                    if (sport == _NATT or dport == _NATT) and ulen == total - 20 and spi_bytes != b"\0\0\0\0":
                        e += 8
                        key = key[:8] + spi_bytes
                        seq_lo = int.from_bytes(buf[e + 4 : e + 8], "big")
                        entry = by_udp.get(key)
                    else:
                        key = b""
                else:
                    key = b""
                if entry is not None and (not as_json or (time_min <= sec < time_max and frac < 1_000_000)):
                    window, aead_open, salt, smallest, esn, counters, spi, text_head, json_fmt = entry
                    seq = window.infer(seq_lo) if esn else seq_lo
                    top = window.top
                    esp_end = s + off + total
                    if seq > top and esp_end - e >= smallest:  # right of the window: no bitmap to consult
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
                                (version == 4 and pe >= 28 and plain[0] >> 4 == 4
                                 and ((plain[2] << 8) | plain[3]) == pe)
                                or (version == 6 and pe >= 40 and plain[0] >> 4 == 6
                                    and 40 + ((plain[4] << 8) | plain[5]) == pe)
                            ):
                                window.advance(seq, top)
                                counters.packets_in += 1
                                counters.bytes_in += pe
                                fast += 1
                                if as_json:
                                    batch.append(json_fmt % (
                                        n, sec, fractions(frac) or time_fraction(frac), seq_lo, plain[-1],
                                        hexlify(plain[:pe]), seq >> 32))
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
                                        batch.append(b"#%d%b%d%b: IPv4: %b%d seq=%d, %d bytes" % (
                                            n, text_head, seq_lo, esn_text, echo, ident, iseq, pe))
                                    else:
                                        batch.append(b"#%d%b%d%b: %b: %b" % (
                                            n, text_head, seq_lo, esn_text, b"IPv4" if version == 4 else b"IPv6",
                                            inner_summary(plain[:pe]).encode()))
                                if len(batch) >= BATCH:
                                    flush()
                                continue
            item = frame_ip(n, sec + frac * scale, buf[s:nxt], linktype)
            if item is not None:
                general(item)
                if key:
                    _learned(sas, key, by_udp if proto == 17 else by_esp, proto == 17, item)
            if len(batch) >= BATCH:
                flush()
        if pos + 16 <= end:  # the loop stopped at a record it cannot take
            caplen = record(buf, pos)[2]
            if caplen > MAX_RECORD:
                why = f"a captured length of {caplen} bytes (at most {MAX_RECORD})"
                stop = undecodable_reason(f"record {n + 1}", base + pos, why)
                break
    if stop is None and pos < len(buf):  # the file ends inside a record
        left = len(buf) - pos
        if left < 16:
            stop = truncated_reason(f"record {n + 1}'s header", base + pos, 16, left)
        else:
            stop = truncated_reason(f"record {n + 1}", base + pos, 16 + record(buf, pos)[2], left)
    if stop is not None:
        general(BadFrame(n + 1, stop))
    if batch:
        flush()
    if as_json:
        out.write(b"\n]\n")
    t.esp += fast
    t.verified += fast
    t.fast = fast
    return t


def _learned(sas: dict[tuple[int, str, str], EspSA], key: bytes, table: dict[bytes, Entry | None], udp: bool,
             item: IpPacket | BadFrame) -> None:
    """After the general path took a packet of this loop's shape: its SA's entry, once the SA is learned."""
    if key in table or isinstance(item, BadFrame):
        return
    src, dst = item.src, item.dst
    sa = sas.get((int.from_bytes(key[8:12], "big"), src, dst))
    if sa is not None:
        table[key] = _entry(sa, src, dst, udp)


def _chunks(f: BinaryIO) -> Iterator[bytes | BaseException]:
    while True:
        try:
            chunk = f.read(CHUNK)
        except OSError as exc:
            yield exc
            return
        if not chunk:
            return
        yield chunk

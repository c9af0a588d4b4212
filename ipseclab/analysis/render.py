"""Records as a terminal line or a JSON object, written as they come: what ``ipseclab decrypt`` prints.

A capture of a hundred thousand packets is a hundred thousand records, so nothing here holds
them: :func:`write_text` and :func:`write_json` take an iterator, write in batches and keep
only counts.  The inner packet of an ESP/AH record is described from its bytes (the pcap
reader's IP parser, a few fields of ICMP, UDP or TCP); Scapy's summary, which dissects the
whole packet at about a hundred times the cost, only when asked (``scapy=True``, the CLI's
``--verbose``).
"""

from __future__ import annotations

import json
import struct
from binascii import hexlify
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ..pcap.reader import BadFrame, address_text, parse_ip

if TYPE_CHECKING:
    from .esp import EspRecord
    from .ike import IkeRecord

_NAMES = {4: "IPv4", 41: "IPv6", 6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 59: "none (dummy)"}
_ICMP = {(1, 0): "echo-reply", (1, 8): "echo-request", (1, 3): "dest-unreach", (1, 11): "time-exceeded",
         (58, 128): "echo-request", (58, 129): "echo-reply", (58, 1): "dest-unreach", (58, 143): "mldv2-report"}
_HH = struct.Struct("!HH")
BATCH = 512  # records per write: fewer system calls, and still a bounded buffer


def echo_head(packet: bytes) -> str | None:
    """``ICMP 10.0.0.1 > 10.0.1.1 echo-request id=`` of an IPv4 ICMP echo without options, else None.

    The usual inner packet of a test; the text before the numbers is cached by addresses and type
    (a bounded cache: a capture names few hosts), so describing a ping costs a lookup.
    """
    if len(packet) >= 28 and packet[0] == 0x45 and packet[9] == 1 and packet[20] in (0, 8) and not (
            packet[6] & 0x3F or packet[7]):
        key = packet[12:21]
        head = _ECHO.get(key)
        if head is None:
            if len(_ECHO) >= _MAX_ECHO:
                _ECHO.clear()
            head = _ECHO[key] = (f"ICMP {address_text(packet[12:16])} > {address_text(packet[16:20])} "
                                 f"{_ICMP[1, packet[20]]} id=")
        return head
    return None


_ECHO: dict[bytes, str] = {}
_MAX_ECHO = 4096


def inner_summary(packet: bytes) -> str:
    """``ICMP 10.0.0.1 > 10.0.1.1 echo-request id=1 seq=2, 84 bytes`` from an IP packet's bytes."""
    head = echo_head(packet)
    if head is not None:
        ident, seq = _HH.unpack_from(packet, 24)
        return f"{head}{ident} seq={seq}, {len(packet)} bytes"
    if len(packet) >= 28 and packet[0] == 0x45 and packet[9] == 1 and not (packet[6] & 0x3F or packet[7]):
        kind = _ICMP.get((1, packet[20]))
        if kind is not None:  # not an echo: no identifier or sequence number to show
            return f"ICMP {address_text(packet[12:16])} > {address_text(packet[16:20])} {kind}, {len(packet)} bytes"
    ip = parse_ip(packet)
    if isinstance(ip, BadFrame):
        return f"{len(packet)} bytes ({ip.reason})"
    name = _NAMES.get(ip.proto, f"protocol {ip.proto}")
    body = ip.payload
    text = f"{name} {ip.src} > {ip.dst}"
    if ip.fragment:
        text += " fragment"
    elif ip.proto in (1, 58) and len(body) >= 8:
        text += f" {_ICMP.get((ip.proto, body[0]), f'type {body[0]} code {body[1]}')}"
        if body[0] in (0, 8, 128, 129):
            ident, seq = _HH.unpack_from(body, 4)
            text += f" id={ident} seq={seq}"
    elif ip.proto in (6, 17) and len(body) >= 4:
        sport, dport = _HH.unpack_from(body)
        text = f"{name} {ip.src}:{sport} > {ip.dst}:{dport}"
    return f"{text}, {len(packet)} bytes"


def scapy_summary(packet: bytes) -> str:
    try:
        from ..esp.common import to_scapy

        return str(to_scapy(packet).summary())
    except Exception:  # a summary is decoration: never let Scapy's dissection fail a record
        return f"{len(packet)} bytes"


def esp_line(e: EspRecord, scapy: bool = False) -> str:
    where = f"{e.src} -> {e.dst}{' (UDP 4500)' if e.udp_encap else ''}"
    head = f"#{e.frame} {where} {e.proto.upper()} spi={e.spi:#010x} seq={e.seq}"
    if e.error:
        return f"{head} ERROR {e.error}"
    nh = e.next_header if e.next_header is not None else -1
    what = _NAMES.get(nh, f"protocol {nh}")
    if nh in (4, 41):
        summary = scapy_summary(e.inner) if scapy else inner_summary(e.inner)
    else:
        summary = f"{len(e.inner)} bytes"
    check = "" if e.verified else " (not verified)"
    esn = (f" esn hi={e.esn_hi}" if e.esn_hi else " esn") if e.esn else ""
    return f"{head}{esn}: {what}{check}: {summary}"


def esp_line_head(src: str, dst: str, spi: int, udp_encap: bool) -> str:
    """What ``esp_line`` writes between ``#frame`` and the sequence number, for one SA (``analysis.fast``)."""
    from .esp import EspRecord

    line = esp_line(EspRecord(-1, 0.0, src, dst, "esp", spi, 0, udp_encap, error="-"))
    return line[len("#-1"): -len("0 ERROR -")]


def ike_json(r: IkeRecord) -> str:
    from ..packets.describe import message_dict

    item: dict[str, object] = {
        "frame": r.frame, "time": r.time, "src": f"{r.src}:{r.sport}", "dst": f"{r.dst}:{r.dport}",
        "protocol": "ike", "decrypted": r.decrypted, "error": r.error,
        "message": message_dict(r.message) if r.message else None,
    }
    if r.reassembled is not None:
        item["reassembled"] = message_dict(r.reassembled)
    return json.dumps(item)


def esp_json(e: EspRecord) -> bytes:
    """The record as one JSON object in UTF-8, written by hand: json.dumps of a dict costs several times more.

    Only ``error`` is free text (escaped by json); addresses come from the IP parser, the rest are numbers.
    The inner packet's hex is made as bytes and joined once, never copied through a str.
    """
    nh = "null" if e.next_header is None else e.next_header
    err = "null" if e.error is None else json.dumps(e.error)
    head = (f'{{"frame": {e.frame}, "time": {e.time!r}, "src": "{e.src}", "dst": "{e.dst}", "proto": "{e.proto}", '
            f'"spi": {e.spi}, "seq": {e.seq}, "udp_encap": {"true" if e.udp_encap else "false"}, '
            f'"next_header": {nh}, "inner": "').encode()
    tail = (f'", "esn": {"true" if e.esn else "false"}, "esn_hi": {e.esn_hi}, '
            f'"verified": {"true" if e.verified else "false"}, "error": {err}, "protocol": "{e.proto}"}}').encode()
    return b"".join((head, hexlify(e.inner), tail))


def verified_esp_json_format(src: str, dst: str, spi: int, udp_encap: bool, esn: bool, next_header: int) -> bytes:
    """``esp_json`` of a verified ESP record of one SA and next header as a bytes %-format of (frame, the
    time's seconds and its fraction as repr writes them (both text), seq, the inner packet's hex in two
    pieces, and with ``esn`` esn_hi): what is the same for every such packet of the SA is written once
    (``analysis.fast``); without ESN esn_hi is 0.

    Made from esp_json itself, with marker values in the per-packet fields, so the two cannot drift.
    """
    from .esp import EspRecord

    marked = EspRecord(-1, -1.5, src, dst, "esp", spi, -2, udp_encap, next_header, b"", esn, -4 if esn else 0, True)
    fmt = esp_json(marked).replace(b"%", b"%%")
    inner = b'"next_header": %d, "inner": ""' % next_header
    for marker, field in ((b'"frame": -1, "time": -1.5,', b'"frame": %d, "time": %b%b,'),
                          (b'"seq": -2,', b'"seq": %d,'),
                          (inner, inner[:-1] + b'%b%b"'),
                          *(((b'"esn_hi": -4,', b'"esn_hi": %d,'),) if esn else ())):
        if fmt.count(marker) != 1:
            raise RuntimeError(f"esp_json changed: {marker!r} not found once in {fmt!r}")
        fmt = fmt.replace(marker, field)
    return fmt


@dataclass(slots=True)
class Tally:
    """What was written: the summary line's numbers and the exit status's."""

    ike: int = 0
    decrypted: int = 0
    esp: int = 0
    verified: int = 0
    errors: int = 0
    fast: int = 0  # ESP records written by analysis.fast's inline path (the rest took the general one)

    def summary(self, esp: bool) -> str:
        text = f"{self.ike} IKE datagrams, {self.decrypted} decrypted"
        if esp:
            text += f"; {self.esp} ESP/AH packets, {self.verified} verified"
        return f"{text}, {self.errors} with errors"


def write_text(records: Iterable[IkeRecord | EspRecord], out: BinaryIO, *, scapy: bool = False) -> Tally:
    """One line per record (and its notes), in capture order, as they come, in UTF-8 to a binary stream."""
    from .ike import IkeRecord

    t = Tally()
    batch: list[str] = []
    for r in records:
        if isinstance(r, IkeRecord):
            t.ike += 1
            t.decrypted += r.decrypted
            batch.append(r.line())
        else:
            t.esp += 1
            t.verified += r.verified
            batch.append(esp_line(r, scapy))
        t.errors += r.error is not None
        if len(batch) >= BATCH:
            batch.append("")
            out.write("\n".join(batch).encode())
            batch.clear()
    if batch:
        batch.append("")
        out.write("\n".join(batch).encode())
    return t


def write_json(records: Iterable[IkeRecord | EspRecord], out: BinaryIO) -> Tally:
    """A JSON array of one object per record, one object a line, written as the records come (UTF-8)."""
    from .ike import IkeRecord

    t = Tally()
    batch: list[bytes] = []
    sep = b"\n"
    out.write(b"[")
    for r in records:
        if isinstance(r, IkeRecord):
            t.ike += 1
            t.decrypted += r.decrypted
            batch.append(ike_json(r).encode())
        else:
            t.esp += 1
            t.verified += r.verified
            batch.append(esp_json(r))
        t.errors += r.error is not None
        if len(batch) >= BATCH:
            out.write(sep)  # not sep + the batch: that copies a megabyte each time
            out.write(b",\n".join(batch))
            sep = b",\n"
            batch.clear()
    if batch:
        out.write(sep)
        out.write(b",\n".join(batch))
    out.write(b"\n]\n")
    return t

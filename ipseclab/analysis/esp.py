"""The ESP and AH packets of a capture, verified and decrypted with Wireshark ``esp_sa`` rows.

Every IP packet with protocol 50, or UDP to/from port 4500 that is not IKE or a keepalive,
is verified and decrypted with ipseclab's own :class:`~ipseclab.esp.EspSA` built from the
row that matches its SPI and addresses.  The rows do not say whether an SA uses ESN
(Wireshark 4.0 has no such field), so an SA is learned from its first packet that
verifies: without ESN, then with ESN from high-order bits 0, then, for a capture that
starts in the middle of a long-lived SA, with high-order bits 1 to :data:`ESN_HIGH_MAX`
(the value found is in the record; a low half of 0 is a valid sequence number after a
wrap).  Each SPI keeps a 4096-packet replay window, so a packet that appears twice in one
capture is reported as a replay.  An AH packet whose SPI and addresses match a row with
an authentication key is verified by ipseclab's :class:`~ipseclab.esp.AhSA` (Wireshark 4.0
checks no AH ICV; users keep AH keys in esp_sa rows with NULL encryption), and a failed ICV
is an error like ESP's; without such a row it is listed with its payload, unverified.  A
packet that fails becomes a record with a one-line reason; the rest is still reported.

Memory does not grow with the capture: the SAs, the row each (SPI, addresses) matched and
the count of failed searches are kept per SA, each table capped at :data:`MAX_SAS` entries.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import IntegrityError, IpsecLabError, ReplayError
from ..esp import AhSA, EspSA
from ..packets.natt import NATT_PORT, Udp4500Kind, classify_udp4500
from ..pcap.esp_keyfiles import EspSaRow
from ..pcap.reader import IPPROTO_AH, IPPROTO_ESP, IPPROTO_UDP, BadFrame, Capture, IpPacket, read_ip
from .keyrows import ah_sa_from_row, check_esp_row, checks_icv, esp_sa_from_row

_II = struct.Struct("!II")
_UDP = struct.Struct("!HHH")
ESN_HIGH_MAX = 16  # high-order ESN values tried for an SA whose first packet verifies neither without ESN nor at 0
MAX_SEARCHES = 8  # packets of one SA that may each try every high-order value before it gets only the cheap tries
MAX_SAS = 1 << 16  # SAs (and SPI/address matches) remembered; a capture of more starts the excess afresh per packet
SA = TypeVar("SA", EspSA, AhSA)
Key = tuple[int, str, str]  # SPI, source, destination


@dataclass(slots=True)
class EspRecord:
    """One ESP or AH packet of a capture, decrypted as far as the rows allow."""

    frame: int
    time: float
    src: str
    dst: str
    proto: str  # "esp" or "ah"
    spi: int
    seq: int
    udp_encap: bool = False
    next_header: int | None = None
    inner: bytes = b""  # the decrypted payload: an IP packet in tunnel mode, the transport payload otherwise
    esn: bool = False
    esn_hi: int = 0  # with ESN: the high-order 32 bits of this packet's sequence number
    verified: bool = False  # the ICV was checked and good
    error: str | None = None

    @property
    def dummy(self) -> bool:
        return self.next_header == 59

    def line(self, scapy: bool = False) -> str:
        """One line for a terminal; ``scapy`` describes the inner packet with Scapy's summary (slower)."""
        from .render import esp_line

        return esp_line(self, scapy)


def esp_of(pkt: IpPacket) -> tuple[bytes, bool] | None:
    """(ESP bytes, in UDP) of a captured packet, or None when it carries no ESP."""
    if pkt.proto == IPPROTO_ESP:
        return pkt.payload, False
    if pkt.proto != IPPROTO_UDP or len(pkt.payload) < 8:
        return None
    sport, dport, length = _UDP.unpack_from(pkt.payload)
    if NATT_PORT not in (sport, dport) or length < 8:
        return None
    try:
        kind, body = classify_udp4500(pkt.payload[8:length])
    except IpsecLabError:
        return None
    return (body, True) if kind is Udp4500Kind.ESP else None


def carries_esp(pkt: IpPacket) -> bool:
    """Whether a packet is ESP, AH or ESP in UDP 4500 (what :meth:`EspDecryptor.packet` makes a record of)."""
    return pkt.proto in (IPPROTO_ESP, IPPROTO_AH) or esp_of(pkt) is not None


class EspDecryptor:
    """Verifies and decrypts ESP/AH packets one at a time, in capture order; see the module docstring."""

    __slots__ = ("ah_sas", "failed", "matched", "rows", "sas")

    def __init__(self, rows: list[EspSaRow]) -> None:
        self.rows = rows
        for row in rows:  # a key that does not fit its algorithm is the file's fault: say so once, up front
            if row.encr_id is not None and row.integ_id is not None:
                check_esp_row(row)
        self.sas: dict[Key, EspSA] = {}
        self.ah_sas: dict[Key, AhSA] = {}
        self.matched: dict[Key, EspSaRow | None] = {}
        self.failed: dict[Key, int] = {}

    def row_for(self, spi: int, src: str, dst: str) -> EspSaRow | None:
        key = (spi, src, dst)
        try:
            return self.matched[key]
        except KeyError:
            row = next((r for r in self.rows if r.matches(spi, src, dst)), None)
            _remember(self.matched, key, row)
            return row

    def packet(self, pkt: IpPacket) -> EspRecord | None:
        """The record of an ESP/AH packet; None when the packet carries neither."""
        proto = pkt.proto
        if proto == IPPROTO_ESP:
            esp, udp = pkt.payload, False
        elif proto == IPPROTO_AH:
            return self._ah(pkt)
        else:
            found = esp_of(pkt)
            if found is None:
                return None
            esp, udp = found
        if len(esp) < 8:
            return EspRecord(pkt.frame, pkt.time, pkt.src, pkt.dst, "esp", 0, 0, udp, error="truncated ESP")
        spi, seq = _II.unpack_from(esp)
        src, dst = pkt.src, pkt.dst
        rec = EspRecord(pkt.frame, pkt.time, src, dst, "esp", spi, seq, udp)
        if pkt.fragment:
            rec.error = "IP fragment (reassembly is not supported)"
            return rec
        key = (spi, src, dst)
        try:
            sa = self.sas.get(key)
            if sa is not None:
                if sa.esn:
                    rec.esn, rec.esn_hi = True, sa.window.infer(seq) >> 32
                rec.inner, rec.next_header = sa.decapsulate(esp)
            else:
                row = self.row_for(spi, src, dst)
                if row is None:
                    rec.error = "no esp_sa row for this SPI"
                    return rec
                sa, (rec.inner, rec.next_header) = self._learn(self.sas, key, row, esp_sa_from_row, esp, seq,
                                                               EspSA.decapsulate)
                rec.esn, rec.esn_hi = sa.esn, sa.window.top >> 32
            rec.verified = sa.integ is None or sa.integ.checked  # an "ANY n bit" row verifies nothing
        except IpsecLabError as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        return rec

    def _learn(self, table: dict[Key, SA], key: Key, row: EspSaRow, make: Callable[[EspSaRow, int, bool], SA],
               data: bytes, seq_lo: int, receive: Callable[[SA, bytes], R]) -> tuple[SA, R]:
        """The first packet of an SA that verifies decides whether it uses ESN and from which high-order bits.

        Without ESN, with ESN from 0, then with ESN from 1..ESN_HIGH_MAX (the window placed just before this
        packet, so a low half of 0 is a valid sequence number); the SA that verifies is kept.  An SA whose
        packets keep failing gets the whole search MAX_SEARCHES times, then only the first two tries.
        """
        searched = self.failed.get(key, 0)
        highs: range = range(1, ESN_HIGH_MAX + 1) if searched < MAX_SEARCHES else range(0)
        tries = [(False, 0), (True, 0), *((True, hi) for hi in highs)]
        for esn, hi in tries:
            sa = make(row, key[0], esn)
            if hi:
                sa.window.resume(((hi << 32) | seq_lo) - 1)
            try:
                got = receive(sa, data)
            except (IntegrityError, ReplayError):  # ReplayError: a low half of 0 without ESN, or seen below hi
                continue
            _remember(table, key, sa)
            return sa, got
        _remember(self.failed, key, searched + 1)
        which = f"ESN high-order bits 0..{ESN_HIGH_MAX}" if highs else "ESN high-order bits 0"
        what = "AH ICV" if isinstance(sa, AhSA) else "ICV"
        raise IntegrityError(f"{what} mismatch (without ESN, and with {which}) using the "
                             f"{row.encr_name} / {row.auth_name} row")

    def _ah(self, pkt: IpPacket) -> EspRecord:
        data = pkt.payload
        if len(data) < 12:
            return EspRecord(pkt.frame, pkt.time, pkt.src, pkt.dst, "ah", 0, 0, error="truncated AH header")
        nh, plen = data[0], data[1]
        spi, seq = _II.unpack_from(data, 4)
        rec = EspRecord(pkt.frame, pkt.time, pkt.src, pkt.dst, "ah", spi, seq, next_header=nh)
        ah_len = (plen + 2) * 4
        if ah_len > len(data):
            rec.error = f"AH length {ah_len} beyond the packet"
            return rec
        rec.inner = data[ah_len:]
        row = self.row_for(spi, pkt.src, pkt.dst)
        if row is None or not row.integ_id or not checks_icv(row) or pkt.fragment:
            return rec  # nothing to verify with: listed unverified, as Wireshark lists it
        key = (spi, pkt.src, pkt.dst)
        try:
            sa = self.ah_sas.get(key)
            if sa is None:
                sa, _ = self._learn(self.ah_sas, key, row, ah_sa_from_row, pkt.packet, seq, AhSA.unprotect)
                hi = sa.window.top >> 32
            else:
                hi = sa.window.infer(seq) >> 32 if sa.esn else 0
                sa.unprotect(pkt.packet)
            rec.esn, rec.esn_hi = sa.esn, hi
            rec.verified = True
        except IpsecLabError as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        return rec


R = TypeVar("R")
V = TypeVar("V")


def _remember(table: dict[Key, V], key: Key, value: V) -> None:
    if len(table) >= MAX_SAS and key not in table:
        return  # bounded: what is not remembered is worked out again for the next packet
    table[key] = value


def decrypt_esp_capture(pcap: Capture, rows: list[EspSaRow]) -> list[EspRecord]:
    """Every ESP/AH record of ``pcap`` as a list (``stream.records`` streams IKE and ESP/AH in one pass).

    PcapError for an unreadable file.
    """
    dec = EspDecryptor(rows)
    out: list[EspRecord] = []
    for pkt in read_ip(pcap):
        if isinstance(pkt, BadFrame):
            continue
        rec = dec.packet(pkt)
        if rec is not None:
            out.append(rec)
    return out

"""Decrypt the ESP (and show the AH) packets of a capture with Wireshark ``esp_sa`` rows.

The engine for ``ipseclab decrypt`` on ESP: every IP packet of the capture with
protocol 50, or UDP to/from port 4500 that is not IKE or a keepalive, is verified and
decrypted with ipseclab's own :class:`~ipseclab.esp.EspSA` built from the row that
matches its SPI and addresses.  The rows do not say whether an SA uses ESN (Wireshark
4.0 has no such field), so an SA is tried without ESN and, if its first packet fails
the ICV, with ESN.  Each SPI keeps a 4096-packet replay window, so a packet that
appears twice in one capture is reported as a replay.  An AH packet whose SPI and addresses
match a row with an authentication key is verified by ipseclab's :class:`~ipseclab.esp.AhSA`
(Wireshark 4.0 checks no AH ICV; users keep AH keys in esp_sa rows with NULL encryption), and a
failed ICV is an error like ESP's; without such a row it is listed with its payload, unverified.
A packet that fails becomes a record with a one-line reason; the rest is still reported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .crypto import get_integ
from .errors import IntegrityError, IpsecLabError, KeyFileError, UnsupportedTransformError
from .esp import AhSA, EspSA
from .packets.natt import NATT_PORT, Udp4500Kind, classify_udp4500
from .pcap.esp_keyfiles import ESP_ENCR_REFUSALS, EspSaRow
from .pcap.reader import IPPROTO_AH, IPPROTO_ESP, IPPROTO_UDP, BadFrame, Capture, IpPacket, read_ip

_II = struct.Struct("!II")
_UDP = struct.Struct("!HHH")
REPLAY_WINDOW = 4096
_NAMES = {4: "IPv4", 41: "IPv6", 6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 59: "none (dummy)"}


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
    verified: bool = False  # the ICV was checked and good
    error: str | None = None

    @property
    def dummy(self) -> bool:
        return self.next_header == 59

    def line(self) -> str:
        where = f"{self.src} -> {self.dst}{' (UDP 4500)' if self.udp_encap else ''}"
        head = f"#{self.frame} {where} {self.proto.upper()} spi={self.spi:#010x} seq={self.seq}"
        if self.error:
            return f"{head} ERROR {self.error}"
        nh = self.next_header if self.next_header is not None else -1
        what = _NAMES.get(nh, f"protocol {nh}")
        summary = _scapy_summary(self.inner) if nh in (4, 41) else f"{len(self.inner)} bytes"
        check = "" if self.verified else " (not verified)"
        return f"{head}{' esn' if self.esn else ''}: {what}{check}: {summary}"


def _scapy_summary(packet: bytes) -> str:
    try:
        from .esp.common import to_scapy

        return str(to_scapy(packet).summary())
    except Exception:  # a summary is decoration: never let Scapy's dissection fail a record
        return f"{len(packet)} bytes"


def esp_sa_row(sa: EspSA, *, src: str = "*", dst: str = "*", family: str | None = None) -> EspSaRow:
    """The Wireshark esp_sa row for an ipseclab SA (so tshark can check what ipseclab sent)."""
    fam = family or ("IPv6" if ":" in (sa.tunnel[0] if sa.tunnel else src) else "IPv4")
    integ = sa.integ.id if sa.integ is not None else 0
    return EspSaRow.from_ids(sa.spi, sa.encr.id, sa.key, integ, sa.integ_key, src=src, dst=dst, family=fam)


def check_esp_row(row: EspSaRow) -> None:
    """KeyFileError naming the row's file and line unless ipseclab can decrypt with it (algorithms, key sizes)."""
    where = row.where or "esp_sa row"
    if row.encr_id is None or row.integ_id is None:
        why = ESP_ENCR_REFUSALS.get(row.encr_name, "")
        raise KeyFileError(f"{where}: ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}"
                           + (f" ({why})" if why else ""))
    try:
        _Keys.make(row, row.spi or 1, False)
    except UnsupportedTransformError:
        raise KeyFileError(f"{where}: ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}") from None
    except IpsecLabError as exc:
        raise KeyFileError(f"{where}: {exc}") from None


class _Keys:
    """The SAs built from the rows, one per SPI and addresses, learned (ESN or not) on first success."""

    def __init__(self, rows: list[EspSaRow]) -> None:
        self.rows = rows
        self.sas: dict[tuple[int, str, str], EspSA] = {}
        self.ah_sas: dict[tuple[int, str, str], AhSA] = {}
        for row in rows:  # a key that does not fit its algorithm is the file's fault: say so once, up front
            if row.encr_id is not None and row.integ_id is not None:
                check_esp_row(row)

    def sa_for(self, spi: int, src: str, dst: str) -> EspSaRow | None:
        return next((r for r in self.rows if r.matches(spi, src, dst)), None)

    @staticmethod
    def make(row: EspSaRow, spi: int, esn: bool) -> EspSA:
        if row.encr_id is None or row.integ_id is None:
            raise IpsecLabError(f"ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}")
        auth_key = row.auth_key if _checks_icv(row) else b""  # an "ANY n bit" row's key is not used, as in Wireshark
        return EspSA(spi, row.encr_id, row.encr_key, integ=row.integ_id or None, integ_key=auth_key,
                     mode="transport", esn=esn, replay_window=REPLAY_WINDOW, check_padding=False)

    def verify_ah(self, row: EspSaRow, spi: int, src: str, dst: str, packet: bytes) -> bool:
        """Verify one AH packet (the whole IP packet); whether its SA uses ESN.  IntegrityError when it fails."""
        key = (spi, src, dst)
        sa = self.ah_sas.get(key)
        if sa is not None:
            sa.unprotect(packet)
            return sa.esn
        for esn in (False, True):
            sa = _ah_sa(row, spi, esn)
            try:
                sa.unprotect(packet)
            except IntegrityError:
                continue
            self.ah_sas[key] = sa
            return esn
        raise IntegrityError(f"AH ICV mismatch (with and without ESN) using the {row.auth_name} row")

    def decapsulate(self, row: EspSaRow, spi: int, src: str, dst: str, esp: bytes) -> tuple[bytes, int, bool]:
        key = (spi, src, dst)
        sa = self.sas.get(key)
        if sa is not None:
            payload, nh = sa.decapsulate(esp)
            return payload, nh, sa.esn
        plain = self.make(row, spi, False)
        try:
            payload, nh = plain.decapsulate(esp)
        except IntegrityError:
            esn = self.make(row, spi, True)
            try:
                payload, nh = esn.decapsulate(esp)
            except IntegrityError:
                raise IntegrityError(f"ICV mismatch (with and without ESN) using the {row.encr_name} row") from None
            self.sas[key] = esn
            return payload, nh, True
        self.sas[key] = plain
        return payload, nh, False


def _checks_icv(row: EspSaRow) -> bool:
    """False for Wireshark's "ANY n bit [no checking]" rows: the ICV is skipped, so nothing is verified."""
    return not row.integ_id or get_integ(row.integ_id).checked


def _ah_sa(row: EspSaRow, spi: int, esn: bool) -> AhSA:
    if row.integ_id is None or not row.integ_id:
        raise IpsecLabError(f"{row.auth_name!r} cannot verify AH")
    # transport mode whatever the SA's: the ICV covers the same bytes, and the payload is shown as captured
    return AhSA(spi, row.integ_id, row.auth_key, mode="transport", esn=esn, replay_window=REPLAY_WINDOW)


def _esp_of(pkt: IpPacket) -> tuple[bytes, bool] | None:
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


def decrypt_esp_capture(pcap: Capture, rows: list[EspSaRow]) -> list[EspRecord]:
    """One record per ESP/AH packet of ``pcap`` (see the module docstring); PcapError for an unreadable file."""
    keys = _Keys(rows)
    out: list[EspRecord] = []
    for pkt in read_ip(pcap):
        if isinstance(pkt, BadFrame):
            continue
        if pkt.proto == IPPROTO_AH:
            out.append(_ah_record(pkt, keys))
            continue
        found = _esp_of(pkt)
        if found is None:
            continue
        esp, udp = found
        if len(esp) < 8:
            out.append(EspRecord(pkt.frame, pkt.time, pkt.src, pkt.dst, "esp", 0, 0, udp, error="truncated ESP"))
            continue
        spi, seq = _II.unpack_from(esp)
        rec = EspRecord(pkt.frame, pkt.time, pkt.src, pkt.dst, "esp", spi, seq, udp)
        out.append(rec)
        if pkt.fragment:
            rec.error = "IP fragment (reassembly is not supported)"
            continue
        row = keys.sa_for(spi, pkt.src, pkt.dst)
        if row is None:
            rec.error = "no esp_sa row for this SPI"
            continue
        try:
            rec.inner, rec.next_header, rec.esn = keys.decapsulate(row, spi, pkt.src, pkt.dst, esp)
            rec.verified = _checks_icv(row)
        except IpsecLabError as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
    return out


def _ah_record(pkt: IpPacket, keys: _Keys) -> EspRecord:
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
    row = keys.sa_for(spi, pkt.src, pkt.dst)
    if row is None or not row.integ_id or not _checks_icv(row) or pkt.fragment:
        return rec  # nothing to verify with: listed unverified, as Wireshark lists it
    try:
        rec.esn = keys.verify_ah(row, spi, pkt.src, pkt.dst, pkt.packet)
        rec.verified = True
    except IpsecLabError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
    return rec

"""Decrypt the IKE messages of a capture with Wireshark key files: the engine behind ``ipseclab decrypt``.

Every UDP datagram on port 500 or 4500 is read; IKE messages are decoded and,
when the key table has their IKE SA, their SK/SKF payloads are verified and
decrypted (fragments are reassembled).  A datagram that fails becomes a record
with a one-line reason; the rest of the capture is still reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .crypto import get_encr, get_integ
from .errors import IpsecLabError, KeyFileError
from .packets.enums import ExchangeType, enum_name
from .packets.fragment import Reassembler
from .packets.message import EncryptedFragment, IkeSaCrypto, Message, SkCrypto, decode
from .packets.natt import IKE_PORT, NATT_PORT, Udp4500Kind, classify_udp4500
from .pcap.esp_keyfiles import EspSaRow, read_esp_sa
from .pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table
from .pcap.reader import BadFrame, Capture, UdpDatagram, read_udp

R = TypeVar("R")


@dataclass(slots=True)
class IkeRecord:
    """One IKE datagram of a capture, decoded as far as the keys allow."""

    frame: int
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    raw: bytes = b""
    message: Message | None = None
    decrypted: bool = False
    reassembled: Message | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def direction(self) -> str:
        if self.message is None:
            return "?"
        who = "initiator" if self.message.initiator else "responder"
        return f"{'response' if self.message.response else 'request'} from {who}"

    def line(self) -> str:
        where = f"{self.src}:{self.sport} -> {self.dst}:{self.dport}"
        if self.message is None:
            return f"#{self.frame} {where} ERROR {self.error}"
        text = f"#{self.frame} {where} {self.message.summary()} ({self.direction})"
        if self.reassembled is not None:
            text += f"\n    reassembled: {self.reassembled.summary()}"
        if self.error:
            text += f"\n    ERROR {self.error}"
        return text


def crypto_from_row(row: IkeSaKeyRow) -> IkeSaCrypto:
    """Both directions' SK crypto from one ikev2_decryption_table row.

    KeyFileError naming the row's file and line when its algorithms do not go together or a key
    has the wrong length: checked here, once per row, so a bad row never reaches the codec.
    """
    where = row.where or f"ikev2_decryption_table row {row.spi_i.hex()}_i {row.spi_r.hex()}_r"
    try:
        encr = get_encr(row.encr_id, row.encr_key_bits or None)
        integ = get_integ(row.integ_id) if row.integ_id else None
    except IpsecLabError as exc:
        raise KeyFileError(f"{where}: {exc}") from None
    if encr.aead and integ is not None:
        raise KeyFileError(f"{where}: {row.encr_name} is a combined-mode cipher: its integrity must be NONE [RFC4306]")
    if not encr.aead and integ is None:
        raise KeyFileError(f"{where}: {row.encr_name} needs an integrity algorithm; NONE [RFC4306] is for "
                           "AES-GCM and ChaCha20-Poly1305 rows")
    keys = [("SK_ei", row.sk_ei, encr.key_size, row.encr_name), ("SK_er", row.sk_er, encr.key_size, row.encr_name)]
    if integ is not None and integ.checked:  # an "ANY n-bits [No Checking]" row's keys are not used, as in Wireshark
        keys += [("SK_ai", row.sk_ai, integ.key_size, row.integ_name), ("SK_ar", row.sk_ar, integ.key_size,
                                                                         row.integ_name)]
    for name, key, size, algorithm in keys:
        if len(key) != size:
            raise KeyFileError(f"{where}: {name} is {len(key)} bytes; {algorithm} needs {size} "
                               f"({2 * size} hex digits)")
    if integ is not None and not integ.checked:
        return IkeSaCrypto(SkCrypto(encr, integ, row.sk_ei, b""), SkCrypto(encr, integ, row.sk_er, b""))
    return IkeSaCrypto(SkCrypto(encr, integ, row.sk_ei, row.sk_ai), SkCrypto(encr, integ, row.sk_er, row.sk_ar))


def read_key_tables(ike_paths: list[str], esp_paths: list[str]) -> tuple[list[IkeSaKeyRow], list[EspSaRow], list[str]]:
    """The rows of every table that ipseclab can use, and one line (file, line, why) per row it cannot.

    As Wireshark does, a row that cannot be used is left out and the rest of its table is used. A table
    none of whose rows can be used is a KeyFileError (the first reason): a mistake to stop at.
    """
    from .esp_decrypt import check_esp_row

    ike: list[IkeSaKeyRow] = []
    esp: list[EspSaRow] = []
    notes: list[str] = []
    for path in ike_paths:
        skipped: list[str] = []
        ike += _usable(read_ikev2_decryption_table(path, skipped), crypto_from_row, skipped)
        notes += skipped
    for path in esp_paths:
        skipped = []
        esp += _usable(read_esp_sa(path, skipped), check_esp_row, skipped)
        notes += skipped
    return ike, esp, notes


def _usable(rows: list[R], check: Callable[[R], object], skipped: list[str]) -> list[R]:
    good = []
    for row in rows:
        try:
            check(row)
            good.append(row)
        except KeyFileError as exc:
            skipped.append(str(exc))
    skipped.sort(key=_line_number)  # rows refused when read and when checked, in the file's order
    if skipped and not good:
        more = len(skipped) - 1
        raise KeyFileError(skipped[0] + (f" (and {more} more unusable row{'s' * (more > 1)})" if more else ""))
    return good


def _line_number(note: str) -> int:
    found = re.search(r" line (\d+): ", note)
    return int(found.group(1)) if found else 0


def ike_datagrams(path: Capture) -> Iterator[UdpDatagram | BadFrame]:
    """UDP datagrams on the IKE ports (500, 4500) and broken frames, in capture order."""
    for d in read_udp(path):
        if isinstance(d, BadFrame) or IKE_PORT in (d.sport, d.dport) or NATT_PORT in (d.sport, d.dport):
            yield d


def decrypt_capture(path: Capture, rows: list[IkeSaKeyRow]) -> list[IkeRecord]:
    """Decode every IKE message of a capture, decrypting with the key rows; see the module docstring."""
    keys = {(r.spi_i, r.spi_r): crypto_from_row(r) for r in rows}
    reassembler = Reassembler()
    out: list[IkeRecord] = []
    for d in ike_datagrams(path):
        if isinstance(d, BadFrame):
            out.append(IkeRecord(d.frame, 0.0, "?", "?", 0, 0, error=d.reason))
            continue
        rec = IkeRecord(d.frame, d.time, d.src, d.dst, d.sport, d.dport)
        data = d.payload
        if NATT_PORT in (d.sport, d.dport):
            try:
                kind, data = classify_udp4500(data)
            except IpsecLabError as exc:
                rec.error = str(exc)
                out.append(rec)
                continue
            if kind is not Udp4500Kind.IKE:
                continue  # ESP-in-UDP and keepalives are not IKE
        rec.raw = data
        try:
            rec.message = decode(data)
        except IpsecLabError as exc:
            rec.error = f"malformed IKE message: {exc}"
            out.append(rec)
            continue
        msg = rec.message
        protected = msg.payloads and (msg.encrypted is not None or isinstance(msg.payloads[-1], EncryptedFragment))
        if protected:
            crypto = keys.get((msg.spi_i, msg.spi_r))
            if crypto is None:
                rec.error = f"no keys for IKE SA {msg.spi_i.hex()}_i {msg.spi_r.hex()}_r; SK payload left encrypted"
            else:
                try:
                    rec.message = decode(data, crypto)
                    rec.decrypted = True
                    if isinstance(rec.message.payloads[-1], EncryptedFragment):
                        rec.reassembled = reassembler.add(rec.message)
                except IpsecLabError as exc:
                    what = enum_name(ExchangeType, msg.exchange)
                    rec.error = f"{what} #{msg.message_id}: {exc} (wrong keys for this IKE SA, or a modified packet)"
        out.append(rec)
    return out

"""The IKE messages of a capture, decrypted with ikev2_decryption_table rows.

Every UDP datagram on port 500 or 4500 is read; IKE messages are decoded and,
when the key table has their IKE SA, their SK/SKF payloads are verified and
decrypted (fragments are reassembled).  A datagram that fails becomes a record
with a one-line reason; the rest of the capture is still reported.  The codec is
``packets/``'s (the engine's too): Wireshark is the independent check of both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import IpsecLabError
from ..packets.enums import ExchangeType, enum_name
from ..packets.fragment import Reassembler
from ..packets.message import EncryptedFragment, Message, decode
from ..packets.natt import IKE_PORT, NATT_PORT, Udp4500Kind, classify_udp4500
from ..pcap.keyfiles import IkeSaKeyRow
from ..pcap.reader import BadFrame, Capture, UdpDatagram, read_udp
from .keyrows import crypto_from_row


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


def ike_datagrams(path: Capture) -> Iterator[UdpDatagram | BadFrame]:
    """UDP datagrams on the IKE ports (500, 4500) and broken frames, in capture order."""
    for d in read_udp(path):
        if isinstance(d, BadFrame) or is_ike_port(d):
            yield d


MAX_PENDING = 64  # fragmented messages still incomplete; a capture with more forgets the oldest


def is_ike_port(d: UdpDatagram) -> bool:
    return IKE_PORT in (d.sport, d.dport) or NATT_PORT in (d.sport, d.dport)


class IkeDecryptor:
    """Decrypts IKE datagrams one at a time, in capture order (fragments are reassembled across them)."""

    __slots__ = ("keys", "reassembler")

    def __init__(self, rows: list[IkeSaKeyRow]) -> None:
        self.keys = {(r.spi_i, r.spi_r): crypto_from_row(r) for r in rows}
        self.reassembler = Reassembler()

    def bad_frame(self, d: BadFrame) -> IkeRecord:
        return IkeRecord(d.frame, 0.0, "?", "?", 0, 0, error=d.reason)

    def datagram(self, d: UdpDatagram) -> IkeRecord | None:
        """The record of one datagram on port 500/4500; None for ESP-in-UDP and keepalives (not IKE)."""
        rec = IkeRecord(d.frame, d.time, d.src, d.dst, d.sport, d.dport)
        data = d.payload
        if NATT_PORT in (d.sport, d.dport):
            try:
                kind, data = classify_udp4500(data)
            except IpsecLabError as exc:
                rec.error = str(exc)
                return rec
            if kind is not Udp4500Kind.IKE:
                return None
        rec.raw = data
        try:
            rec.message = decode(data)
        except IpsecLabError as exc:
            rec.error = f"malformed IKE message: {exc}"
            return rec
        msg = rec.message
        protected = msg.payloads and (msg.encrypted is not None or isinstance(msg.payloads[-1], EncryptedFragment))
        if protected:
            crypto = self.keys.get((msg.spi_i, msg.spi_r))
            if crypto is None:
                rec.error = f"no keys for IKE SA {msg.spi_i.hex()}_i {msg.spi_r.hex()}_r; SK payload left encrypted"
            else:
                try:
                    rec.message = decode(data, crypto)
                    rec.decrypted = True
                    if isinstance(rec.message.payloads[-1], EncryptedFragment):
                        rec.reassembled = self.reassembler.add(rec.message)
                        pending = self.reassembler.pending
                        while len(pending) > MAX_PENDING:  # the oldest incomplete message goes: memory stays bounded
                            del pending[next(iter(pending))]
                except IpsecLabError as exc:
                    what = enum_name(ExchangeType, msg.exchange)
                    rec.error = f"{what} #{msg.message_id}: {exc} (wrong keys for this IKE SA, or a modified packet)"
        return rec


def decrypt_capture(path: Capture, rows: list[IkeSaKeyRow]) -> list[IkeRecord]:
    """Every IKE record of a capture, as a list (``stream.records`` streams IKE and ESP/AH in one pass)."""
    dec = IkeDecryptor(rows)
    out: list[IkeRecord] = []
    for d in ike_datagrams(path):
        rec = dec.bad_frame(d) if isinstance(d, BadFrame) else dec.datagram(d)
        if rec is not None:
            out.append(rec)
    return out

"""One pass over a capture: IKE, ESP and AH records in frame order, each made as its packet is read.

The capture is read once (``pcap.reader.read_ip``); each IP packet goes to the IKE decryptor
(UDP 500/4500 that is IKE) or the ESP/AH one (protocol 50, 51, ESP in UDP 4500), and its
record is yielded before the next packet is read, so the caller can print it and let it go:
memory is the decryptors' per-SA state, not the capture's size.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..pcap.esp_keyfiles import EspSaRow
from ..pcap.keyfiles import IkeSaKeyRow
from ..pcap.reader import IPPROTO_UDP, BadFrame, Capture, IpPacket, read_ip, udp_of
from .esp import EspDecryptor, EspRecord
from .ike import IkeDecryptor, IkeRecord, is_ike_port


class Dispatcher:
    """One captured packet to its record: IKE on UDP 500/4500, ESP/AH with ``esp_rows``, broken frames as IKE errors.

    The single place that decides which decryptor a packet goes to; ``records`` and the fast writer
    (``analysis.fast``, for the packets it does not take itself) both call it, packet by packet.
    """

    __slots__ = ("esp", "ike")

    def __init__(self, ike_rows: list[IkeSaKeyRow], esp_rows: list[EspSaRow] | None = None) -> None:
        self.ike = IkeDecryptor(ike_rows)
        self.esp = EspDecryptor(esp_rows) if esp_rows is not None else None

    def __call__(self, pkt: IpPacket | BadFrame) -> IkeRecord | EspRecord | None:
        if isinstance(pkt, BadFrame):
            return self.ike.bad_frame(pkt)
        if pkt.proto == IPPROTO_UDP:
            d = udp_of(pkt)
            if isinstance(d, BadFrame):
                return self.ike.bad_frame(d)
            if d is not None and is_ike_port(d):
                rec = self.ike.datagram(d)
                if rec is not None:
                    return rec
        return self.esp.packet(pkt) if self.esp is not None else None


def records(capture: Capture, ike_rows: list[IkeSaKeyRow], esp_rows: list[EspSaRow] | None = None
            ) -> Iterator[IkeRecord | EspRecord]:
    """Every IKE datagram (and broken frame) of a capture, and with ``esp_rows`` every ESP/AH packet, in order.

    PcapError (before the first record) when the file is missing or not a capture.
    """
    dispatch = Dispatcher(ike_rows, esp_rows)
    for pkt in read_ip(capture):
        rec = dispatch(pkt)
        if rec is not None:
            yield rec

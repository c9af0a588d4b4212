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
from ..pcap.reader import IPPROTO_UDP, BadFrame, Capture, read_ip, udp_of
from .esp import EspDecryptor, EspRecord
from .ike import IkeDecryptor, IkeRecord, is_ike_port


def records(capture: Capture, ike_rows: list[IkeSaKeyRow], esp_rows: list[EspSaRow] | None = None
            ) -> Iterator[IkeRecord | EspRecord]:
    """Every IKE datagram (and broken frame) of a capture, and with ``esp_rows`` every ESP/AH packet, in order.

    PcapError (before the first record) when the file is missing or not a capture.
    """
    ike = IkeDecryptor(ike_rows)
    esp = EspDecryptor(esp_rows) if esp_rows is not None else None
    for pkt in read_ip(capture):
        if isinstance(pkt, BadFrame):
            yield ike.bad_frame(pkt)
            continue
        if pkt.proto == IPPROTO_UDP:
            d = udp_of(pkt)
            if isinstance(d, BadFrame):
                yield ike.bad_frame(d)
                continue
            if d is not None and is_ike_port(d):
                rec = ike.datagram(d)
                if rec is not None:
                    yield rec
                    continue
        if esp is not None:
            found = esp.packet(pkt)
            if found is not None:
                yield found

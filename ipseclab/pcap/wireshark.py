"""Wireshark's view of a capture (through pyshark/tshark): the external oracle for our pcaps and keys.

Nothing here uses ipseclab's own IKE codec: what Wireshark's dissectors say
about a capture, given only the key files, is an independent check of what went
on the wire and of the keys we exported.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import IpsecLabError
from .keyfiles import IkeSaKeyRow, tshark_ikev2_options

T = TypeVar("T")


class TsharkMissingError(IpsecLabError):
    """tshark is not installed."""


def tshark_path() -> str:
    """The tshark binary, or TsharkMissingError telling how to install it."""
    path = shutil.which("tshark")
    if path is None:
        raise TsharkMissingError("tshark is not installed (Debian: apt-get install tshark)")
    return path


@dataclass(frozen=True, slots=True)
class WiresharkIkeRecord:
    """One IKE packet as Wireshark dissected it."""

    frame: int
    exchange: int
    message_id: int
    encrypted: bool  # carries an SK or SKF payload
    decrypted: bool  # Wireshark produced "Decrypted Data"
    icv_ok: bool | None  # Wireshark's "[correct]" / "[incorrect]" on the Integrity Checksum Data
    icv_text: str = ""
    # what the SA lifecycle checks read (rekeys, Deletes, liveness); the decrypted payloads' fields
    # are there only when Wireshark decrypted the message
    time: float = 0.0  # capture timestamp (seconds since the epoch)
    src: str = ""
    dst: str = ""
    spi_i: int = 0
    spi_r: int = 0
    response: bool = False  # the R flag
    initiator: bool = False  # the I flag: sent by the original initiator of this IKE SA
    payloads: tuple[int, ...] = ()  # payload types in order, the decrypted inner ones included (46 = SK)
    notifies: tuple[int, ...] = ()  # Notify message types (16393 = REKEY_SA)
    deletes: tuple[tuple[int, int], ...] = ()  # (protocol id, SPI; 0 for an IKE SA) per SPI of each Delete
    proposals: tuple[int, ...] = ()  # protocol id of each SA payload proposal (1 = IKE: an IKE SA rekey)
    spis: tuple[int, ...] = ()  # the SPI fields of proposals and notifies (REKEY_SA names the SA it rekeys)


def ike_records(pcap: str | Path, rows: list[IkeSaKeyRow]) -> list[WiresharkIkeRecord]:
    """Every IKE packet of ``pcap`` as Wireshark sees it with these ikev2_decryption_table rows."""
    def visit(pkt: Any, out: list[WiresharkIkeRecord]) -> None:
        rec = ike_record(pkt)
        if rec is not None:
            out.append(rec)

    return tshark_pass(pcap, tshark_ikev2_options(rows), visit, list)


# The characters pyshark's XML parser deletes from tshark's PDML (XML 1.0 forbids them; its DEL_BAD_XML_CHARS):
# controls but tab, newline and carriage return, surrogates, U+FFFE and U+FFFF
_BAD_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


_ISAKMP_PROTO = b'<proto name="isakmp"'


def packet_pdml(pkt: Any) -> bytes | None:
    """The PDML text of an IKE packet of a :func:`tshark_pass` (its dissection tree in order, which pyshark's
    flattened fields lose: ``pcap.negotiation`` reads the SA payloads' transforms from it), or None."""
    return getattr(pkt, "ipseclab_pdml", None)


def _fast_xml_cleaning() -> None:
    """Have pyshark clean each packet's PDML as it does, with one regular expression instead of its dict.

    pyshark 0.6 deletes the characters XML forbids with ``str.translate`` and a dict: fast while the text is
    ASCII, a dict lookup per character once one character is not.  The PDML of a TCP download through ESP
    is not (tshark shows the decrypted bytes as text): 5-10 ms for each 61 KB packet and 0.9 s for the
    3.3 MB reassembled HTTP response, 2.9 s of translate per capture of a tcp-transport-nat cell (2026-12-01).
    The expression deletes the same characters, so the text lxml parses is pyshark's exactly.  Installed once,
    on the module function pyshark's parser looks up per packet.  An IKE packet keeps its cleaned PDML
    (:func:`packet_pdml`), so the SA payloads are read in the same tshark pass as the rest."""
    from pyshark.tshark.output_parser import tshark_xml

    original = tshark_xml.packet_from_xml_packet
    if getattr(original, "ipseclab_fast", False):
        return

    def packet_from_xml_packet(xml_pkt: Any, psml_structure: Any = None) -> Any:
        pdml = None
        if isinstance(xml_pkt, bytes):
            clean = _BAD_XML_CHARS.sub("", xml_pkt.decode(errors="ignore")).encode("utf-8")
            if _ISAKMP_PROTO in clean:
                pdml = clean
            parser = tshark_xml.lxml.objectify.makeparser(huge_tree=True, recover=True, encoding="utf-8")
            xml_pkt = tshark_xml.lxml.objectify.fromstring(clean, parser)
        pkt = original(xml_pkt, psml_structure)
        if pdml is not None:
            pkt.ipseclab_pdml = pdml
        return pkt

    packet_from_xml_packet.ipseclab_fast = True  # type: ignore[attr-defined]
    packet_from_xml_packet.original = original  # type: ignore[attr-defined]
    tshark_xml.packet_from_xml_packet = packet_from_xml_packet


def tshark_pass(pcap: str | Path, options: list[str], visit: Callable[[Any, T], None], fresh: Callable[[], T]) -> T:
    """One tshark (through pyshark) over ``pcap``: ``visit(packet, acc)`` for every packet into ``fresh()``.

    tshark 4.0 under load has been seen to end a complete pass with exit status 255 and nothing on stderr
    but its "Running as user root" line (pyshark's TSharkCrashException at close, about once in a few hundred
    passes with four at once, never alone); the pass is then made once more from scratch.  A tshark that
    fails twice is reported as the failure it is."""
    import pyshark
    from pyshark.capture.capture import TSharkCrashException

    tshark_path()
    _fast_xml_cleaning()
    for attempt in (1, 2):
        acc = fresh()
        cap = pyshark.FileCapture(str(pcap), custom_parameters=options, keep_packets=False)
        try:
            try:
                for pkt in cap:
                    visit(pkt, acc)
            finally:
                try:
                    cap.close()
                except TSharkCrashException:
                    # pyshark forgets the ended tshark only when close succeeds: its __del__ would close
                    # again and raise once more, as an "exception ignored" warning at some later test
                    cap._running_processes.clear()
                    raise
        except TSharkCrashException as exc:
            if attempt == 2:
                raise IpsecLabError(f"tshark failed twice on {pcap}: {str(exc).splitlines()[0]}") from None
            continue
        return acc
    raise AssertionError("unreachable")  # pragma: no cover


def ike_record(pkt: Any) -> WiresharkIkeRecord | None:
    """One packet of a pyshark capture as an IKE record, or None when it is not an IKE message."""
    if "ISAKMP" not in pkt or "ICMP" in pkt or "ICMPV6" in pkt:
        return None  # an ICMP error quoting an IKE datagram is not a message of its own
    layer = pkt.isakmp
    names = set(layer.field_names)
    icv = layer.get_field("enc_icd")
    icv_text = " ".join(f.showname for f in icv.all_fields) if icv is not None else ""
    icv_ok = None
    if icv is not None:
        icv_ok = "[correct]" in icv_text and "[incorrect]" not in icv_text
    ip = pkt.ip if "IP" in pkt else pkt.ipv6 if "IPV6" in pkt else None
    return WiresharkIkeRecord(
        frame=int(pkt.number),
        exchange=int(layer.get_field("exchangetype") or 0),
        message_id=int(str(layer.get_field("messageid") or "0"), 0),
        encrypted="enc_data" in names,
        decrypted="enc_decrypted" in names,
        icv_ok=icv_ok,
        icv_text=icv_text,
        time=float(pkt.sniff_timestamp),
        src=str(ip.src) if ip is not None else "",
        dst=str(ip.dst) if ip is not None else "",
        spi_i=_hex(layer.get_field("ispi")),
        spi_r=_hex(layer.get_field("rspi")),
        response=_flag(layer.get_field("flag_r")),
        initiator=_flag(layer.get_field("flag_i")),
        payloads=tuple(int(v) for v in _all(layer, "typepayload")),
        notifies=tuple(int(v) for v in _all(layer, "notify_msgtype")),
        deletes=_deletes(layer),
        proposals=tuple(int(v) for v in _all(layer, "prop_protoid")),
        spis=tuple(_hex(v) for v in _all(layer, "spi")),
    )


def _all(layer: Any, name: str) -> list[str]:
    """Every value of a field the layer repeats (one per payload), in order."""
    field = layer.get_field(name)
    if field is None:
        return []
    return [str(f.get_default_value()) for f in field.all_fields]


def _hex(value: object) -> int:
    text = str(value or "0").replace(":", "")
    try:
        return int(text, 16)
    except ValueError:
        return 0


def _flag(value: object) -> bool:
    return str(value) in ("1", "True", "true")


def _deletes(layer: Any) -> tuple[tuple[int, int], ...]:
    """(protocol id, SPI) per SPI deleted: an IKE SA's Delete has no SPI (0); ESP/AH ones list theirs
    (Wireshark gives the SPIs of every Delete of a message in one field: they go with the first ESP/AH one)."""
    protos = [int(v) for v in _all(layer, "delete_protoid")]
    child = next((p for p in protos if p != 1), None)
    out = [(1, 0)] if 1 in protos else []
    if child is not None:
        out += [(child, _hex(v)) for v in _all(layer, "delete_spi")]
    return tuple(out)

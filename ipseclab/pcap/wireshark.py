"""Wireshark's view of a capture (through pyshark/tshark): the external oracle for our pcaps and keys.

Nothing here uses ipseclab's own IKE codec: what Wireshark's dissectors say
about a capture, given only the key files, is an independent check of what went
on the wire and of the keys we exported.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import IpsecLabError
from .esp_keyfiles import EspSaRow, tshark_esp_options
from .keyfiles import IkeSaKeyRow, tshark_ikev2_options


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


def ike_records(pcap: str | Path, rows: list[IkeSaKeyRow]) -> list[WiresharkIkeRecord]:
    """Every IKE packet of ``pcap`` as Wireshark sees it with these ikev2_decryption_table rows."""
    import pyshark

    tshark_path()
    cap = pyshark.FileCapture(str(pcap), custom_parameters=tshark_ikev2_options(rows), keep_packets=False)
    out = []
    try:
        for pkt in cap:
            if "ISAKMP" not in pkt:
                continue
            layer = pkt.isakmp
            names = set(layer.field_names)
            icv = layer.get_field("enc_icd")
            icv_text = " ".join(f.showname for f in icv.all_fields) if icv is not None else ""
            icv_ok = None
            if icv is not None:
                icv_ok = "[correct]" in icv_text and "[incorrect]" not in icv_text
            out.append(WiresharkIkeRecord(
                frame=int(pkt.number),
                exchange=int(layer.get_field("exchtype") or 0),
                message_id=int(str(layer.get_field("messageid") or "0"), 0),
                encrypted="enc_data" in names,
                decrypted="enc_decrypted" in names,
                icv_ok=icv_ok,
                icv_text=icv_text,
            ))
    finally:
        cap.close()
    return out


@dataclass(frozen=True, slots=True)
class WiresharkEspRecord:
    """One ESP packet as Wireshark dissected it with esp_sa rows."""

    frame: int
    spi: int
    seq: int
    udp_encap: bool  # ESP in UDP (RFC 3948)
    icv_good: bool | None  # esp.icv_good / esp.icv_bad; None when Wireshark did not check
    decrypted: bool  # Wireshark dissected something after ESP (the decrypted payload)
    inner: tuple[str, ...]  # layer names after ESP, e.g. ("ip", "icmp") for tunnel mode


def _flag(value: object) -> bool:
    return str(value) in ("1", "True", "true")


def esp_records(pcap: str | Path, rows: list[EspSaRow]) -> list[WiresharkEspRecord]:
    """Every ESP packet of ``pcap`` as Wireshark sees it with these esp_sa rows (ICV check and decryption on)."""
    import pyshark

    tshark_path()
    cap = pyshark.FileCapture(str(pcap), custom_parameters=tshark_esp_options(rows), keep_packets=False)
    out = []
    try:
        for pkt in cap:
            names = [layer.layer_name for layer in pkt.layers]
            if "esp" not in names:
                continue
            pos = names.index("esp")
            layer = pkt.esp
            good, bad = layer.get_field_value("icv_good"), layer.get_field_value("icv_bad")
            icv = None if good is None and bad is None else _flag(good) and not _flag(bad)
            inner = tuple(n for n in names[pos + 1 :] if n not in ("data", "_ws.malformed"))
            out.append(WiresharkEspRecord(
                frame=int(pkt.number),
                spi=int(str(layer.get_field_value("spi") or "0"), 0),
                seq=int(str(layer.get_field_value("sequence") or "0"), 0),
                udp_encap="udp" in names[:pos],
                icv_good=icv,
                decrypted=bool(inner),
                inner=inner,
            ))
    finally:
        cap.close()
    return out

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
    response: bool = False  # the R flag: a response
    notifies: tuple[int, ...] = ()  # every Notify message type in it (decrypted ones included), in order
    src: str = ""
    dst: str = ""


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
                exchange=int(layer.get_field("exchangetype") or 0),
                message_id=int(str(layer.get_field("messageid") or "0"), 0),
                encrypted="enc_data" in names,
                decrypted="enc_decrypted" in names,
                icv_ok=icv_ok,
                icv_text=icv_text,
                response=_flag(layer.get_field("flag_r")),
                notifies=_all_ints(layer.get_field("notify_msgtype")),
                src=_ip_src_dst(pkt)[0],
                dst=_ip_src_dst(pkt)[1],
            ))
    finally:
        cap.close()
    return out


def _flag(field: object) -> bool:
    return str(field) in ("1", "True", "true")


def _all_ints(field: object) -> tuple[int, ...]:
    """Every occurrence of a field (pyshark keeps repeats in ``all_fields``) as ints."""
    if field is None:
        return ()
    values = [f.get_default_value() for f in getattr(field, "all_fields", [field])]
    out = []
    for v in values:
        try:
            out.append(int(str(v), 0))
        except ValueError:
            continue
    return tuple(out)


def _ip_src_dst(pkt: object) -> tuple[str, str]:
    for name in ("ip", "ipv6"):
        layer = getattr(pkt, name, None) if name in pkt else None  # type: ignore[operator]
        if layer is not None:
            return str(layer.get_field_value("src") or ""), str(layer.get_field_value("dst") or "")
    return "", ""

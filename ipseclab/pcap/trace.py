"""A run's captures as Wireshark sees them, with the run's own key files: what test cases check.

Independent of ipseclab's IKE/ESP code on purpose: every fact here comes from Wireshark's
dissectors (pyshark over tshark) given only the pcaps and the key files a run wrote, so a
check that passes shows the wire and the exported keys agree, not that our code agrees with itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .esp_keyfiles import EspSaRow, read_esp_sa, tshark_esp_options
from .keyfiles import IkeSaKeyRow, read_ikev2_decryption_table, tshark_ikev2_options
from .negotiation import IkeNegotiation, packet_negotiations
from .wireshark import WiresharkIkeRecord, ike_record, packet_pdml, tshark_pass


@dataclass(frozen=True, slots=True)
class IpsecPacket:
    """One ESP or AH packet of a capture, as Wireshark dissected it."""

    frame: int
    src: str
    dst: str
    proto: str  # "esp" or "ah"
    spi: int
    seq: int
    udp_encap: bool  # ESP in UDP (RFC 3948)
    udp_port: int | None
    icv_good: bool | None  # Wireshark's ICV check (ESP with a key row), None when not checked
    decrypted: bool  # Wireshark dissected the payload (decrypted ESP, or AH's clear payload)
    inner: tuple[str, ...]  # layer names after ESP/AH, e.g. ("ip", "icmp") in tunnel mode
    time: float = 0.0  # capture timestamp (seconds since the epoch)
    length: int = 0  # the frame's length on the wire (TFC padding shows here: more than the inner packet needs)
    next_header: int | None = None  # ESP's Next Header once decrypted (59: a dummy packet, RFC 4303 2.6)
    inner_len: int = 0  # the inner IP packet's own length (tunnel mode): less than ESP carried means TFC padding
    inner_src: str = ""
    inner_dst: str = ""
    icmp: tuple[int, int, int] | None = None  # the inner ICMP (type, identifier, sequence number)

    @property
    def tunnel(self) -> bool:
        return bool(self.inner) and self.inner[0] in ("ip", "ipv6")


@dataclass(frozen=True, slots=True)
class ClearIcmp:
    """An ICMP packet of a capture outside ESP/AH (traffic in the clear)."""

    frame: int
    src: str
    dst: str
    type: int
    ident: int
    seq: int


@dataclass(slots=True)
class LinkTrace:
    """One link's capture: its IKE messages and its ESP/AH packets."""

    name: str
    pcap: Path
    ike: list[WiresharkIkeRecord] = field(default_factory=list)
    ipsec: list[IpsecPacket] = field(default_factory=list)
    clear_icmp: list[ClearIcmp] = field(default_factory=list)
    negotiations: list[IkeNegotiation] = field(default_factory=list)  # every IKEv2 message's SA and KE payloads


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value), 0)
    except (TypeError, ValueError):
        return default


def ipsec_packets(pcap: str | Path, esp_rows: list[EspSaRow]) -> list[IpsecPacket]:
    """ESP and AH packets of a capture; ESP decrypted and ICV-checked with the esp_sa rows Wireshark can use."""
    return scan(pcap, esp_rows)[0]


def _next_header(esp: object) -> int | None:
    """ESP's Next Header once Wireshark decrypted it: its field, or for a dummy packet (which Wireshark 4.0
    shows as bare decrypted data, trailer unparsed) the last byte of the decrypted data."""
    value = esp.get_field_value("protocol")  # type: ignore[attr-defined]
    if value is not None:
        return _int(value, -1)
    data = esp.get_field_value("decrypted_data")  # type: ignore[attr-defined]
    if not data:
        return None
    text = str(data).replace(":", "")
    try:
        return bytes.fromhex(text)[-1] if text else None
    except ValueError:
        return None


def _icmp(pkt: object, names: list[str], start: int) -> tuple[int, int, int] | None:
    if "icmp" not in names[start:]:
        return None
    layer = pkt.layers[names.index("icmp", start)]  # type: ignore[attr-defined]
    return (_int(layer.get_field_value("type")), _int(layer.get_field_value("ident")),
            _int(layer.get_field_value("seq")))


def scan(pcap: str | Path, esp_rows: list[EspSaRow]) -> tuple[list[IpsecPacket], list[ClearIcmp]]:
    """One pass of Wireshark over a capture: its ESP/AH packets (as ipsec_packets) and its ICMP in the clear."""
    _, out, clear, _ = _one_pass(pcap, tshark_esp_options(esp_rows), ike=False)
    return out, clear


_Pass = tuple[list[WiresharkIkeRecord], list[IpsecPacket], list[ClearIcmp], list[IkeNegotiation]]


def _one_pass(pcap: str | Path, options: list[str], ike: bool) -> _Pass:
    """One tshark over a capture with ``options`` (the ESP SAs, and the IKE SAs' keys): its IKE records and
    the SA/KE payloads of its IKEv2 messages (with ``ike``), its ESP/AH packets and its ICMP in the clear.

    One pass, as a tshark run costs ~0.22 CPU-s registering dissectors before its first packet (2026-12-01:
    the SA/KE payloads' own pass was 0.19 CPU-s of a matrix cell's ~2.5)."""
    link = Path(pcap).stem

    def visit(pkt: Any, acc: _Pass) -> None:
        rec = ike_record(pkt) if ike else None
        if rec is not None:
            acc[0].append(rec)
            pdml = packet_pdml(pkt)
            if pdml is not None:
                acc[3].extend(packet_negotiations(pdml, link))
        _ipsec_packet(pkt, acc[1], acc[2])

    return tshark_pass(pcap, options, visit, lambda: ([], [], [], []))


def _ipsec_packet(pkt: Any, out: list[IpsecPacket], clear: list[ClearIcmp]) -> None:
    """``pkt`` into ``out`` when it is ESP or AH, into ``clear`` when it is ICMP in the clear."""
    names = [layer.layer_name for layer in pkt.layers]
    proto = "esp" if "esp" in names else "ah" if "ah" in names else ""
    prefix = ""
    if not proto and "ipv6" in names and pkt.ipv6.get_field_value("ah_spi") is not None:
        # AH in IPv6 is an extension header to Wireshark: its fields (ah_spi, ...) sit in the ipv6 layer
        proto, prefix = "ah", "ah_"
    if not proto:
        icmp = _icmp(pkt, names, 0)
        if icmp is not None and "ip" in names:
            ip = pkt.layers[names.index("ip")]
            clear.append(ClearIcmp(int(pkt.number), str(ip.get_field_value("src") or ""),
                                   str(ip.get_field_value("dst") or ""), *icmp))
        return
    pos = names.index("ipv6" if prefix else proto)
    layer = pkt.layers[pos]
    inner = tuple(n for n in names[pos + 1 :] if n not in ("data", "_ws.malformed"))
    # the outer header is the last IP layer before ESP/AH (a wrong key can make garbage look like an
    # inner "ip" layer after it, which must not be taken for the outer one)
    outer = [layer for layer in pkt.layers[: pos + 1 if prefix else pos] if layer.layer_name in ("ip", "ipv6")]
    ip = outer[-1] if outer else None
    icv: bool | None = None
    if proto == "esp":
        good = layer.get_field_value("icv_good")
        bad = layer.get_field_value("icv_bad")
        if good is not None or bad is not None:
            icv = str(good) in ("1", "True", "true") and str(bad) not in ("1", "True", "true")
    udp = pkt.udp if "udp" in names and names.index("udp") < pos else None
    inner_ip = next((pkt.layers[i] for i in range(pos + 1, len(names)) if names[i] in ("ip", "ipv6")), None)
    nh = _next_header(layer) if proto == "esp" else None
    out.append(IpsecPacket(
        frame=int(pkt.number),
        src=str(ip.get_field_value("src") or "") if ip is not None else "",
        dst=str(ip.get_field_value("dst") or "") if ip is not None else "",
        proto=proto,
        spi=_int(layer.get_field_value(prefix + "spi")),
        seq=_int(layer.get_field_value(prefix + "sequence")),
        udp_encap=udp is not None,
        udp_port=_int(udp.dstport) if udp is not None else None,
        icv_good=icv,
        decrypted=bool(inner) or nh is not None,
        inner=inner,
        time=float(pkt.sniff_timestamp),
        length=int(pkt.length),
        next_header=nh,
        inner_len=_int(inner_ip.get_field_value("len")) if inner_ip is not None else 0,
        inner_src=str(inner_ip.get_field_value("src") or "") if inner_ip is not None else "",
        inner_dst=str(inner_ip.get_field_value("dst") or "") if inner_ip is not None else "",
        icmp=_icmp(pkt, names, pos + 1),
    ))

@dataclass(slots=True)
class Trace:
    """All links of a run, loaded from its run directory (pcaps + ikev2_decryption_table + esp_sa)."""

    run_dir: Path
    ike_rows: list[IkeSaKeyRow]
    esp_rows: list[EspSaRow]
    links: dict[str, LinkTrace]

    @classmethod
    def load(cls, run_dir: Path) -> Trace:
        ike_table = run_dir / "ikev2_decryption_table"
        ike_rows = read_ikev2_decryption_table(ike_table) if ike_table.exists() else []
        esp_file = run_dir / "esp_sa"
        esp_rows = read_esp_sa(esp_file) if esp_file.exists() else []
        links = {}
        for pcap in sorted(run_dir.glob("*.pcap")):
            # one tshark per capture for both views: the ESP SAs' and the IKE SAs' keys do not touch each other's
            # dissection
            ike, ipsec, clear, negotiations = _one_pass(
                pcap, tshark_esp_options(esp_rows) + tshark_ikev2_options(ike_rows), ike=True)
            links[pcap.stem] = LinkTrace(pcap.stem, pcap, ike, ipsec, clear, negotiations)
        return cls(run_dir, ike_rows, esp_rows, links)

    def ike(self) -> list[WiresharkIkeRecord]:
        return [r for lt in self.links.values() for r in lt.ike]

    def ipsec(self) -> list[IpsecPacket]:
        return [p for lt in self.links.values() for p in lt.ipsec]

    def clear_icmp(self) -> list[ClearIcmp]:
        return [p for lt in self.links.values() for p in lt.clear_icmp]

    def negotiations(self) -> list[IkeNegotiation]:
        """Every IKE message's SA and KE payloads on every link, decrypted with the run's key table where
        Wireshark can (what was negotiated, read off the wire: ``pcap.negotiation``), from the load's tshark pass."""
        return [n for lt in self.links.values() for n in lt.negotiations]

    def tshark_ike_options(self) -> list[str]:
        return tshark_ikev2_options(self.ike_rows)

"""What the peers negotiated, as Wireshark reads it off the wire: SA payloads and KE payloads.

The IKE_SA_INIT response carries the chosen IKE proposal and the responder's KE payload in the
clear; the IKE_AUTH response carries the first Child SA's chosen proposal under SK, which
Wireshark decrypts with the run's ``ikev2_decryption_table``; a CREATE_CHILD_SA response carries
a rekey's.  This module reads them from tshark's PDML of each IKE packet, kept from the trace's one
tshark pass (the dissection tree in order, so each transform keeps its own Key Length attribute),
and so depends on neither ipseclab's codec nor on the key files' algorithm names: a test case
compares them with what it declared, which proves what was negotiated from the packets themselves.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..errors import PcapError

Transform = tuple[int, int, int | None]  # (transform type, id, Key Length attribute or None)

_TF_ID_FIELDS = ("isakmp.tf.id.encr", "isakmp.tf.id.prf", "isakmp.tf.id.integ", "isakmp.tf.id.dh",
                 "isakmp.tf.id.esn")


@dataclass(frozen=True, slots=True)
class SaProposal:
    """One proposal of an SA payload: its number, protocol (1 IKE, 2 AH, 3 ESP) and transforms in order."""

    number: int
    protocol: int
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class IkeNegotiation:
    """The SA and KE payloads of one IKE message, as Wireshark dissected it (decrypted where it could)."""

    link: str
    frame: int
    exchange: int
    response: bool
    message_id: int
    spi_i: str
    spi_r: str
    proposals: tuple[SaProposal, ...]
    ke_group: int | None  # the KE payload's Diffie-Hellman group, None without a KE payload

    def where(self) -> str:
        kind = "response" if self.response else "request"
        return f"{self.link} frame {self.frame} (exchange {self.exchange} {kind} #{self.message_id})"


def _show(field: ET.Element) -> str:
    return field.get("show", "")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return 0


def _proposal(node: ET.Element) -> SaProposal:
    number = protocol = 0
    transforms: list[Transform] = []
    for child in node:
        name = child.get("name", "")
        if name == "isakmp.prop.number":
            number = _int(_show(child))
        elif name == "isakmp.prop.protoid":
            protocol = _int(_show(child))
        elif name == "isakmp.typepayload" and _show(child) == "3":  # a Transform substructure
            ttype = tid = 0
            bits: int | None = None
            for f in child.iter("field"):
                fname = f.get("name", "")
                if fname == "isakmp.tf.type":
                    ttype = _int(_show(f))
                elif fname in _TF_ID_FIELDS:
                    tid = _int(_show(f))
                elif fname == "isakmp.ike2.attr.key_length":
                    bits = _int(_show(f))
            transforms.append((ttype, tid, bits))
    return SaProposal(number, protocol, tuple(transforms))


def _message(link: str, frame: int, isakmp: ET.Element) -> IkeNegotiation:
    fields = {f.get("name", ""): f for f in isakmp.iter("field")}
    proposals: list[SaProposal] = []
    ke: int | None = None
    for f in isakmp.iter("field"):
        if f.get("name") == "isakmp.typepayload" and _show(f) == "2":  # a Proposal substructure
            proposals.append(_proposal(f))
        elif f.get("name") == "isakmp.key_exchange.dh_group" and ke is None:
            ke = _int(_show(f))
    flag_r = fields.get("isakmp.flag_r")
    return IkeNegotiation(
        link=link, frame=frame,
        exchange=_int(_show(fields["isakmp.exchangetype"])) if "isakmp.exchangetype" in fields else 0,
        response=flag_r is not None and _show(flag_r) == "1",
        message_id=_int(fields["isakmp.messageid"].get("show", "0")) if "isakmp.messageid" in fields else 0,
        spi_i=fields["isakmp.ispi"].get("value", "") if "isakmp.ispi" in fields else "",
        spi_r=fields["isakmp.rspi"].get("value", "") if "isakmp.rspi" in fields else "",
        proposals=tuple(proposals), ke_group=ke)


def packet_negotiations(pdml: bytes, link: str) -> list[IkeNegotiation]:
    """The IKEv2 messages of one packet's PDML (one, or none for IKEv1 or a packet Wireshark could not read
    as IKE) with their SA and KE payloads: ``wireshark.packet_pdml`` of a packet of the trace's tshark pass."""
    try:
        packet = ET.fromstring(pdml)
    except ET.ParseError as exc:
        raise PcapError(f"tshark's PDML for {link} is not XML: {exc}") from None
    frame = 0
    found = []
    for proto in packet.iter("proto"):
        if proto.get("name") == "frame":
            frame = next((_int(_show(f)) for f in proto if f.get("name") == "frame.number"), 0)
        elif proto.get("name") == "isakmp":
            version = next((_show(f) for f in proto if f.get("name") == "isakmp.version"), "")
            if version.startswith("0x2") or version.startswith("2"):
                found.append(_message(link, frame, proto))
    return found

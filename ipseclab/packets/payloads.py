"""Typed IKEv2 payloads and their body codecs (RFC 7296 section 3), on plain bytes.

Each payload class knows its ``payload_type`` and how to write its body (the
bytes after the 4-byte generic header); ``decode_body`` reads one back.  The
generic header (next payload, critical bit, length) and chaining are the
message codec's business.  This is the engine's hot path, so it uses ``struct``
and slots dataclasses, not Scapy packets; Scapy gives the same bytes (tested).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import DecodeError
from .enums import PayloadType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_BBH = struct.Struct("!BBH")


@dataclass(slots=True)
class Payload:
    """Base of every payload; ``critical`` is the C bit of the generic header."""

    payload_type: ClassVar[int] = 0

    def body(self) -> bytes:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


# --- Security Association ---------------------------------------------------------------------

Attribute = tuple[int, int | bytes]  # (type, value): int -> TV (AF=1) format, bytes -> TLV


@dataclass(slots=True)
class Transform:
    """One transform substructure (RFC 7296 3.3.2); ``attributes`` keep their wire order."""

    type: int
    id: int
    attributes: list[Attribute] = field(default_factory=list)

    @property
    def key_length(self) -> int | None:
        for t, v in self.attributes:
            if t == 14 and isinstance(v, int):
                return v
        return None

    def encode(self, last: bool) -> bytes:
        attrs = bytearray()
        for t, v in self.attributes:
            if isinstance(v, int):
                attrs += _HH.pack(0x8000 | t, v)
            else:
                attrs += _HH.pack(t & 0x7FFF, len(v)) + v
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), self.type, 0, self.id) + attrs


@dataclass(slots=True)
class Proposal:
    """One proposal substructure (RFC 7296 3.3.1)."""

    num: int
    protocol: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def encode(self, last: bool) -> bytes:
        n = len(self.transforms)
        body = b"".join(t.encode(i == n - 1) for i, t in enumerate(self.transforms))
        head = struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(self.spi) + len(body), self.num,
                           self.protocol, len(self.spi), n)
        return head + self.spi + body


@dataclass(slots=True)
class SaPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)
    critical: bool = False

    def body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.encode(i == n - 1) for i, p in enumerate(self.proposals))


def _decode_transforms(data: bytes, pos: int, end: int, count: int) -> list[Transform]:
    out = []
    for _ in range(count):
        if pos + 8 > end:
            raise DecodeError("transform substructure truncated", pos)
        _last, _r, length, ttype, _r2, tid = struct.unpack_from("!BBHBBH", data, pos)
        if length < 8 or pos + length > end:
            raise DecodeError(f"transform length {length} is invalid", pos)
        attrs: list[Attribute] = []
        a, aend = pos + 8, pos + length
        while a < aend:
            if a + 4 > aend:
                raise DecodeError("transform attribute truncated", a)
            atype, aval = _HH.unpack_from(data, a)
            if atype & 0x8000:
                attrs.append((atype & 0x7FFF, aval))
                a += 4
            else:
                if a + 4 + aval > aend:
                    raise DecodeError("transform attribute value overruns the transform", a)
                attrs.append((atype, data[a + 4 : a + 4 + aval]))
                a += 4 + aval
        out.append(Transform(ttype, tid, attrs))
        pos += length
    if pos != end:
        raise DecodeError("proposal length does not match its transforms", pos)
    return out


def _decode_sa(data: bytes, pos: int, end: int) -> SaPayload:
    proposals = []
    while pos < end:
        if pos + 8 > end:
            raise DecodeError("proposal substructure truncated", pos)
        _last, _r, length, num, proto, spi_size, ntrans = struct.unpack_from("!BBHBBBB", data, pos)
        if length < 8 + spi_size or pos + length > end:
            raise DecodeError(f"proposal length {length} is invalid", pos)
        spi = data[pos + 8 : pos + 8 + spi_size]
        transforms = _decode_transforms(data, pos + 8 + spi_size, pos + length, ntrans)
        proposals.append(Proposal(num, proto, spi, transforms))
        pos += length
    return SaPayload(proposals)


# --- simple payloads --------------------------------------------------------------------------


@dataclass(slots=True)
class KePayload(Payload):
    payload_type: ClassVar[int] = PayloadType.KE
    group: int = 0
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return _HH.pack(self.group, 0) + self.data


@dataclass(slots=True)
class IdPayload(Payload):
    """IDi / IDr: ``body()`` (ID type, reserved, data) is what RFC 7296 2.15 calls RestOfIDPayload."""

    id_type: int = 0
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return bytes((self.id_type, 0, 0, 0)) + self.data

    def text(self) -> str:
        """A readable identity: an address, a name, or hex."""
        if self.id_type in (1, 5) and len(self.data) in (4, 16):
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (2, 3, 11):
            try:
                return self.data.decode()
            except UnicodeDecodeError:
                pass
        return self.data.hex()


@dataclass(slots=True)
class IdiPayload(IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDI


@dataclass(slots=True)
class IdrPayload(IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDR


@dataclass(slots=True)
class _EncodedData(Payload):
    """CERT and CERTREQ share a body: a one-byte encoding (IANA "IKEv2 Certificate Encodings") and data."""

    encoding: int = 4
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return bytes((self.encoding,)) + self.data


@dataclass(slots=True)
class CertPayload(_EncodedData):
    payload_type: ClassVar[int] = PayloadType.CERT


@dataclass(slots=True)
class CertReqPayload(_EncodedData):
    payload_type: ClassVar[int] = PayloadType.CERTREQ


@dataclass(slots=True)
class AuthPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.AUTH
    method: int = 2
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return bytes((self.method, 0, 0, 0)) + self.data


@dataclass(slots=True)
class NoncePayload(Payload):
    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return self.data


@dataclass(slots=True)
class NotifyPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.NOTIFY
    notify_type: int = 0
    protocol: int = 0
    spi: bytes = b""
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return _BBH.pack(self.protocol, len(self.spi), self.notify_type) + self.spi + self.data

    @property
    def is_error(self) -> bool:
        return self.notify_type < 16384


@dataclass(slots=True)
class DeletePayload(Payload):
    payload_type: ClassVar[int] = PayloadType.DELETE
    protocol: int = 1
    spis: list[bytes] = field(default_factory=list)
    spi_size: int = 0
    critical: bool = False

    def body(self) -> bytes:
        size = self.spi_size or (len(self.spis[0]) if self.spis else 0)
        return _BBH.pack(self.protocol, size, len(self.spis)) + b"".join(self.spis)


@dataclass(slots=True)
class VendorPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.VENDOR
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return self.data


@dataclass(slots=True)
class EapPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.EAP
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return self.data


# --- traffic selectors ------------------------------------------------------------------------


@dataclass(slots=True)
class TrafficSelector:
    """One traffic selector (RFC 7296 3.13.1); addresses are ipaddress objects for IPv4/IPv6 ranges."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: IPAddress | bytes
    end_addr: IPAddress | bytes

    @classmethod
    def from_network(cls, net: str, ip_protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
        """A selector covering an address prefix, e.g. ``TrafficSelector.from_network("10.1.0.0/16")``."""
        n = ipaddress.ip_network(net, strict=False)
        return cls(7 if n.version == 4 else 8, ip_protocol, ports[0], ports[1], n[0], n[-1])

    def encode(self) -> bytes:
        start = self.start_addr if isinstance(self.start_addr, bytes) else self.start_addr.packed
        end = self.end_addr if isinstance(self.end_addr, bytes) else self.end_addr.packed
        return struct.pack("!BBHHH", self.ts_type, self.ip_protocol, 8 + len(start) + len(end),
                           self.start_port, self.end_port) + start + end

    def __str__(self) -> str:
        proto = f"proto {self.ip_protocol} " if self.ip_protocol else ""
        ports = "" if (self.start_port, self.end_port) == (0, 65535) else f" ports {self.start_port}-{self.end_port}"
        start = self.start_addr.hex() if isinstance(self.start_addr, bytes) else str(self.start_addr)
        end = self.end_addr.hex() if isinstance(self.end_addr, bytes) else str(self.end_addr)
        return f"{proto}{start}-{end}{ports}"


@dataclass(slots=True)
class TsPayload(Payload):
    selectors: list[TrafficSelector] = field(default_factory=list)
    critical: bool = False

    def body(self) -> bytes:
        return bytes((len(self.selectors), 0, 0, 0)) + b"".join(ts.encode() for ts in self.selectors)


@dataclass(slots=True)
class TsiPayload(TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSI


@dataclass(slots=True)
class TsrPayload(TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSR


def _decode_ts(data: bytes, pos: int, end: int, cls: type[TsPayload]) -> TsPayload:
    if pos + 4 > end:
        raise DecodeError("traffic selector payload truncated", pos)
    count = data[pos]
    pos += 4
    out = []
    for _ in range(count):
        if pos + 8 > end:
            raise DecodeError("traffic selector truncated", pos)
        ts_type, proto, length, sport, eport = struct.unpack_from("!BBHHH", data, pos)
        if length < 8 or pos + length > end:
            raise DecodeError(f"traffic selector length {length} is invalid", pos)
        raw = data[pos + 8 : pos + length]
        start: IPAddress | bytes
        stop: IPAddress | bytes
        if ts_type == 7 and len(raw) == 8:
            start, stop = ipaddress.IPv4Address(raw[:4]), ipaddress.IPv4Address(raw[4:])
        elif ts_type == 8 and len(raw) == 32:
            start, stop = ipaddress.IPv6Address(raw[:16]), ipaddress.IPv6Address(raw[16:])
        elif ts_type in (7, 8):
            raise DecodeError(f"traffic selector of type {ts_type} has length {length}", pos)
        else:
            half = len(raw) // 2
            start, stop = raw[:half], raw[half:]
        out.append(TrafficSelector(ts_type, proto, sport, eport, start, stop))
        pos += length
    if pos != end:
        raise DecodeError("traffic selector payload has trailing bytes", pos)
    return cls(out)


# --- configuration ----------------------------------------------------------------------------


@dataclass(slots=True)
class CpPayload(Payload):
    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: int = 1
    attributes: list[tuple[int, bytes]] = field(default_factory=list)
    critical: bool = False

    def body(self) -> bytes:
        attrs = b"".join(_HH.pack(t & 0x7FFF, len(v)) + v for t, v in self.attributes)
        return bytes((self.cfg_type, 0, 0, 0)) + attrs


def _decode_cp(data: bytes, pos: int, end: int) -> CpPayload:
    if pos + 4 > end:
        raise DecodeError("configuration payload truncated", pos)
    cfg = data[pos]
    pos += 4
    attrs = []
    while pos < end:
        if pos + 4 > end:
            raise DecodeError("configuration attribute truncated", pos)
        atype, alen = _HH.unpack_from(data, pos)
        if pos + 4 + alen > end:
            raise DecodeError("configuration attribute overruns its payload", pos)
        attrs.append((atype & 0x7FFF, data[pos + 4 : pos + 4 + alen]))
        pos += 4 + alen
    return CpPayload(cfg, attrs)


# --- payloads we carry but do not interpret ---------------------------------------------------


@dataclass(slots=True)
class UnknownPayload(Payload):
    """A payload type this codec does not know; kept as raw body bytes so the message re-encodes exactly."""

    type_: int = 0
    data: bytes = b""
    critical: bool = False

    def body(self) -> bytes:
        return self.data


def _need(data: bytes, pos: int, end: int, n: int, what: str) -> None:
    if end - pos < n:
        raise DecodeError(f"{what} payload body shorter than {n} bytes", pos)


def decode_body(ptype: int, data: bytes, pos: int, end: int) -> Payload:
    """Decode the body ``data[pos:end]`` of a payload of type ``ptype`` (not SK/SKF: see message.py)."""
    if ptype == PayloadType.SA:
        return _decode_sa(data, pos, end)
    if ptype == PayloadType.NOTIFY:
        _need(data, pos, end, 4, "Notify")
        proto, spi_size, ntype = _BBH.unpack_from(data, pos)
        if pos + 4 + spi_size > end:
            raise DecodeError(f"Notify SPI size {spi_size} overruns the payload", pos)
        return NotifyPayload(ntype, proto, data[pos + 4 : pos + 4 + spi_size], data[pos + 4 + spi_size : end])
    if ptype == PayloadType.NONCE:
        return NoncePayload(data[pos:end])
    if ptype == PayloadType.KE:
        _need(data, pos, end, 4, "KE")
        return KePayload(_H.unpack_from(data, pos)[0], data[pos + 4 : end])
    if ptype in (PayloadType.IDI, PayloadType.IDR):
        _need(data, pos, end, 4, "ID")
        cls = IdiPayload if ptype == PayloadType.IDI else IdrPayload
        return cls(data[pos], data[pos + 4 : end])
    if ptype == PayloadType.AUTH:
        _need(data, pos, end, 4, "AUTH")
        return AuthPayload(data[pos], data[pos + 4 : end])
    if ptype in (PayloadType.TSI, PayloadType.TSR):
        return _decode_ts(data, pos, end, TsiPayload if ptype == PayloadType.TSI else TsrPayload)
    if ptype == PayloadType.DELETE:
        _need(data, pos, end, 4, "Delete")
        proto, spi_size, count = _BBH.unpack_from(data, pos)
        if pos + 4 + spi_size * count != end:
            raise DecodeError(f"Delete payload with {count} SPIs of {spi_size} bytes has the wrong length", pos)
        spis = [data[pos + 4 + i * spi_size : pos + 4 + (i + 1) * spi_size] for i in range(count)]
        return DeletePayload(proto, spis, spi_size if count == 0 else 0)
    if ptype == PayloadType.CERT:
        _need(data, pos, end, 1, "CERT")
        return CertPayload(data[pos], data[pos + 1 : end])
    if ptype == PayloadType.CERTREQ:
        _need(data, pos, end, 1, "CERTREQ")
        return CertReqPayload(data[pos], data[pos + 1 : end])
    if ptype == PayloadType.VENDOR:
        return VendorPayload(data[pos:end])
    if ptype == PayloadType.CP:
        return _decode_cp(data, pos, end)
    if ptype == PayloadType.EAP:
        return EapPayload(data[pos:end])
    return UnknownPayload(ptype, data[pos:end])


def payload_type_of(p: Payload) -> int:
    """The wire payload type of ``p`` (UnknownPayload carries its own)."""
    return p.type_ if isinstance(p, UnknownPayload) else p.payload_type

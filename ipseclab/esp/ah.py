"""AH (RFC 4302) on bytes: integrity over the packet, with the mutable header fields zeroed.

The ICV covers the IP header as the receiver will see it: fields that routers change
(IPv4 TOS, flags and fragment offset, TTL, checksum and mutable options; IPv6 traffic
class, flow label, hop limit and the data of options whose "may change" bit is set)
are zeroed, a source route is replaced by its final view, the ICV field itself is
zero, and with ESN the high 32 bits of the sequence number are appended (RFC 4302
3.3.3).  The AH header is padded to 4 bytes in IPv4 and 8 in IPv6 (3.3.3.2.1); the
receiver keeps the sender's padding bytes in the ICV input, as Linux does.

Alignment: RFC 4302 asks for a multiple of 32 bits in IPv4; Linux pads IPv4 AH to 64 bits
too unless the SA has ``flag align4``, and drops (silently, without counting a failure)
an AH header whose length is not the one it expects.  ipseclab sends Linux's 64-bit
layout by default (still a multiple of 32 bits) and the RFC's minimal one with
``align4=True``; it accepts any AH length that holds the ICV.
"""

from __future__ import annotations

import struct
from typing import Any

from ..crypto import Integ, IntegId, get_integ
from ..crypto.random import RandomSource, random_bytes
from ..errors import ConfigError, DecodeError, IntegrityError, ReplayError, TruncatedPacketError, UnknownSpiError
from .common import SEQ_HI, Mode, SaBase
from .iphdr import (
    IPV6_DSTOPTS,
    IPV6_FRAGMENT,
    IPV6_HOPOPTS,
    IPV6_ROUTING,
    PROTO_AH,
    ds_field,
    find_header,
    inner_packet,
    insertion_point,
    set_ecn_ce,
    splice,
    spliced_header,
    tunnel_inner,
)

_AH = struct.Struct("!BBHII")  # next header, payload length, reserved, SPI, sequence number
_H = struct.Struct("!H")
_AH_ONLY = frozenset((PROTO_AH,))
# RFC 4302 Appendix A.1: options that stay in the ICV (End, NOP, Security, Extended Security,
# Commercial Security, Router Alert, Sender Directed Multi-Destination Delivery); others are zeroed
_IPV4_IMMUTABLE = frozenset((0, 1, 130, 133, 134, 148, 149))
_IPV4_SOURCE_ROUTE = frozenset((131, 137))  # LSRR, SSRR: the ICV uses the final destination


def zero_mutable_ipv4(header: bytes) -> bytes:
    """An IPv4 header (with options) as AH authenticates it (RFC 4302 3.3.3.1.1)."""
    b = bytearray(header)
    b[1] = 0  # TOS
    b[6:8] = b"\x00\x00"  # flags, fragment offset
    b[8] = 0  # TTL
    b[10:12] = b"\x00\x00"  # checksum
    pos, end = 20, len(b)
    while pos < end:
        kind = b[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= end or b[pos + 1] < 2 or pos + b[pos + 1] > end:
            raise DecodeError(f"malformed IPv4 option {kind} in an AH packet", pos)
        n = b[pos + 1]
        if kind not in _IPV4_IMMUTABLE:
            if kind in _IPV4_SOURCE_ROUTE:
                if n < 7:
                    raise DecodeError("IPv4 source route option too short", pos)
                b[16:20] = b[pos + n - 4 : pos + n]  # the final destination, as Linux computes it
            b[pos : pos + n] = bytes(n)
        pos += n
    return bytes(b)


def zero_mutable_ipv6(header: bytes) -> bytes:
    """An IPv6 header plus the extension headers before AH, as AH authenticates them (RFC 4302 3.3.3.1.2)."""
    b = bytearray(header)
    b[0] &= 0xF0  # traffic class and flow label
    b[1:4] = b"\x00\x00\x00"
    b[7] = 0  # hop limit
    nh, pos, end = b[6], 40, len(b)
    while pos < end:
        n = 8 if nh == IPV6_FRAGMENT else (b[pos + 1] + 1) * 8
        if nh in (IPV6_HOPOPTS, IPV6_DSTOPTS):
            _zero_options(b, pos + 2, pos + n)
        elif nh == IPV6_ROUTING:
            _final_route(b, pos)
        nh = b[pos]
        pos += n
    return bytes(b)


def _zero_options(b: bytearray, pos: int, end: int) -> None:
    """Zero the data of options whose type has the "may change en route" bit (0x20, RFC 8200 4.2)."""
    while pos < end:
        kind = b[pos]
        if kind == 0:  # Pad1
            pos += 1
            continue
        if pos + 1 >= end or pos + 2 + b[pos + 1] > end:
            raise DecodeError(f"malformed IPv6 option {kind} in an AH packet", pos)
        n = b[pos + 1]
        if kind & 0x20:
            b[pos + 2 : pos + 2 + n] = bytes(n)
        pos += 2 + n


def _final_route(b: bytearray, pos: int) -> None:
    """A type 0/2 routing header and the destination as they will be at the final destination (RFC 4302 A.2)."""
    segments_left = b[pos + 3]
    if b[pos + 2] not in (0, 2) or not segments_left:
        return
    n = b[pos + 1] >> 1
    if segments_left > n:
        raise DecodeError(f"routing header: {segments_left} segments left of {n}", pos)
    start = pos + 8
    addrs = [bytes(b[start + 16 * i : start + 16 * (i + 1)]) for i in range(n)]
    k = n - segments_left
    final = addrs[n - 1]
    addrs = [*addrs[:k], bytes(b[24:40]), *addrs[k : n - 1]]
    b[pos + 3] = 0
    b[start : start + 16 * n] = b"".join(addrs)
    b[24:40] = final


def zero_mutable(header: bytes) -> bytes:
    """``header`` (IP header and anything before AH) with its mutable fields zeroed."""
    return zero_mutable_ipv4(header) if header[0] >> 4 == 4 else zero_mutable_ipv6(header)


class AhSA(SaBase):
    """One AH security association: HMAC-SHA1-96, HMAC-SHA2-256/384/512, AES-XCBC-96 (any IANA integrity id).

    Same keywords as :class:`~ipseclab.esp.EspSA` where they apply (no UDP encapsulation
    exists for AH, RFC 3948 covers ESP only); ``align4`` as the kernel's ``flag align4``
    (see the module docstring).
    """

    protocol_name = "AH"
    __slots__ = ("_icvlen", "_ikey", "align4", "integ", "key")

    def __init__(
        self,
        spi: int,
        integ: int | Integ = IntegId.HMAC_SHA2_256_128,
        key: bytes = b"",
        *,
        mode: Mode | str = Mode.TUNNEL,
        tunnel: tuple[str, str] | None = None,
        esn: bool = False,
        replay_window: int = 64,
        seq: int = 0,
        ttl: int = 64,
        align4: bool = False,
        rng: RandomSource = random_bytes,
    ) -> None:
        super().__init__(spi, mode, tunnel, esn, replay_window, seq, ttl, int.from_bytes(rng(2), "big"))
        self.align4 = align4
        self.integ = integ if isinstance(integ, Integ) else get_integ(integ)
        if len(key) != self.integ.key_size:
            raise ConfigError(f"{self.integ.name} needs a {self.integ.key_size}-byte key, got {len(key)} bytes")
        self.key = bytes(key)
        self._icvlen = self.integ.icv_size
        self._ikey = self.integ.keyed(self.key)

    def __repr__(self) -> str:
        where = f"tunnel {self.tunnel[0]} -> {self.tunnel[1]}" if self.tunnel else "transport"
        esn = ", esn" if self.esn else ""
        return f"AhSA(spi={self.spi:#010x}, {self.integ.name}, {where}{esn}, window {self.window.size}, seq {self.seq})"

    @property
    def icv_size(self) -> int:
        return self._icvlen

    def ah_length(self, version: int) -> int:
        """Bytes of the AH header with its ICV, padded to 8 bytes (4 in IPv4 with ``align4``)."""
        n = 12 + self._icvlen
        align = 4 if version == 4 and self.align4 else 8
        return n + (-n % align)

    def _esn_tail(self, seq: int) -> bytes:
        """What the ICV covers after the packet: the ESN high-order bits (RFC 4302 3.3.3.2.2), never sent."""
        return SEQ_HI.pack(seq >> 32) if self.esn else b""

    def protect(self, packet: bytes, *, seq: int | None = None) -> bytes:
        """The packet with AH: around a new outer header (tunnel) or inserted after the IP header (transport)."""
        outer = self._outer
        if outer is not None:
            nh, ds, df, payload = tunnel_inner(packet)
            ah_len = self.ah_length(outer.version)
        else:
            nh_off, cut, end = insertion_point(packet)
            nh = packet[nh_off]
            ah_len = self.ah_length(packet[0] >> 4)
            payload = packet[cut:end]
        # check, then change: the packet is known good before a sequence number is spent on it
        if seq is None:
            seq = self.seq + 1
            if seq > self._seq_max:
                raise self._exhausted()
            self.seq = seq
        if outer is not None:
            head = outer.build(PROTO_AH, ah_len + len(payload), ds, df)
        else:
            head = spliced_header(packet, nh_off, cut, PROTO_AH, ah_len + len(payload))
        ah0 = _AH.pack(nh, ah_len // 4 - 2, 0, self.spi, seq & 0xFFFFFFFF)
        zero_icv = bytes(ah_len - 12)
        icv = self._ikey.compute(zero_mutable(head) + ah0 + zero_icv + payload, self._esn_tail(seq))
        c = self.counters
        c.packets_out += 1
        c.bytes_out += len(payload)
        return head + ah0 + icv + zero_icv[self._icvlen :] + payload

    def unprotect(self, packet: bytes) -> bytes | None:
        """The verified packet without AH (tunnel: the inner packet).  Errors as for ESP, each counted."""
        c = self.counters
        try:
            nh_off, off, end = find_header(packet, _AH_ONLY)
            if end - off < 12:
                raise TruncatedPacketError(f"{end - off}-byte AH header is shorter than 12 bytes", off)
            nh, plen, _, spi, seq_lo = _AH.unpack_from(packet, off)
            ah_len = (plen + 2) * 4
            if ah_len < 12 + self._icvlen or off + ah_len > end:
                raise TruncatedPacketError(
                    f"AH length {ah_len} does not hold a {self._icvlen}-byte ICV within the packet", off + 1
                )
        except DecodeError:
            c.decode_errors += 1
            raise
        if spi != self.spi:
            c.unknown_spi += 1
            raise UnknownSpiError(f"AH packet for SPI {spi:#010x} reached SA {self.spi:#010x}", spi)
        seq = self.window.infer(seq_lo) if self.esn else seq_lo
        try:
            self.window.check(seq)
        except ReplayError:
            c.replay_drops += 1
            raise
        icv_end = off + 12 + self._icvlen
        try:
            zeroed = zero_mutable(packet[:off])
        except DecodeError:
            c.decode_errors += 1
            raise
        signed = zeroed + packet[off : off + 12] + bytes(self._icvlen) + packet[icv_end:end]
        icv = packet[off + 12 : icv_end]
        try:
            self._ikey.verify(signed, icv, self._esn_tail(seq))
        except IntegrityError as exc:
            self._refuse_icv(seq, exc, lambda seq_hi: self._ikey.verify(signed, icv, SEQ_HI.pack(seq_hi)))
        payload = packet[off + ah_len : end]
        if self._outer is not None:
            inner = inner_packet(payload, nh)
            if inner is None:
                c.decode_errors += 1
                raise DecodeError(f"tunnel-mode AH carries next header {nh}, not a whole IPv4 or IPv6 packet", off)
            payload = inner
            result = set_ecn_ce(payload) if ds_field(packet) & 3 == 3 else payload
        else:
            result = splice(packet, nh_off, off, nh, payload)
        return self._accept(result, seq, len(payload))

    def encrypt(self, pkt: Any, seq_num: int | None = None) -> Any:
        """Protect a Scapy packet (or bytes) with AH; Scapy's name for it."""
        from .common import to_bytes, to_scapy

        data, scapy = to_bytes(pkt)
        out = self.protect(data, seq=seq_num)
        return to_scapy(out) if scapy else out

    @classmethod
    def from_xfrm(cls, spi: int, *, auth: tuple[str, bytes, int], **kwargs: Any) -> AhSA:
        """An AH SA from an ``ip xfrm state`` auth line: (kernel name, key, truncation bits or 0)."""
        from .xfrm_names import integ_from_xfrm

        return cls(spi, integ_from_xfrm(auth[0], auth[2]), auth[1], **kwargs)

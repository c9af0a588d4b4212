"""ESP (RFC 4303) on bytes: one SA, tunnel or transport mode, optionally in UDP (RFC 3948).

Layers of the API, fastest first:

* ``encapsulate(payload, next_header)`` / ``decapsulate(esp)``: the ESP packet from SPI to
  ICV (also the UDP payload on port 4500);
* ``protect(ip_packet)`` / ``unprotect(ip_packet)``: whole IP packets, the outer header
  built (tunnel) or the ESP header spliced in (transport, IPv6 extension headers kept);
* ``encrypt(pkt)`` / ``decrypt(pkt)``: the same on Scapy packets, for the REPL.

Per packet the fast path does one AEAD call (the keyed cipher object is built once per
SA), a ``struct`` pack, a cached trailer lookup and a few slices: no Scapy, no dataclass,
no ``ipaddress``.  ``unprotect`` reads the common case (tunnel mode, AEAD, an IPv4 outer
header without options, a sequence number right of the window) inline, and hands
anything unusual to the general path.  The receive order is RFC 4303 3.4 either way:
SPI, replay *check*, ICV, padding and payload checks, and only then the replay window
*update*, so nothing that fails moves the window.

IVs: AEAD transforms (GCM, ChaCha20-Poly1305, GMAC) need a unique IV per key, not a
random one (RFC 4106 3.1, RFC 7634 2); by default it is the 64-bit sequence number XOR
a per-SA random mask (a counter-based IV, in the spirit of Linux's seqiv), which saves a
system call per packet.
``random_iv=True`` draws each IV from ``rng`` instead; so does a packet sent with an
explicit ``seq`` (crafting), so a repeated sequence number never repeats a nonce.
AES-CBC IVs are always drawn from ``rng`` (they must be unpredictable, RFC 3602 2.1).
"""

from __future__ import annotations

import struct
from typing import Any, NoReturn

from ..crypto import EncrId, Integ, TransformType, get_encr, get_integ
from ..crypto.algorithms import algorithm
from ..crypto.cipher import AeadFunc, AeadTagError, Encr, KeyedCipher, raw_aead
from ..crypto.integ import KeyedInteg
from ..crypto.random import RandomSource, random_bytes
from ..errors import (
    ConfigError,
    DecodeError,
    IntegrityError,
    PaddingError,
    ReplayError,
    TruncatedPacketError,
    UnknownSpiError,
)
from ..packets.natt import KEEPALIVE, NATT_PORT, NON_ESP_MARKER
from .common import SEQ_HI, Mode, SaBase, to_bytes, to_scapy
from .iphdr import (
    PROTO_ESP,
    PROTO_IPV4,
    PROTO_IPV6,
    PROTO_NONE,
    PROTO_UDP,
    OuterHeader,
    addresses,
    ds_field,
    find_header,
    inner_packet,
    insertion_point,
    set_ecn_ce,
    splice,
    tunnel_inner,
    udp_header,
)

_HDR = struct.Struct("!II")  # SPI, sequence number (low 32 bits)
_AAD_ESN = struct.Struct("!III")  # SPI, seq high, seq low (RFC 4106 5)
_H = struct.Struct("!H")
_UDP4 = struct.Struct("!HHHH")
_PAD = bytes(range(1, 256))  # the default padding 1, 2, 3, ... (RFC 4303 2.4)
_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
_ESP_ONLY = frozenset((PROTO_ESP,))
# every well-formed ESP trailer (RFC 4303 2.4 padding, pad length, next header) before an IP packet -> IP version
_FAST_TAILS = {_PAD[:k] + bytes((k, nh)): v for k in range(256) for nh, v in ((4, 4), (41, 6))}
_UDP_ONLY = frozenset((PROTO_UDP,))


def _own_length(payload: bytes, nh: int) -> int:
    """The length a payload says it has (IP total length, UDP length); -1 when it cannot say (RFC 4303 2.7).

    TFC padding is added only when this matches, so the receiver can always cut it off again.
    """
    n = len(payload)
    if nh == PROTO_IPV4 and n >= 20 and payload[0] >> 4 == 4:
        return (payload[2] << 8) | payload[3]
    if nh == PROTO_IPV6 and n >= 40 and payload[0] >> 4 == 6:
        return 40 + ((payload[4] << 8) | payload[5])
    if nh == PROTO_UDP and n >= 8:
        return (payload[4] << 8) | payload[5]
    return -1


def _resolve_encr(encr: int | Encr, key: bytes, key_bits: int | None) -> Encr:
    if isinstance(encr, Encr):
        return encr
    alg = algorithm(TransformType.ENCR, encr)
    if key_bits is None and alg is not None and len(alg.key_bits) > 1:
        key_bits = (len(key) - alg.salt) * 8  # the key material ends with the salt or nonce (the registry's)
    return get_encr(encr, key_bits)


class EspSA(SaBase):
    """One ESP security association (both directions use the same keys, as Scapy's SecurityAssociation does).

    ``encr`` is an IANA ENCR id (or an :class:`~ipseclab.crypto.Encr`); ``key`` its key
    material, with the 4-byte salt at the end for AEAD; the key length gives the AES key
    size unless ``key_bits`` says it.  ``integ``/``integ_key`` are required for non-AEAD
    ciphers (NULL and AES-CBC) and refused for AEAD ones.  ``tunnel=(src, dst)`` gives
    the outer addresses of a tunnel-mode SA; ``udp=(sport, dport)`` (or True for 4500/4500)
    encapsulates in UDP.  ``tfc_pad_to`` pads payloads that carry their own length (IP
    packets, UDP) to that many bytes (RFC 4303 2.7).  ``seq`` is the last sequence number
    sent.
    """

    protocol_name = "ESP"
    __slots__ = (
        "_aead", "_align", "_block", "_check_pad", "_cipher", "_fast", "_fast_min", "_fast_off", "_fast_proto",
        "_icvlen", "_ikey", "_iv_mask", "_ivend", "_ivlen", "_min_len", "_open", "_random_iv", "_rng", "_salt",
        "_seal_raw", "_tfc", "_trailers", "_udp", "encr", "integ", "integ_key", "key",
    )

    def __init__(
        self,
        spi: int,
        encr: int | Encr = EncrId.AES_GCM_16,
        key: bytes = b"",
        *,
        key_bits: int | None = None,
        integ: int | Integ | None = None,
        integ_key: bytes = b"",
        mode: Mode | str = Mode.TUNNEL,
        tunnel: tuple[str, str] | None = None,
        udp: tuple[int, int] | bool | None = None,
        esn: bool = False,
        replay_window: int = 64,
        tfc_pad_to: int = 0,
        random_iv: bool = False,
        check_padding: bool = True,
        seq: int = 0,
        ttl: int = 64,
        rng: RandomSource = random_bytes,
    ) -> None:
        super().__init__(spi, mode, tunnel, esn, replay_window, seq, ttl, int.from_bytes(rng(2), "big"))
        self.encr = _resolve_encr(encr, key, key_bits)
        self.key = bytes(key)
        self.integ = integ if isinstance(integ, Integ) else get_integ(integ) if integ else None
        self.integ_key = bytes(integ_key)
        e, i = self.encr, self.integ
        if e.aead and i is not None:
            raise ConfigError(f"{e.name} is a combined-mode cipher: it takes no integrity algorithm (RFC 4303 3.2.3)")
        if not e.aead and i is None:
            raise ConfigError(
                f"{e.name} needs an integrity algorithm: ipseclab does not do encryption-only ESP (RFC 8221 5)"
            )
        if i is not None and len(integ_key) != i.key_size:
            raise ConfigError(f"{i.name} needs a {i.key_size}-byte key, got {len(integ_key)} bytes")
        self._cipher: KeyedCipher = e.keyed(self.key)
        self._ikey: KeyedInteg | None = i.keyed(self.integ_key) if i is not None else None
        # GCM-16 and ChaCha20-Poly1305 are called directly on the hot path (crypto.cipher.raw_aead)
        raw = raw_aead(self._cipher)
        self._seal_raw: AeadFunc | None = raw[0] if raw else None
        self._open: AeadFunc | None = raw[1] if raw else None
        self._salt = raw[2] if raw else b""
        self._aead = e.aead
        self._ivlen = e.iv_size
        self._ivend = 8 + e.iv_size
        self._icvlen = e.icv_size if e.aead else i.icv_size if i is not None else 0
        self._block = e.block_size
        self._align = max(4, e.block_size)
        # smallest packet with a whole trailer: 2 bytes for stream-like ciphers, one block for CBC
        self._min_len = self._ivend + self._icvlen + (e.block_size if e.block_size > 1 else 2)
        if udp is True:
            udp = (NATT_PORT, NATT_PORT)
        self._udp: tuple[int, int] | None = udp or None
        if not 0 <= tfc_pad_to <= 0xFFFF:
            raise ConfigError(f"tfc_pad_to {tfc_pad_to}: a payload size in bytes (0 disables TFC padding)")
        self._tfc = tfc_pad_to
        self._random_iv = random_iv
        self._check_pad = check_padding
        self._rng = rng
        self._iv_mask = int.from_bytes(rng(8), "big")
        self._trailers: dict[int, bytes] = {}
        # the inline receive path of unprotect(): tunnel mode, AEAD, IPv4 outer header
        self._fast = e.aead and self._outer is not None and self._outer.version == 4
        self._fast_off = 28 if self._udp else 20
        self._fast_proto = PROTO_UDP if self._udp else PROTO_ESP
        self._fast_min = self._fast_off + self._min_len if self._fast else 1 << 62

    def __repr__(self) -> str:
        suite = f"{self.encr.name}-{self.encr.key_bits}" + (f"/{self.integ.name}" if self.integ else "")
        where = f"tunnel {self.tunnel[0]} -> {self.tunnel[1]}" if self.tunnel else "transport"
        extra = (f", udp {self._udp[0]}->{self._udp[1]}" if self._udp else "") + (", esn" if self.esn else "")
        return f"EspSA(spi={self.spi:#010x}, {suite}, {where}{extra}, window {self.window.size}, seq {self.seq})"

    @property
    def udp(self) -> tuple[int, int] | None:
        """(source port, destination port) of the UDP encapsulation, or None."""
        return self._udp

    @property
    def icv_size(self) -> int:
        return self._icvlen

    # -- ESP packets (SPI .. ICV) ------------------------------------------------------------------

    def _trailer(self, padlen: int, next_header: int) -> bytes:
        key = (padlen << 8) | next_header
        t = self._trailers.get(key)
        if t is None:
            t = self._trailers[key] = _PAD[:padlen] + bytes((padlen, next_header))
        return t

    def encapsulate(
        self, payload: bytes, next_header: int, *, seq: int | None = None, iv: bytes | None = None
    ) -> bytes:
        """The ESP packet (SPI, sequence number, IV, ciphertext, ICV) carrying ``payload``.

        ``seq`` and ``iv`` override the SA's counter and IV choice, for crafting; an
        explicit ``seq`` leaves the counter alone.  SequenceExhaustedError once 2^32-1
        (2^64-1 with ESN) has been sent: the SA is then spent.
        """
        head, body = self._seal(payload, next_header, seq, iv)
        return head + body

    def _seal(self, payload: bytes, next_header: int, seq: int | None, iv: bytes | None) -> tuple[bytes, bytes]:
        """The ESP packet in two pieces whose concatenation is the packet (callers join them once, with headers)."""
        if seq is None:
            seq = self.seq + 1
            if seq > self._seq_max:
                raise self._exhausted()
            self.seq = seq
        elif iv is None and self._ivlen:
            iv = self._rng(self._ivlen)
        n = len(payload)
        c = self.counters
        if next_header == PROTO_NONE:
            c.dummies_out += 1
        else:
            c.packets_out += 1
            c.bytes_out += n
        tfc = self._tfc
        if tfc and n < tfc and _own_length(payload, next_header) == n:
            payload += bytes(tfc - n)
            n = tfc
        padlen = -(n + 2) % self._align
        trailer = self._trailers.get((padlen << 8) | next_header) or self._trailer(padlen, next_header)
        seq_lo = seq & _M32
        hdr = _HDR.pack(self.spi, seq_lo)
        if self._aead:
            if iv is None:
                iv = self._rng(self._ivlen) if self._random_iv else ((seq ^ self._iv_mask) & _M64).to_bytes(8, "big")
            aad = _AAD_ESN.pack(self.spi, seq >> 32, seq_lo) if self.esn else hdr
            seal = self._seal_raw
            if seal is not None:
                return hdr + iv, seal(self._salt + iv, payload + trailer, aad)
            return hdr + iv, self._cipher.encrypt(iv, payload + trailer, aad)
        if iv is None:
            iv = self._rng(self._ivlen) if self._ivlen else b""
        signed = hdr + iv + self._cipher.encrypt(iv, payload + trailer)
        ikey = self._ikey
        assert ikey is not None
        # RFC 4303 3.3.2.1.1: with ESN the high 32 bits are appended for the ICV, never sent
        return signed, ikey.compute(signed, SEQ_HI.pack(seq >> 32)) if self.esn else ikey.compute(signed)

    def _verify(self, esp: bytes) -> tuple[bytes, int]:
        """Length, SPI, replay check, then ICV and decryption, without touching the window: (plaintext, seq)."""
        c = self.counters
        if len(esp) < self._min_len:
            c.decode_errors += 1
            raise TruncatedPacketError(
                f"{len(esp)}-byte ESP packet is shorter than the {self._min_len} bytes {self.encr.name} needs", 0
            )
        spi, seq_lo = _HDR.unpack_from(esp)
        if spi != self.spi:
            c.unknown_spi += 1
            raise UnknownSpiError(f"ESP packet for SPI {spi:#010x} reached SA {self.spi:#010x}", spi)
        window = self.window
        seq = window.infer(seq_lo) if self.esn else seq_lo
        try:
            window.check(seq)
        except ReplayError:
            c.replay_drops += 1
            raise
        ivend = self._ivend
        iv = esp[8:ivend]
        if self._aead:
            aad = _AAD_ESN.pack(spi, seq >> 32, seq_lo) if self.esn else esp[:8]
            try:
                plain = self._cipher.decrypt(iv, esp[ivend:], aad)
            except IntegrityError as exc:
                self._icv_failed(seq, exc, esp)
        else:
            ikey = self._ikey
            assert ikey is not None
            cut = len(esp) - self._icvlen
            signed = esp[:cut]
            try:
                ikey.verify(signed, esp[cut:], SEQ_HI.pack(seq >> 32) if self.esn else b"")
            except IntegrityError as exc:
                self._icv_failed(seq, exc, esp)
            ct = signed[ivend:]
            if len(ct) % self._block:
                c.decode_errors += 1
                raise DecodeError(f"ESP ciphertext of {len(ct)} bytes is not whole {self._block}-byte blocks", ivend)
            plain = self._cipher.decrypt(iv, ct)
        return plain, seq

    def _icv_failed(self, seq: int, exc: IntegrityError, esp: bytes) -> NoReturn:
        """Count and raise a failed ICV of ``esp`` (SPI .. ICV) under the inferred ``seq``; see SaBase._refuse_icv."""

        def verify(seq_hi: int) -> object:
            hi = SEQ_HI.pack(seq_hi)
            ivend = self._ivend
            if self._aead:
                return self._cipher.decrypt(esp[8:ivend], esp[ivend:], esp[:4] + hi + esp[4:8])
            ikey = self._ikey
            assert ikey is not None
            cut = len(esp) - self._icvlen
            ikey.verify(esp[:cut], esp[cut:], hi)
            return None

        self._refuse_icv(seq, exc, verify)

    def _strip(self, plain: bytes) -> tuple[bytes, int]:
        """(payload, next header) of a decrypted ESP payload, its padding checked (RFC 4303 2.4)."""
        c = self.counters
        padlen = plain[-2]
        end = len(plain) - 2 - padlen
        if end < 0 or (self._check_pad and padlen and plain[end:-2] != _PAD[:padlen]):
            c.padding_errors += 1
            what = "longer than the payload" if end < 0 else "not the 1, 2, 3, ... of RFC 4303 2.4"
            raise PaddingError(f"ESP padding ({padlen} bytes) is {what}", self._ivend)
        return plain[:end], plain[-1]

    def _inner(self, payload: bytes, nh: int) -> bytes:
        """Check what a mode may carry and drop TFC padding; DecodeError (counted) when it does not fit."""
        if nh in (PROTO_IPV4, PROTO_IPV6):
            inner = inner_packet(payload, nh)
            if inner is not None:
                return inner
        elif self._outer is not None and nh != PROTO_NONE:
            self.counters.decode_errors += 1
            raise DecodeError(f"tunnel-mode ESP carries next header {nh}, not IPv4 (4), IPv6 (41) or none (59)")
        else:
            if nh == PROTO_UDP and len(payload) >= 8:  # transport mode: the UDP length ends TFC padding
                length = (payload[4] << 8) | payload[5]
                if 8 <= length < len(payload):
                    return payload[:length]
            return payload
        self.counters.decode_errors += 1
        raise DecodeError(f"ESP next header {nh} but the payload is not a whole IPv{4 if nh == 4 else 6} packet")

    def decapsulate(self, esp: bytes) -> tuple[bytes, int]:
        """Verify and decrypt an ESP packet (SPI .. ICV): (payload, next header); 59 for a dummy packet.

        Raises TruncatedPacketError, UnknownSpiError, ReplayError, IntegrityError,
        PaddingError or DecodeError, each counted; the window moves only on success.
        The common case (GCM-16 or ChaCha20-Poly1305, a sequence number right of the window, an IP
        packet inside with the default padding) is read inline, as in :meth:`unprotect`, in the same
        RFC 4303 3.4 order; anything else takes the general path.
        """
        aead_open = self._open
        if aead_open is not None and len(esp) >= self._min_len:
            spi, seq = _HDR.unpack_from(esp)
            w = self.window
            if spi == self.spi:
                esn = self.esn
                if esn:
                    seq = w.infer(seq)
                top = w.top
                if seq > top:
                    ivend = self._ivend
                    try:
                        plain = aead_open(self._salt + esp[8:ivend], esp[ivend:],
                                          _AAD_ESN.pack(spi, seq >> 32, seq & _M32) if esn else esp[:8])
                    except AeadTagError:
                        self._icv_failed(seq, IntegrityError(f"{self.encr.name} ICV mismatch"), esp)
                    end = len(plain) - 2 - plain[-2]
                    version = _FAST_TAILS.get(plain[end:])
                    if (
                        (version == 4 and end >= 20 and plain[0] >> 4 == 4 and ((plain[2] << 8) | plain[3]) == end)
                        or (version == 6 and end >= 40 and plain[0] >> 4 == 6
                            and 40 + ((plain[4] << 8) | plain[5]) == end)
                    ):
                        w.advance(seq, top)
                        c = self.counters
                        c.packets_in += 1
                        c.bytes_in += end
                        return plain[:end], plain[-1]
                    return self._received(plain, seq)
        plain, seq = self._verify(esp)
        return self._received(plain, seq)

    def _received(self, plain: bytes, seq: int) -> tuple[bytes, int]:
        """decapsulate after the ICV: padding, what the mode may carry, then the window and the counters."""
        payload, nh = self._strip(plain)
        payload = self._inner(payload, nh)
        self.window.update(seq)
        c = self.counters
        if nh == PROTO_NONE:
            c.dummies_in += 1
        else:
            c.packets_in += 1
            c.bytes_in += len(payload)
        return payload, nh

    # -- IP packets --------------------------------------------------------------------------------

    def protect(self, packet: bytes, *, seq: int | None = None, iv: bytes | None = None) -> bytes:
        """The IP packet to send for ``packet``: tunnel mode wraps it, transport mode splices ESP in."""
        outer = self._outer
        if outer is not None:
            nh, ds, df, packet = tunnel_inner(packet)
            head, body = self._seal(packet, nh, seq, iv)
            size = len(head) + len(body)
            udp = self._udp
            if udp is None:
                return b"".join((outer.build(PROTO_ESP, size, ds, df), head, body))
            if outer.version == 4:  # checksum 0: the UDP header does not need the payload
                return b"".join((outer.build(PROTO_UDP, 8 + size, ds, df), _UDP4.pack(udp[0], udp[1], 8 + size, 0),
                                 head, body))
            esp = head + body
            return outer.build(PROTO_UDP, 8 + size, ds, df) + outer.udp(udp[0], udp[1], esp) + esp
        nh_off, cut, end = insertion_point(packet)
        esp = self.encapsulate(packet[cut:end], packet[nh_off], seq=seq, iv=iv)
        if self._udp is not None:
            return splice(packet, nh_off, cut, PROTO_UDP, udp_header(addresses(packet), *self._udp, esp) + esp)
        return splice(packet, nh_off, cut, PROTO_ESP, esp)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The inner (tunnel) or restored (transport) IP packet; None for a dummy packet or a NAT keepalive."""
        n = len(packet)
        if (
            n >= self._fast_min and packet[9] == self._fast_proto and packet[0] == 0x45
            and ((packet[2] << 8) | packet[3]) == n and not (packet[6] & 0x3F or packet[7])
        ):
            # The common case read inline: a tunnel-mode AEAD SA, an IPv4 outer header without options or
            # fragmentation, a sequence number right of the window (no bitmap to consult).  RFC 4303 3.4
            # order all the same: SPI, replay check, ICV, padding and payload, then the window update.
            off = self._fast_off
            spi, seq = _HDR.unpack_from(packet, off)
            w = self.window
            if spi == self.spi and (off == 20 or ((packet[24] << 8) | packet[25]) == n - 20):
                if self.esn:
                    seq = w.infer(seq)
                top = w.top
                if seq > top:
                    ivend = off + self._ivend
                    aad = _AAD_ESN.pack(spi, seq >> 32, seq & _M32) if self.esn else packet[off : off + 8]
                    aead_open = self._open
                    try:
                        if aead_open is not None:
                            plain = aead_open(self._salt + packet[off + 8 : ivend], packet[ivend:], aad)
                        else:
                            plain = self._cipher.decrypt(packet[off + 8 : ivend], packet[ivend:], aad)
                    except AeadTagError:
                        self._icv_failed(seq, IntegrityError(f"{self.encr.name} ICV mismatch"), packet[off:])
                    except IntegrityError as exc:
                        self._icv_failed(seq, exc, packet[off:])
                    end = len(plain) - 2 - plain[-2]
                    # one lookup checks the padding bytes, the pad length and the next header at once
                    version = _FAST_TAILS.get(plain[end:])
                    if (
                        (
                            (version == 4 and end >= 20 and plain[0] >> 4 == 4 and ((plain[2] << 8) | plain[3]) == end)
                            or (version == 6 and end >= 40 and plain[0] >> 4 == 6
                                and 40 + ((plain[4] << 8) | plain[5]) == end)
                        )
                        and packet[1] & 3 != 3 and self.selectors is None
                    ):
                        w.advance(seq, top)
                        c = self.counters
                        c.packets_in += 1
                        c.bytes_in += end
                        return plain[:end]
                    # anything else (TFC padding, a dummy, ECN, selectors, other padding): the general path
                    return self._finish(packet, 9, off, plain, seq)
        located = self._locate(packet)
        if located is None:  # a NAT keepalive
            return None
        nh_off, cut, esp = located
        plain, seq = self._verify(esp)
        return self._finish(packet, nh_off, cut, plain, seq)

    def _finish(self, packet: bytes, nh_off: int, cut: int, plain: bytes, seq: int) -> bytes | None:
        """Everything after the ICV: padding, what the mode may carry, selectors, then the window update."""
        c = self.counters
        payload, nh = self._strip(plain)
        payload = self._inner(payload, nh)
        if nh == PROTO_NONE:
            self.window.update(seq)
            c.dummies_in += 1
            return None
        if self._outer is not None:
            result = set_ecn_ce(payload) if ds_field(packet) & 3 == 3 else payload
        else:
            result = splice(packet, nh_off, cut, nh, payload)
        return self._accept(result, seq, len(payload))

    def _locate(self, packet: bytes) -> tuple[int, int, bytes] | None:
        """(offset of the Next Header byte, where ESP (or its UDP header) starts, the ESP packet); None: keepalive."""
        c = self.counters
        try:
            if self._udp is not None:
                nh_off, cut, end = find_header(packet, _UDP_ONLY)
                ulen = _H.unpack_from(packet, cut + 4)[0] if end - cut >= 8 else 0
                if ulen < 8 or cut + ulen > end:
                    raise TruncatedPacketError("truncated UDP header or UDP length beyond the packet", cut)
                esp = packet[cut + 8 : cut + ulen]
                if esp == KEEPALIVE:
                    c.keepalives_in += 1
                    return None
                if esp[:4] == NON_ESP_MARKER:
                    raise DecodeError("UDP payload starts with the non-ESP marker: an IKE message, not ESP", cut + 8)
            else:
                nh_off, cut, end = find_header(packet, _ESP_ONLY)
                esp = packet[cut:end]
        except DecodeError:
            c.decode_errors += 1
            raise
        return nh_off, cut, esp

    def dummy_packet(self, size: int = 0, *, src: str | None = None, dst: str | None = None) -> bytes:
        """A dummy packet (next header 59, RFC 4303 2.6) of ``size`` payload bytes, as an IP packet.

        Tunnel mode uses the tunnel addresses; transport mode needs ``src`` and ``dst``.
        """
        esp = self.encapsulate(bytes(size), PROTO_NONE)
        outer = self._outer
        if outer is None:
            if src is None or dst is None:
                raise ConfigError("a transport-mode dummy packet needs src and dst addresses")
            outer = OuterHeader(src, dst)
        if self._udp is not None:
            return outer.build(PROTO_UDP, 8 + len(esp)) + outer.udp(self._udp[0], self._udp[1], esp) + esp
        return outer.build(PROTO_ESP, len(esp)) + esp

    def keepalive_packet(self, *, src: str | None = None, dst: str | None = None) -> bytes:
        """A NAT keepalive (RFC 3948 2.3) on this SA's UDP ports, from the tunnel addresses or ``src``/``dst``."""
        sport, dport = self._udp or (NATT_PORT, NATT_PORT)
        if src is None or dst is None:
            if self._outer is None:
                raise ConfigError("a transport-mode SA needs src and dst for a keepalive")
            src, dst = self._outer.src, self._outer.dst
        return nat_keepalive(src, dst, sport, dport)

    # -- Scapy face with ESP's crafting knobs --------------------------------------------------------

    def encrypt(self, pkt: Any, seq_num: int | None = None, iv: bytes | None = None) -> Any:
        """Protect a Scapy packet (or bytes); ``seq_num``/``iv`` as in Scapy's SecurityAssociation.encrypt."""
        data, scapy = to_bytes(pkt)
        out = self.protect(data, seq=seq_num, iv=iv)
        return to_scapy(out) if scapy else out

    # -- from the kernel ---------------------------------------------------------------------------

    @classmethod
    def from_xfrm(
        cls,
        spi: int,
        *,
        aead: tuple[str, bytes, int] | None = None,
        enc: tuple[str, bytes] | None = None,
        auth: tuple[str, bytes, int] | None = None,
        **kwargs: Any,
    ) -> EspSA:
        """An SA from ``ip xfrm state`` algorithm lines, e.g. ``aead=("rfc4106(gcm(aes))", key, 128)``.

        ``auth`` is (name, key, truncation bits; 0 for the kernel's default); the other
        keywords are the constructor's (mode, tunnel, udp, esn, replay_window, ...).
        """
        from .xfrm_names import esp_algorithms

        algs = esp_algorithms(aead=aead, enc=enc, auth=auth)
        return cls(spi, algs.encr, algs.encr_key, integ=algs.integ, integ_key=algs.integ_key, **kwargs)


def nat_keepalive(src: str, dst: str, sport: int = NATT_PORT, dport: int = NATT_PORT) -> bytes:
    """An IP/UDP packet carrying the one-byte 0xFF NAT keepalive (RFC 3948 2.3)."""
    outer = OuterHeader(src, dst)
    return outer.build(PROTO_UDP, 9) + outer.udp(sport, dport, KEEPALIVE) + KEEPALIVE

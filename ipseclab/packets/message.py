"""Whole IKEv2 messages: header, payload chain and the SK payload (RFC 7296 sections 3.1-3.2, 3.14).

``decode(data, crypto)`` turns a datagram into a :class:`Message`; with an
:class:`IkeSaCrypto` it also verifies and decrypts the SK payload, keeping the
IV and padding it found so that ``encode`` reproduces the very same bytes.
Without keys the SK payload stays an opaque :class:`EncryptedPayload`.

Integrity and AEAD coverage follow the RFCs: for cipher+integrity the ICV
covers the message from the IKE header to the end of the ciphertext; for AEAD
(RFC 5282) the associated data is everything before the IV (IKE header,
any clear payloads, the SK/SKF generic header and, for SKF, the fragment
numbers), and the ICV is the AEAD tag.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..crypto import Encr, Integ, KeyedCipher, random_bytes
from ..crypto.random import RandomSource
from ..errors import DecodeError, IntegrityError, LocalProtocolError
from .enums import ExchangeType, PayloadType, enum_name
from .payloads import Payload, decode_body, payload_type_of

if TYPE_CHECKING:  # key derivation (and DH with it) only for annotations: decoding a capture needs neither
    from ..crypto import IkeSaKeys, IkeSuite

HEADER = struct.Struct("!8s8sBBBBII")
HEADER_LEN = 28
FLAG_INITIATOR = 0x08
FLAG_VERSION = 0x10
FLAG_RESPONSE = 0x20


@dataclass(slots=True)
class EncryptedPayload(Payload):
    """The SK payload (RFC 7296 3.14).

    Decoded with keys: ``payloads`` holds the inner payloads, ``iv`` and
    ``padding`` what the sender used.  Decoded without keys: ``payloads`` is
    None and ``ciphertext`` holds IV | encrypted data | ICV, ``first_payload``
    the type of the first inner payload.  To build one, give ``payloads``;
    ``iv`` and ``padding`` default to random / minimal.
    """

    payload_type: ClassVar[int] = PayloadType.SK
    payloads: list[Payload] | None = None
    iv: bytes | None = None
    padding: bytes | None = None
    first_payload: int = 0
    ciphertext: bytes | None = None
    critical: bool = False

    def body(self) -> bytes:  # pragma: no cover - SK bodies need keys: see encode()
        raise LocalProtocolError("an SK payload is encoded by encode(message, crypto)")


@dataclass(slots=True)
class EncryptedFragment(Payload):
    """The SKF payload (RFC 7383 2.5): one fragment of an SK payload.

    ``plaintext`` is this fragment's share of the inner payload bytes once
    decrypted; ``ciphertext`` is IV | encrypted data | ICV as on the wire.
    """

    payload_type: ClassVar[int] = PayloadType.SKF
    number: int = 1
    total: int = 1
    first_payload: int = 0
    plaintext: bytes | None = None
    iv: bytes | None = None
    padding: bytes | None = None
    ciphertext: bytes | None = None
    critical: bool = False

    def body(self) -> bytes:  # pragma: no cover
        raise LocalProtocolError("an SKF payload is encoded by encode(message, crypto)")


@dataclass(slots=True)
class Message:
    """An IKEv2 message.  ``payloads`` is the outer chain; an SK payload, if any, is last."""

    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    initiator: bool = True
    response: bool = False
    version: int = 0x20
    higher_version: bool = False

    @property
    def flags(self) -> int:
        return (
            (FLAG_INITIATOR if self.initiator else 0)
            | (FLAG_RESPONSE if self.response else 0)
            | (FLAG_VERSION if self.higher_version else 0)
        )

    @property
    def encrypted(self) -> EncryptedPayload | None:
        last = self.payloads[-1] if self.payloads else None
        return last if isinstance(last, EncryptedPayload) else None

    def all_payloads(self) -> list[Payload]:
        """Clear payloads followed by the decrypted inner ones (the SK payload itself left out)."""
        out: list[Payload] = []
        for p in self.payloads:
            if isinstance(p, EncryptedPayload):
                out.extend(p.payloads or [])
            else:
                out.append(p)
        return out

    def find(self, cls: type[Payload]) -> list[Payload]:
        return [p for p in self.all_payloads() if isinstance(p, cls)]

    def summary(self) -> str:
        """``IKE_AUTH request #1 [IDi AUTH SA TSi TSr]``, the way strongSwan logs a message."""
        kind = "response" if self.response else "request"
        names = []
        for p in self.payloads:
            if isinstance(p, EncryptedPayload):
                inner = " ".join(_short(q) for q in p.payloads) if p.payloads is not None else "?"
                names.append(f"SK{{{inner}}}")
            else:
                names.append(_short(p))
        return f"{enum_name(ExchangeType, self.exchange)} {kind} #{self.message_id} [{' '.join(names)}]"


def _short(p: Payload) -> str:
    from .payloads import NotifyPayload

    if isinstance(p, NotifyPayload):
        from .enums import NotifyType

        return f"N({enum_name(NotifyType, p.notify_type)})"
    if isinstance(p, EncryptedFragment):
        return f"SKF({p.number}/{p.total})"
    return _SHORT_NAMES.get(payload_type_of(p)) or enum_name(PayloadType, payload_type_of(p))


# the names strongSwan and Wireshark print
_SHORT_NAMES: dict[int, str] = {
    PayloadType.IDI: "IDi", PayloadType.IDR: "IDr", PayloadType.TSI: "TSi", PayloadType.TSR: "TSr",
    PayloadType.NONCE: "No", PayloadType.VENDOR: "V",
}


# --- keys for the SK payload ------------------------------------------------------------------


class SkCrypto:
    """Encryption and integrity for one direction of an IKE SA (SK_e and SK_a of one side)."""

    __slots__ = ("cipher", "encr", "integ", "sk_a", "sk_e")

    def __init__(self, encr: Encr, integ: Integ | None, sk_e: bytes, sk_a: bytes = b"") -> None:
        self.encr = encr
        self.integ = integ
        self.sk_e = sk_e
        self.sk_a = sk_a
        self.cipher: KeyedCipher = encr.keyed(sk_e)

    @property
    def icv_size(self) -> int:
        return self.encr.icv_size if self.encr.aead else (self.integ.icv_size if self.integ else 0)


@dataclass(slots=True)
class IkeSaCrypto:
    """Both directions of an IKE SA; messages with the I flag use the initiator's keys."""

    initiator: SkCrypto
    responder: SkCrypto

    @classmethod
    def from_keys(cls, suite: IkeSuite, keys: IkeSaKeys) -> IkeSaCrypto:
        return cls(
            SkCrypto(suite.encr, suite.integ, keys.sk_ei, keys.sk_ai),
            SkCrypto(suite.encr, suite.integ, keys.sk_er, keys.sk_ar),
        )

    def for_sender(self, initiator_flag: bool) -> SkCrypto:
        return self.initiator if initiator_flag else self.responder


# --- decoding ---------------------------------------------------------------------------------


def decode_header(data: bytes) -> tuple[bytes, bytes, int, int, int, int, int]:
    """(spi_i, spi_r, next_payload, version, exchange, flags, message_id), checking the length field."""
    if len(data) < HEADER_LEN:
        raise DecodeError(f"IKE message of {len(data)} bytes is shorter than the 28-byte header", 0)
    spi_i, spi_r, nxt, version, exch, flags, mid, length = HEADER.unpack_from(data, 0)
    if length != len(data):
        raise DecodeError(f"IKE header length {length} does not match the {len(data)} bytes received", 24)
    return spi_i, spi_r, nxt, version, exch, flags, mid


def decode_chain(data: bytes, nxt: int, pos: int, end: int, out: list[Payload]) -> tuple[int, int, int, bool]:
    """Decode payloads until SK/SKF or the end; returns (type of SK/SKF or 0, its offset, its next, critical)."""
    while nxt != PayloadType.NONE:
        if pos + 4 > end:
            raise DecodeError(f"{enum_name(PayloadType, nxt)} payload header truncated", pos)
        follow, crit, length = _BBH.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            raise DecodeError(f"{enum_name(PayloadType, nxt)} payload length {length} is invalid", pos)
        if nxt in (PayloadType.SK, PayloadType.SKF):
            if pos + length != end:
                raise DecodeError("the SK payload must be the last payload", pos)
            return nxt, pos, follow, bool(crit & 0x80)
        p = decode_body(nxt, data, pos + 4, pos + length)
        if crit & 0x80:
            p.critical = True  # type: ignore[attr-defined]
        out.append(p)
        nxt = follow
        pos += length
    if pos != end:
        raise DecodeError(f"{end - pos} bytes after the last payload", pos)
    return 0, pos, 0, False


_BBH = struct.Struct("!BBH")


def _open(crypto: SkCrypto, data: bytes, iv_pos: int, end: int) -> tuple[bytes, bytes, bytes]:
    """Verify and decrypt IV | ciphertext | ICV at data[iv_pos:end]; returns (iv, content, padding)."""
    encr = crypto.encr
    icv = crypto.icv_size
    ct_start = iv_pos + encr.iv_size
    if end - ct_start < icv + 1:
        raise DecodeError("encrypted payload shorter than its IV and ICV", iv_pos)
    iv = data[iv_pos:ct_start]
    if encr.aead:
        plain = crypto.cipher.decrypt(iv, data[ct_start:end], data[:iv_pos])
    else:
        assert crypto.integ is not None
        crypto.integ.verify(crypto.sk_a, data[: end - icv], data[end - icv : end])
        ct = data[ct_start : end - icv]
        if len(ct) % encr.block_size:
            raise DecodeError(f"ciphertext of {len(ct)} bytes is not a multiple of the block size", ct_start)
        plain = crypto.cipher.decrypt(iv, ct)
    if not plain:
        raise DecodeError("empty encrypted payload (no pad length byte)", ct_start)
    pad_len = plain[-1]
    if pad_len + 1 > len(plain):
        raise DecodeError(f"pad length {pad_len} exceeds the decrypted data", ct_start)
    return iv, plain[: len(plain) - 1 - pad_len], plain[len(plain) - 1 - pad_len : -1]


def decode(data: bytes, crypto: IkeSaCrypto | SkCrypto | None = None) -> Message:
    """Parse an IKE message (without the non-ESP marker); decrypt SK/SKF when keys are given.

    Raises DecodeError for malformed input and IntegrityError for a bad ICV.
    """
    data = bytes(data)
    spi_i, spi_r, nxt, version, exch, flags, mid = decode_header(data)
    msg = Message(spi_i, spi_r, exch, mid, [], bool(flags & FLAG_INITIATOR), bool(flags & FLAG_RESPONSE),
                  version, bool(flags & FLAG_VERSION))
    sk_type, pos, first, crit = decode_chain(data, nxt, HEADER_LEN, len(data), msg.payloads)
    if not sk_type:
        return msg
    sk = crypto.for_sender(msg.initiator) if isinstance(crypto, IkeSaCrypto) else crypto
    end = len(data)
    if sk_type == PayloadType.SKF:
        if pos + 8 > end:
            raise DecodeError("SKF payload truncated", pos)
        number, total = struct.unpack_from("!HH", data, pos + 4)
        if number == 0 or total == 0 or number > total:
            raise DecodeError(f"SKF fragment number {number} of {total} is invalid", pos + 4)
        frag = EncryptedFragment(number, total, first, critical=crit)
        if sk is None:
            frag.ciphertext = data[pos + 8 :]
        else:
            frag.iv, frag.plaintext, frag.padding = _open(sk, data, pos + 8, end)
        msg.payloads.append(frag)
        return msg
    enc = EncryptedPayload(first_payload=first, critical=crit)
    if sk is None:
        enc.ciphertext = data[pos + 4 :]
    else:
        enc.iv, content, enc.padding = _open(sk, data, pos + 4, end)
        inner: list[Payload] = []
        decode_chain(content, first, 0, len(content), inner)
        enc.payloads = inner
    msg.payloads.append(enc)
    return msg


# --- encoding ---------------------------------------------------------------------------------


def encode_chain(payloads: list[Payload], next_after: int = 0) -> tuple[int, bytes]:
    """Encode clear payloads; returns (type of the first, bytes).  ``next_after`` follows the last."""
    parts = []
    n = len(payloads)
    for i, p in enumerate(payloads):
        body = p.body()
        follow = payload_type_of(payloads[i + 1]) if i + 1 < n else next_after
        parts.append(_BBH.pack(follow, 0x80 if p.critical else 0, 4 + len(body)))  # type: ignore[attr-defined]
        parts.append(body)
    return (payload_type_of(payloads[0]) if payloads else next_after), b"".join(parts)


def _pad(encr: Encr, content_len: int, padding: bytes | None) -> bytes:
    if padding is not None:
        return padding
    return bytes((-(content_len + 1)) % encr.block_size)


def _seal(sk: SkCrypto, head: bytes, content: bytes, iv: bytes | None, padding: bytes | None,
          rng: RandomSource) -> bytes:
    """Complete a message whose bytes up to the IV are ``head`` (length field still 0)."""
    encr = sk.encr
    if iv is None:
        iv = rng(encr.iv_size)
    elif len(iv) != encr.iv_size:
        raise LocalProtocolError(f"{encr.name} IV must be {encr.iv_size} bytes, got {len(iv)}")
    pad = _pad(encr, len(content), padding)
    if len(pad) > 255:
        raise LocalProtocolError("SK padding longer than 255 bytes")
    plain = content + pad + bytes((len(pad),))
    if not encr.aead and len(plain) % encr.block_size:
        raise LocalProtocolError(
            f"padding of {len(pad)} bytes does not align the SK plaintext to {encr.block_size} bytes"
        )
    total = len(head) + encr.iv_size + len(plain) + (encr.icv_size if encr.aead else sk.icv_size)
    head = _with_length(head, total)
    if encr.aead:
        return head + iv + sk.cipher.encrypt(iv, plain, head)
    assert sk.integ is not None
    signed = head + iv + sk.cipher.encrypt(iv, plain)
    return signed + sk.integ.compute(sk.sk_a, signed)


def _with_length(head: bytes, total: int) -> bytes:
    """Fill the IKE header length and the SK/SKF payload length (the last generic header in ``head``)."""
    return head[:24] + struct.pack("!I", total) + head[28:]


def _header(msg: Message, next_payload: int) -> bytes:
    return HEADER.pack(msg.spi_i, msg.spi_r, next_payload, msg.version, msg.exchange, msg.flags,
                       msg.message_id, 0)


def encode(msg: Message, crypto: IkeSaCrypto | SkCrypto | None = None, rng: RandomSource = random_bytes) -> bytes:
    """Build the datagram for ``msg``; SK and SKF payloads need ``crypto`` unless they carry raw ciphertext."""
    clear = msg.payloads
    last = clear[-1] if clear else None
    protected = isinstance(last, EncryptedPayload | EncryptedFragment)
    if protected:
        clear = clear[:-1]
    if len(msg.spi_i) != 8 or len(msg.spi_r) != 8:
        raise LocalProtocolError("IKE SPIs must be 8 bytes each")
    first, clear_bytes = encode_chain(clear, payload_type_of(last) if protected and last else 0)
    head = _header(msg, first) + clear_bytes
    if not protected:
        return _with_length(head, len(head))
    assert last is not None
    sk = crypto.for_sender(msg.initiator) if isinstance(crypto, IkeSaCrypto) else crypto
    crit = 0x80 if last.critical else 0  # type: ignore[attr-defined]
    if isinstance(last, EncryptedFragment):
        sub = struct.pack("!HH", last.number, last.total)
        if sk is None or last.plaintext is None:
            if last.ciphertext is None:
                raise LocalProtocolError("an SKF payload needs keys and plaintext, or raw ciphertext")
            body = sub + last.ciphertext
            data = head + _BBH.pack(last.first_payload, crit, 4 + len(body)) + body
            return _with_length(data, len(data))
        skf_len = 8 + sk.encr.iv_size + _sealed_len(sk, len(last.plaintext), last.padding)
        head += _BBH.pack(last.first_payload, crit, skf_len) + sub
        return _seal(sk, head, last.plaintext, last.iv, last.padding, rng)
    assert isinstance(last, EncryptedPayload)
    if last.payloads is None or sk is None:
        if last.ciphertext is None:
            raise LocalProtocolError("an SK payload needs keys and inner payloads, or raw ciphertext")
        data = head + _BBH.pack(last.first_payload, crit, 4 + len(last.ciphertext)) + last.ciphertext
        return _with_length(data, len(data))
    inner_first, content = encode_chain(last.payloads)
    sk_len = 4 + sk.encr.iv_size + _sealed_len(sk, len(content), last.padding)
    head += _BBH.pack(inner_first, crit, sk_len)
    return _seal(sk, head, content, last.iv, last.padding, rng)


def _sealed_len(sk: SkCrypto, content_len: int, padding: bytes | None) -> int:
    pad = _pad(sk.encr, content_len, padding)
    return content_len + len(pad) + 1 + sk.icv_size


def sk_overhead(sk: SkCrypto) -> int:
    """Bytes an SK payload adds around its content at most: header, IV, worst-case padding, ICV."""
    return 4 + sk.encr.iv_size + sk.encr.block_size + sk.icv_size


__all__ = [
    "HEADER_LEN",
    "EncryptedFragment",
    "EncryptedPayload",
    "IkeSaCrypto",
    "IntegrityError",
    "Message",
    "SkCrypto",
    "decode",
    "decode_header",
    "encode",
    "encode_chain",
]

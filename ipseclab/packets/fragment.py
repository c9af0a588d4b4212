"""IKE message fragmentation (RFC 7383): split an SK payload into SKF fragments and put it back together.

Each fragment is a complete IKE message whose only payload is an Encrypted
Fragment payload, encrypted and integrity-protected on its own.  The first
fragment's Next Payload names the first inner payload; the others carry 0.
Reassembly is sans-I/O: feed decoded (and decrypted) fragment messages to a
:class:`Reassembler`; it returns the whole message once every fragment is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto import random_bytes
from ..crypto.random import RandomSource
from ..errors import DecodeError, LocalProtocolError
from .message import (
    HEADER_LEN,
    EncryptedFragment,
    EncryptedPayload,
    IkeSaCrypto,
    Message,
    SkCrypto,
    decode_chain,
    encode,
    encode_chain,
)
from .payloads import Payload

MAX_FRAGMENTS = 64


def fragment(
    msg: Message, crypto: IkeSaCrypto | SkCrypto, max_len: int, rng: RandomSource = random_bytes
) -> list[bytes]:
    """Encode ``msg`` as SKF fragment messages of at most ``max_len`` bytes each (IKE header included).

    ``msg`` must end in an EncryptedPayload with inner payloads and carry no
    clear payloads (RFC 7383 2.5 fragments the SK payload only).
    """
    enc = msg.encrypted
    if enc is None or enc.payloads is None:
        raise LocalProtocolError("only a message with an SK payload of inner payloads can be fragmented")
    if len(msg.payloads) != 1:
        raise LocalProtocolError("a message with clear payloads besides SK cannot be fragmented")
    sk = crypto.for_sender(msg.initiator) if isinstance(crypto, IkeSaCrypto) else crypto
    first, content = encode_chain(enc.payloads)
    block = sk.encr.block_size
    room = max_len - HEADER_LEN - 8 - sk.encr.iv_size - sk.icv_size
    room -= room % block  # content + padding + pad-length byte must fit, aligned to the block size
    chunk = room - 1
    if chunk < 1:
        raise LocalProtocolError(f"fragment size {max_len} leaves no room for data with {sk.encr.name}")
    pieces = [content[i : i + chunk] for i in range(0, len(content), chunk)] or [b""]
    if len(pieces) > MAX_FRAGMENTS:
        raise LocalProtocolError(f"{len(pieces)} fragments exceed the limit of {MAX_FRAGMENTS}")
    out = []
    for n, piece in enumerate(pieces, start=1):
        frag = EncryptedFragment(n, len(pieces), first if n == 1 else 0, plaintext=piece)
        fmsg = Message(msg.spi_i, msg.spi_r, msg.exchange, msg.message_id, [frag], msg.initiator,
                       msg.response, msg.version, msg.higher_version)
        out.append(encode(fmsg, sk, rng))
    return out


@dataclass(slots=True)
class _Pending:
    total: int
    first_payload: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)


def _key(msg: Message) -> tuple[bytes, bytes, int, bool, bool]:
    return (msg.spi_i, msg.spi_r, msg.message_id, msg.initiator, msg.response)


@dataclass(slots=True)
class Reassembler:
    """Collects decrypted SKF fragments per (SPIs, message id, direction) and yields whole messages."""

    pending: dict[tuple[bytes, bytes, int, bool, bool], _Pending] = field(default_factory=dict)

    @property
    def stored_bytes(self) -> int:
        """Bytes of decrypted fragment contents held for messages not yet complete (what a memory bound counts)."""
        return sum(len(part) for state in self.pending.values() for part in state.parts.values())

    def discard(self, msg: Message) -> None:
        """Forget the fragments collected so far for the message ``msg`` is a fragment of."""
        self.pending.pop(_key(msg), None)

    def add(self, msg: Message) -> Message | None:
        """Add one decoded fragment message; returns the reassembled Message when complete."""
        frag = msg.payloads[-1] if msg.payloads else None
        if not isinstance(frag, EncryptedFragment):
            raise LocalProtocolError("Reassembler.add() takes messages whose last payload is SKF")
        if frag.plaintext is None:
            raise LocalProtocolError("SKF fragment was not decrypted: decode it with the IKE SA's keys")
        if frag.total > MAX_FRAGMENTS:
            raise DecodeError(f"SKF announces {frag.total} fragments, more than {MAX_FRAGMENTS}")
        key = _key(msg)
        state = self.pending.get(key)
        if state is None or frag.total > state.total:
            # RFC 7383 2.6.1: a larger total means the sender re-fragmented: start over
            state = self.pending[key] = _Pending(frag.total)
        elif frag.total < state.total:
            return None  # an older fragmentation of the same message: ignore
        state.parts.setdefault(frag.number, frag.plaintext)
        if frag.number == 1:
            state.first_payload = frag.first_payload
        if len(state.parts) < state.total:
            return None
        del self.pending[key]
        content = b"".join(state.parts[i] for i in range(1, state.total + 1))
        inner: list[Payload] = []
        decode_chain(content, state.first_payload, 0, len(content), inner)
        return Message(msg.spi_i, msg.spi_r, msg.exchange, msg.message_id,
                       [EncryptedPayload(payloads=inner, first_payload=state.first_payload)],
                       msg.initiator, msg.response, msg.version, msg.higher_version)

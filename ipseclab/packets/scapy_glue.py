"""Scapy as the REPL and display face of the codec.

Nothing here runs at import time: :func:`bind` imports Scapy's IKEv2 and IPsec
layers (which register their own bindings: UDP 500 -> IKEv2, UDP 4500 ->
ESP / NON_ESP -> IKEv2) when a caller first needs them.  The byte-level codec
in :mod:`ipseclab.packets.message` is what the engine uses; these helpers
convert between the two, and the tests check that both produce and accept the
same bytes.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

from .message import EncryptedPayload, IkeSaCrypto, Message, SkCrypto, decode, encode


@cache
def bind() -> ModuleType:
    """Load Scapy's IKEv2 and IPsec layers (and their bindings); returns ``scapy.contrib.ikev2``."""
    import scapy.layers.inet
    import scapy.layers.ipsec  # noqa: F401  (registers ESP, NON_ESP and the UDP 4500 bindings)
    from scapy.contrib import ikev2

    return ikev2


def to_scapy(data: bytes | Message, crypto: IkeSaCrypto | SkCrypto | None = None) -> Any:
    """A Scapy ``IKEv2`` packet for message bytes (or a Message, encoded with ``crypto``)."""
    ikev2 = bind()
    if isinstance(data, Message):
        data = encode(data, crypto)
    return ikev2.IKEv2(data)


def from_scapy(pkt: Any, crypto: IkeSaCrypto | SkCrypto | None = None) -> Message:
    """Our typed Message for a Scapy packet containing an IKEv2 layer (decrypting SK with ``crypto``)."""
    ikev2 = bind()
    layer = pkt.getlayer(ikev2.IKEv2) if hasattr(pkt, "getlayer") else None
    if layer is None:
        raise ValueError("the packet has no IKEv2 layer")
    return decode(bytes(layer), crypto)


def decrypted_scapy(data: bytes | Message, crypto: IkeSaCrypto | SkCrypto | None = None) -> Any:
    """A Scapy IKEv2 packet in which the SK payload is replaced by its decrypted inner payloads.

    For display (``.show()``) only: the result is not a valid wire message,
    its header's next-payload names the first inner payload.
    """
    msg = data if isinstance(data, Message) else decode(data, crypto)
    flat = Message(msg.spi_i, msg.spi_r, msg.exchange, msg.message_id, msg.all_payloads(), msg.initiator,
                   msg.response, msg.version, msg.higher_version)
    if msg.encrypted is not None and msg.encrypted.payloads is None:
        flat.payloads.append(EncryptedPayload(first_payload=msg.encrypted.first_payload,
                                              ciphertext=msg.encrypted.ciphertext))
    return to_scapy(encode(flat))

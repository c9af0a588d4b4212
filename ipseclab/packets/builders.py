"""Ready-made messages for the REPL and tests: an IKE_SA_INIT request from a proposal string in one call.

>>> from ipseclab.packets.builders import ike_sa_init_request
>>> msg, ke = ike_sa_init_request("aes256gcm16-prfsha256-ecp256")
>>> data = encode(msg)            # bytes for UDP port 500
"""

from __future__ import annotations

from ..crypto import KeyExchange, get_ke_group, random_bytes
from ..crypto.natd import nat_detection_hash
from ..crypto.proposals import TransformSpec, parse_proposal
from ..crypto.random import RandomSource
from ..crypto.registry import TransformType
from .enums import ExchangeType, NotifyType, ProtocolId
from .message import Message
from .payloads import KePayload, NoncePayload, NotifyPayload, Payload, Proposal, SaPayload, Transform


def proposal_from_specs(num: int, protocol: int, specs: list[TransformSpec], spi: bytes = b"") -> Proposal:
    """A Proposal substructure from parsed transform specs (key length attribute where needed)."""
    return Proposal(num, protocol, spi, [
        Transform(int(s.type), s.id, [(14, s.key_bits)] if s.key_bits else []) for s in specs
    ])


def sa_payload(*proposals: str, protocol: str = "ike", spi: bytes = b"") -> SaPayload:
    """An SA payload with one proposal per strongSwan-style string, numbered from 1."""
    proto = {"ike": ProtocolId.IKE, "esp": ProtocolId.ESP, "ah": ProtocolId.AH}[protocol]
    return SaPayload([
        proposal_from_specs(n, proto, parse_proposal(p, protocol), spi) for n, p in enumerate(proposals, 1)
    ])


def ike_sa_init_request(
    *proposals: str,
    spi_i: bytes | None = None,
    nonce: bytes | None = None,
    ke: KeyExchange | None = None,
    nat: tuple[str, int, str, int] | None = None,
    fragmentation: bool = True,
    rng: RandomSource = random_bytes,
) -> tuple[Message, KeyExchange]:
    """An IKE_SA_INIT request offering ``proposals``; returns the message and our key exchange.

    The KE payload uses the first proposal's first key exchange method.  With
    ``nat=(src_ip, src_port, dst_ip, dst_port)`` the NAT_DETECTION notifies are added.
    """
    if not proposals:
        proposals = ("aes256gcm16-prfsha256-ecp256",)
    sa = sa_payload(*proposals)
    group_id = next(t.id for t in sa.proposals[0].transforms if t.type == TransformType.KE)
    ke = ke or get_ke_group(group_id).generate()
    spi_i = spi_i or rng(8)
    payloads: list[Payload] = [sa, KePayload(ke.group.id, ke.public_bytes), NoncePayload(nonce or rng(32))]
    if nat:
        src, sport, dst, dport = nat
        zero = bytes(8)
        payloads.append(NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP,
                                      data=nat_detection_hash(spi_i, zero, src, sport)))
        payloads.append(NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                                      data=nat_detection_hash(spi_i, zero, dst, dport)))
    if fragmentation:
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    return Message(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, payloads, initiator=True), ke

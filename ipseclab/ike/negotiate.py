"""Proposal negotiation (RFC 7296 2.7, 3.3): what we offer, what we choose, and what a choice means.

Offers come from strongSwan-style strings.  The responder walks the initiator's proposals in the
initiator's order and takes the first one that one of its own proposals accepts, keeping per
transform type the first offered transform it allows (the initiator's preference).  The initiator
then checks that the answer is one of its own proposals with exactly one transform of each type,
and refuses anything else (RFC 7296 3.3.6).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..crypto import IkeSuite, get_encr, get_integ
from ..crypto.proposals import TransformSpec, parse_proposal
from ..crypto.registry import EsnId, TransformType, transform_name
from ..errors import RemoteProtocolError
from ..packets.builders import proposal_from_specs
from ..packets.enums import NotifyType, ProtocolId, enum_name
from ..packets.payloads import NotifyPayload, Proposal, SaPayload, Transform

_KEY_LENGTH = 14  # transform attribute type (RFC 7296 3.3.5)
_PROTOCOLS = {"ike": ProtocolId.IKE, "esp": ProtocolId.ESP, "ah": ProtocolId.AH}

TransformKey = tuple[int, int, int | None]  # (type, id, key bits)


def _key_bits(t: Transform) -> int | None:
    for attr_type, value in t.attributes:
        if attr_type == _KEY_LENGTH:
            return int(value) if isinstance(value, int) else int.from_bytes(value, "big")
    return None


def transform_key(t: Transform) -> TransformKey:
    return (t.type, t.id, _key_bits(t))


def _spec_key(s: TransformSpec) -> TransformKey:
    return (int(s.type), s.id, s.key_bits)


def _specs(proposal: str, protocol: str, ke: bool) -> list[TransformSpec]:
    """A proposal's transforms; without KE for a Child SA made in IKE_AUTH, which has no key exchange of its own
    (RFC 7296 1.2: a Child SA proposal's KE transforms apply to CREATE_CHILD_SA, as strongSwan strips them)."""
    specs = parse_proposal(proposal, protocol)
    return specs if ke else [s for s in specs if s.type != TransformType.KE]


def offer(proposals: tuple[str, ...], protocol: str, spi: bytes = b"", *, ke: bool = True) -> SaPayload:
    """An SA payload with one proposal per string, numbered from 1."""
    return SaPayload([
        proposal_from_specs(n, _PROTOCOLS[protocol], _specs(p, protocol, ke), spi)
        for n, p in enumerate(proposals, 1)
    ])


def _accepts(offered: Proposal, mine: list[TransformSpec]) -> list[Transform] | None:
    """The transforms to answer with if ``mine`` accepts ``offered``: one per type, the initiator's first."""
    allowed: dict[int, set[TransformKey]] = {}
    for s in mine:
        allowed.setdefault(int(s.type), set()).add(_spec_key(s))
    by_type: dict[int, list[Transform]] = {}
    for t in offered.transforms:
        by_type.setdefault(t.type, []).append(t)
    chosen: list[Transform] = []
    for ttype in sorted(set(allowed) | set(by_type)):
        offered_here = by_type.get(ttype, [])
        if ttype not in allowed:
            # a type we do not use is acceptable only as NONE (e.g. INTEG NONE next to an AEAD cipher)
            if any(t.id != 0 for t in offered_here):
                return None
            continue
        pick = next((t for t in offered_here if transform_key(t) in allowed[ttype]), None)
        if pick is None:
            return None
        chosen.append(pick)
    return chosen


def choose(offered: SaPayload, acceptable: tuple[str, ...], protocol: str, spi: bytes = b"", *,
           ke: bool = True) -> Proposal:
    """The responder's choice (see the module docstring); RemoteProtocolError(NO_PROPOSAL_CHOSEN) if none fits."""
    mine = [_specs(p, protocol, ke) for p in acceptable]
    proto = _PROTOCOLS[protocol]
    for op in offered.proposals:
        if op.protocol != proto:
            continue
        for specs in mine:
            picked = _accepts(op, specs)
            if picked is not None:
                return Proposal(op.num, op.protocol, spi, picked)
    offered_text = "; ".join(describe(p) for p in offered.proposals) or "nothing"
    raise RemoteProtocolError(
        f"no {protocol.upper()} proposal acceptable: offered {offered_text}; configured {', '.join(acceptable)}",
        NotifyType.NO_PROPOSAL_CHOSEN,
    )


def check_choice(answer: SaPayload, offered: SaPayload, protocol: str) -> Proposal:
    """The initiator's check of the responder's SA payload: one proposal, one of ours, one transform per type."""
    if len(answer.proposals) != 1:
        raise RemoteProtocolError(f"the responder answered {len(answer.proposals)} proposals instead of one",
                                  NotifyType.INVALID_SYNTAX)
    got = answer.proposals[0]
    ours = next((p for p in offered.proposals if p.num == got.num), None)
    types = [t.type for t in got.transforms]
    if ours is None or got.protocol != ours.protocol or len(types) != len(set(types)):
        raise RemoteProtocolError(f"the responder chose proposal {got.num} ({describe(got)}), which was not offered",
                                  NotifyType.NO_PROPOSAL_CHOSEN)
    offered_keys = {transform_key(t) for t in ours.transforms}
    stray = [t for t in got.transforms if transform_key(t) not in offered_keys]
    if stray:
        raise RemoteProtocolError(f"the responder chose transforms we did not offer: {describe(got)}",
                                  NotifyType.NO_PROPOSAL_CHOSEN)
    return got


def _one(p: Proposal, ttype: TransformType) -> Transform | None:
    return next((t for t in p.transforms if t.type == ttype), None)


def ike_suite(p: Proposal) -> IkeSuite:
    """The IkeSuite of a chosen IKE proposal (ENCR, PRF, optional INTEG, KE)."""
    encr, prf = _one(p, TransformType.ENCR), _one(p, TransformType.PRF)
    integ, ke = _one(p, TransformType.INTEG), _one(p, TransformType.KE)
    if encr is None or prf is None or ke is None:
        raise RemoteProtocolError(f"IKE proposal without ENCR, PRF and KE: {describe(p)}", NotifyType.INVALID_SYNTAX)
    return IkeSuite.from_ids(encr.id, prf.id, integ.id if integ and integ.id else None, ke.id, _key_bits(encr))


@dataclass(frozen=True, slots=True)
class ChildAlgorithms:
    """A chosen ESP/AH proposal: what the ESP/AH SAs are built with."""

    protocol: int
    encr_id: int | None
    encr_key_bits: int
    integ_id: int | None
    esn: bool

    @property
    def key_sizes(self) -> tuple[int, int]:
        """(encryption key bytes incl. salt, integrity key bytes) taken from KEYMAT per direction."""
        e = get_encr(self.encr_id, self.encr_key_bits or None).key_size if self.encr_id is not None else 0
        i = get_integ(self.integ_id).key_size if self.integ_id is not None else 0
        return e, i


def child_algorithms(p: Proposal) -> ChildAlgorithms:
    encr, integ, esn = _one(p, TransformType.ENCR), _one(p, TransformType.INTEG), _one(p, TransformType.ESN)
    if p.protocol == ProtocolId.ESP and encr is None:
        raise RemoteProtocolError(f"ESP proposal without ENCR: {describe(p)}", NotifyType.INVALID_SYNTAX)
    if p.protocol == ProtocolId.AH and (integ is None or not integ.id or encr is not None):
        raise RemoteProtocolError(f"AH proposal needs INTEG and no ENCR: {describe(p)}", NotifyType.INVALID_SYNTAX)
    bits = _key_bits(encr) if encr is not None else None
    if encr is not None and bits is None:
        bits = get_encr(encr.id).key_bits
    return ChildAlgorithms(p.protocol, encr.id if encr else None, bits or 0,
                           integ.id if integ and integ.id else None, bool(esn and esn.id == EsnId.ESN))


def ke_group(p: Proposal) -> int:
    """The KE transform of a chosen proposal (0: none, i.e. no PFS for a Child SA)."""
    t = _one(p, TransformType.KE)
    return t.id if t is not None else 0


def offered_groups(offer_: SaPayload) -> list[int]:
    """Every KE group in an offer, in order, once each."""
    out: list[int] = []
    for p in offer_.proposals:
        for t in p.transforms:
            if t.type == TransformType.KE and t.id and t.id not in out:
                out.append(t.id)
    return out


def group_asked_for(notify: NotifyPayload, offer_: SaPayload, tried: Collection[int]) -> int | None:
    """The group an INVALID_KE_PAYLOAD asks for (RFC 7296 1.3), or None.

    None unless the notify carries a two-byte group that we offered and have not sent yet: a peer
    can neither make us loop nor move us to a group we never proposed.
    """
    if notify.notify_type != NotifyType.INVALID_KE_PAYLOAD or len(notify.data) != 2:
        return None
    group = int.from_bytes(notify.data, "big")
    return group if group in offered_groups(offer_) and group not in tried else None


def describe(p: Proposal) -> str:
    """``#1 ESP: ENCR_AES_GCM_16_256/ESN_NO_ESN``-style text for messages."""
    parts = []
    for t in p.transforms:
        bits = _key_bits(t)
        parts.append(transform_name(t.type, t.id) + (f"_{bits}" if bits else ""))
    return f"#{p.num} {enum_name(ProtocolId, p.protocol)}: " + "/".join(parts)

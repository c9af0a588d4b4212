"""What the capture next to the responder shows while a lifecycle case runs, read in the clear as it grows.

A lifecycle step that waits for a rekey (``testcases.steps.Until``) ends once the wire shows the rekey done,
instead of after a fixed time that must cover the slowest daemon on the most loaded machine.  Only what
needs no keys is read: each IKE message's header (SPIs, exchange, request or response, message ID) and
each ESP packet's SPI (plain or in UDP 4500), from the pcap tcpdump is still writing (``PcapFollower``).
So the wire says when to go on, never whether the case passed: the case's check decrypts the whole
capture afterwards (``testcases.lifecycle_checks``), and a rekey that never comes makes the step time out
and the check fail.

The evidence, on the capture's clock (the host's, as the steps record's):

* a Child SA rekey by a side: its CREATE_CHILD_SA request answered; an INFORMATIONAL exchange on the same
  IKE SA after it, answered (the old Child SA's Delete); ESP in both directions on SPIs not seen before the
  request.  Done at the latest of those.
* an IKE SA rekey by a side: its CREATE_CHILD_SA request answered, then an INFORMATIONAL exchange on the same
  (old) IKE SA, answered (its Delete).
* a collision: a CREATE_CHILD_SA request from each side, both answered; two INFORMATIONAL exchanges after the
  first answer, each answered (the old SA's Delete and the redundant one's, RFC 7296 2.8.1); the last ESP each
  way on SPIs not seen before the first request.
* a restart (after a dead peer): an IKE_AUTH request from the side on a new IKE SA, answered; ESP both ways on
  SPIs not seen before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .analysis.esp import esp_of
from .errors import DecodeError
from .packets.enums import ExchangeType
from .packets.message import FLAG_RESPONSE, decode_header
from .packets.natt import IKE_PORT, NATT_PORT, ike_from_udp
from .pcap.reader import BadFrame, PcapFollower, udp_of

CREATE_CHILD_SA = int(ExchangeType.CREATE_CHILD_SA)
IKE_AUTH = int(ExchangeType.IKE_AUTH)
INFORMATIONAL = int(ExchangeType.INFORMATIONAL)


@dataclass(frozen=True, slots=True)
class IkeSeen:
    """One IKE message's clear header as captured."""

    time: float
    src: str
    spis: tuple[bytes, bytes]
    exchange: int
    response: bool
    mid: int


@dataclass(frozen=True, slots=True)
class EspSeen:
    time: float
    src: str
    dst: str
    spi: int


class Wire:
    """A capture being written, read as far as it goes on each :meth:`poll`; ``sides`` names each side's
    addresses (the steps record's), so a message's sender is known."""

    def __init__(self, pcap: Path, sides: dict[str, list[str]]) -> None:
        self.follower = PcapFollower(pcap)
        self.sides = sides
        self.ike: list[IkeSeen] = []
        self.esp: list[EspSeen] = []

    def side(self, address: str) -> str:
        return next((side for side, addrs in self.sides.items() if address in addrs), "?")

    def poll(self) -> None:
        if not self.follower.path.exists():
            return
        for pkt in self.follower.read():
            if isinstance(pkt, BadFrame):
                continue
            found = esp_of(pkt)
            if found is not None:
                if len(found[0]) >= 8:
                    self.esp.append(EspSeen(pkt.time, pkt.src, pkt.dst, int.from_bytes(found[0][:4], "big")))
                continue
            d = udp_of(pkt)
            if d is None or isinstance(d, BadFrame) or not {IKE_PORT, NATT_PORT} & {d.sport, d.dport}:
                continue
            try:
                message = ike_from_udp(d.payload, NATT_PORT if NATT_PORT in (d.sport, d.dport) else IKE_PORT)
                if message is None:
                    continue
                spi_i, spi_r, _, _, exchange, flags, mid = decode_header(message)
            except DecodeError:
                continue
            self.ike.append(IkeSeen(d.time, d.src, (spi_i, spi_r), exchange, bool(flags & FLAG_RESPONSE), mid))


def responder_link(names: list[str]) -> str:
    """The capture the lifecycle steps and checks read: the link next to the responder (behind a NAT it sees
    the initiator's translated address), else the first."""
    return next((n for n in sorted(names) if n.endswith("right")), sorted(names)[0])


# --- the evidence --------------------------------------------------------------------------------


def requests(ike: list[IkeSeen], exchange: int, since: float, src_side: Callable[[str], str] | None = None,
             side: str = "") -> list[IkeSeen]:
    """First transmissions of requests of ``exchange`` after ``since`` (from ``side`` if given)."""
    seen: set[tuple[tuple[bytes, bytes], int, str]] = set()
    out = []
    for r in ike:
        key = (r.spis, r.mid, r.src)
        if r.exchange != exchange or r.response or r.time <= since or key in seen:
            continue
        seen.add(key)
        if side and src_side is not None and src_side(r.src) != side:
            continue
        out.append(r)
    return out


def answer(ike: list[IkeSeen], req: IkeSeen) -> IkeSeen | None:
    """The first response to ``req`` (same IKE SA, exchange and message ID, from the other peer)."""
    return next((r for r in ike if r.response and r.exchange == req.exchange and r.mid == req.mid
                 and r.spis == req.spis and r.src != req.src and r.time >= req.time), None)


def _delete_after(ike: list[IkeSeen], after: float, spis: tuple[bytes, bytes]) -> float | None:
    """When the first INFORMATIONAL exchange on ``spis`` started after ``after`` was answered."""
    for req in requests(ike, INFORMATIONAL, after):
        resp = answer(ike, req) if req.spis == spis else None
        if resp is not None:
            return resp.time
    return None


def _new_both_ways(esp: list[EspSeen], old: set[int], after: float) -> float | None:
    """When ESP on SPIs not in ``old`` had been seen in both directions after ``after``."""
    first: dict[tuple[str, str], float] = {}
    for p in esp:
        if p.time > after and p.spi not in old:
            first.setdefault((p.src, p.dst), p.time)
    return max(first.values()) if len(first) >= 2 else None


def child_rekey_done(wire: Wire, side: str, since: float) -> float | None:
    """When a Child SA rekey that ``side`` started after ``since`` was done on the wire (module docstring)."""
    for req in requests(wire.ike, CREATE_CHILD_SA, since, wire.side, side):
        resp = answer(wire.ike, req)
        if resp is None:
            continue
        deleted = _delete_after(wire.ike, resp.time, req.spis)
        old = {p.spi for p in wire.esp if p.time < req.time}
        moved = _new_both_ways(wire.esp, old, resp.time)
        if deleted is not None and moved is not None:
            return max(deleted, moved)
    return None


def ike_rekey_done(wire: Wire, side: str, since: float) -> float | None:
    """When an IKE SA rekey that ``side`` started after ``since`` was done: answered, the old SA's Delete too."""
    for req in requests(wire.ike, CREATE_CHILD_SA, since, wire.side, side):
        resp = answer(wire.ike, req)
        deleted = _delete_after(wire.ike, resp.time, req.spis) if resp is not None else None
        if deleted is not None:
            return deleted
    return None


def collision_done(wire: Wire, side: str, since: float) -> float | None:
    """When both sides' crossed Child SA rekeys after ``since`` were done: both answered, two Deletes
    answered, the last ESP each way on SPIs not seen before the first request (``side`` is not used)."""
    reqs = requests(wire.ike, CREATE_CHILD_SA, since)
    firsts = [next((r for r in reqs if wire.side(r.src) == s), None) for s in ("left", "right")]
    if None in firsts:
        return None
    answers = [answer(wire.ike, r) for r in firsts if r is not None]
    if None in answers:
        return None
    start = min(r.time for r in firsts if r is not None)
    first_answer = min(r.time for r in answers if r is not None)
    deletes = [answer(wire.ike, r) for r in requests(wire.ike, INFORMATIONAL, first_answer)]
    if len(deletes) < 2 or None in deletes:
        return None
    old = {p.spi for p in wire.esp if p.time < start}
    last: dict[tuple[str, str], EspSeen] = {}
    for p in wire.esp:
        last[(p.src, p.dst)] = p
    moved = _new_both_ways(wire.esp, old, first_answer)
    if moved is None or any(p.spi in old for p in last.values()):
        return None
    return max(moved, *(r.time for r in deletes if r is not None))


def restart_done(wire: Wire, side: str, since: float) -> float | None:
    """When ``side`` had set up a new IKE SA after ``since`` (an IKE_AUTH request under an initiator SPI other
    than the capture's first IKE SA's, answered) and ESP ran both ways on SPIs not seen before that request."""
    first = wire.ike[0].spis[0] if wire.ike else None
    for req in requests(wire.ike, IKE_AUTH, since, wire.side, side):
        resp = answer(wire.ike, req)
        if req.spis[0] == first or resp is None:
            continue
        moved = _new_both_ways(wire.esp, {p.spi for p in wire.esp if p.time < req.time}, resp.time)
        if moved is not None:
            return moved
    return None


EVIDENCE: dict[str, Callable[[Wire, str, float], float | None]] = {
    "child-rekey": child_rekey_done,
    "ike-rekey": ike_rekey_done,
    "collision": collision_done,
    "restart": restart_done,
}

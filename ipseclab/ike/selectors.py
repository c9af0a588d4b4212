"""Traffic selector narrowing (RFC 7296 2.9) on the wire form (``packets.payloads.TrafficSelector``).

The responder answers with the intersection of what the initiator proposed and what its own
configuration allows; an empty intersection is TS_UNACCEPTABLE.  The initiator checks that what
came back is inside what it proposed.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ..packets.payloads import IPAddress, TrafficSelector

_TS_IPV4, _TS_IPV6 = 7, 8


def from_cidrs(cidrs: tuple[str, ...]) -> list[TrafficSelector]:
    """Selectors for configured prefixes; made once per tuple (the engine never changes a selector in place)."""
    return list(_from_cidrs(tuple(cidrs)))


@lru_cache(maxsize=1024)
def _from_cidrs(cidrs: tuple[str, ...]) -> tuple[TrafficSelector, ...]:
    return tuple(TrafficSelector.from_network(c) for c in cidrs)


def _addr(a: IPAddress | bytes) -> int:
    return int(a) if not isinstance(a, bytes) else int.from_bytes(a, "big")


def _intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    if a.ts_type != b.ts_type or a.ts_type not in (_TS_IPV4, _TS_IPV6):
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    lo, hi = max(_addr(a.start_addr), _addr(b.start_addr)), min(_addr(a.end_addr), _addr(b.end_addr))
    plo, phi = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if lo > hi or plo > phi:
        return None
    make = ipaddress.IPv4Address if a.ts_type == _TS_IPV4 else ipaddress.IPv6Address
    return TrafficSelector(a.ts_type, a.ip_protocol or b.ip_protocol, plo, phi, make(lo), make(hi))


def narrow(proposed: list[TrafficSelector], allowed: list[TrafficSelector]) -> list[TrafficSelector]:
    """Every non-empty intersection of a proposed selector with an allowed one, in the proposed order."""
    out = []
    for p in proposed:
        for a in allowed:
            x = _intersect(p, a)
            if x is not None and x not in out:
                out.append(x)
    return out


def within(narrowed: list[TrafficSelector], proposed: list[TrafficSelector]) -> bool:
    """Whether every selector of ``narrowed`` lies inside one of ``proposed`` (the initiator's check)."""
    return bool(narrowed) and all(any(_intersect(n, p) == n for p in proposed) for n in narrowed)

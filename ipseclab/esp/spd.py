"""A Security Policy Database with its SA database (RFC 4301 4.4), sans-I/O.

Outbound, the first policy whose selectors match the packet decides: PROTECT hands it
to the policy's outbound SA, BYPASS lets it out in clear, DISCARD drops it.  Inbound,
ESP/AH packets are demultiplexed by (protocol, SPI) to the inbound SA, which checks the
decrypted packet against its own selectors; clear packets need a BYPASS policy.
Each refusal raises its own error type and bumps a counter here or on the SA.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import ConfigError, NoPolicyError, TruncatedPacketError, UnknownSpiError
from ..packets.natt import KEEPALIVE, NATT_PORT, NON_ESP_MARKER
from .ah import AhSA
from .esp import EspSA
from .iphdr import PROTO_AH, PROTO_ESP, PROTO_UDP, upper_layer
from .ts import Selectors, TrafficSelector, packet_flow

_SPI = struct.Struct("!I")
_H = struct.Struct("!H")

Sa = EspSA | AhSA


class Action(StrEnum):
    """What a policy does with the packets its selectors match (RFC 4301 4.4.1)."""

    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


@dataclass(slots=True)
class Policy:
    """One SPD entry: selectors, what to do, and for PROTECT the SA pair."""

    selectors: Selectors
    action: Action = Action.PROTECT
    outbound: Sa | None = None
    inbound: Sa | None = None
    name: str = ""


@dataclass(slots=True)
class SpdCounters:
    outbound_discarded: int = 0
    no_policy: int = 0
    unknown_spi: int = 0
    inbound_bypassed: int = 0
    keepalives: int = 0


@dataclass(slots=True)
class Spd:
    """An ordered list of policies and the inbound SAs by (protocol, SPI)."""

    policies: list[Policy] = field(default_factory=list)
    counters: SpdCounters = field(default_factory=SpdCounters)
    _inbound: dict[tuple[int, int], Sa] = field(default_factory=dict)

    def add(
        self,
        local: TrafficSelector | Sequence[TrafficSelector],
        remote: TrafficSelector | Sequence[TrafficSelector],
        action: Action | str = Action.PROTECT,
        *,
        outbound: Sa | None = None,
        inbound: Sa | None = None,
        name: str = "",
    ) -> Policy:
        """Append a policy; PROTECT needs an SA.  The inbound SA gets the policy's selectors to check."""
        sel = Selectors(_tuple(local), _tuple(remote))
        act = Action(action)
        if act is Action.PROTECT and outbound is None and inbound is None:
            raise ConfigError(f"a PROTECT policy for {sel} needs an SA")
        if inbound is not None:  # checked on receipt; outbound packets were matched by the SPD already
            inbound.selectors = sel
            self._inbound[(PROTO_AH if isinstance(inbound, AhSA) else PROTO_ESP, inbound.spi)] = inbound
        policy = Policy(sel, act, outbound, inbound, name)
        self.policies.append(policy)
        return policy

    def add_inbound_sa(self, sa: Sa, policy: Policy | None = None) -> None:
        """Register an inbound SA (rekeying: a new SA next to the old one), with ``policy``'s selectors."""
        if policy is not None:
            sa.selectors = policy.selectors
        self._inbound[(PROTO_AH if isinstance(sa, AhSA) else PROTO_ESP, sa.spi)] = sa

    def remove_inbound_sa(self, sa: Sa) -> None:
        self._inbound.pop((PROTO_AH if isinstance(sa, AhSA) else PROTO_ESP, sa.spi), None)

    def remove(self, policy: Policy) -> None:
        """Take a policy out (its Child SA was deleted); its inbound SA stays until ``remove_inbound_sa``."""
        self.policies = [p for p in self.policies if p is not policy]

    def sa_for(self, proto: int, spi: int) -> Sa | None:
        """The inbound SA for (PROTO_ESP or PROTO_AH, SPI), e.g. for ESP bytes a UDP socket handed over
        without their IP header; None (counted as ``unknown_spi``) when there is none."""
        sa = self._inbound.get((proto, spi))
        if sa is None:
            self.counters.unknown_spi += 1
        return sa

    def lookup(self, packet: bytes) -> Policy:
        """The first policy whose selectors match an outbound packet; NoPolicyError when none does."""
        flow = packet_flow(packet)
        for p in self.policies:
            if p.selectors.outbound(flow):
                return p
        self.counters.no_policy += 1
        raise NoPolicyError(f"no SPD policy matches outbound packet {flow}")

    def outbound(self, packet: bytes) -> bytes | None:
        """The packet to send (protected or bypassed), or None when a DISCARD policy drops it."""
        p = self.lookup(packet)
        if p.action is Action.DISCARD:
            self.counters.outbound_discarded += 1
            return None
        if p.action is Action.BYPASS:
            return packet
        if p.outbound is None:
            raise NoPolicyError(f"policy {p.name or p.selectors} has no outbound SA")
        return p.outbound.protect(packet)

    def inbound_sa(self, packet: bytes) -> Sa | None:
        """The inbound SA an ESP/AH (or ESP-in-UDP 4500) packet is for; None for a clear packet.

        UnknownSpiError (counted) when the SPI matches no SA.
        """
        nh_off, off, end = upper_layer(packet)
        proto = packet[nh_off]
        if proto == PROTO_UDP:
            if end - off < 8 or _H.unpack_from(packet, off + 2)[0] != NATT_PORT:
                return None
            body = packet[off + 8 : end]
            if body == KEEPALIVE or body[:4] == NON_ESP_MARKER:
                return None
            proto, spi_at = PROTO_ESP, off + 8
        elif proto == PROTO_ESP:
            spi_at = off
        elif proto == PROTO_AH:
            spi_at = off + 4
        else:
            return None
        if spi_at + 4 > end:
            raise TruncatedPacketError("packet too short for an SPI", spi_at)
        spi = _SPI.unpack_from(packet, spi_at)[0]
        sa = self._inbound.get((proto, spi))
        if sa is None:
            self.counters.unknown_spi += 1
            raise UnknownSpiError(f"{'AH' if proto == PROTO_AH else 'ESP'} packet for unknown SPI {spi:#010x}", spi)
        return sa

    def inbound(self, packet: bytes) -> bytes | None:
        """The packet to deliver after IPsec processing, or None (dummy, keepalive).

        Clear packets are delivered only if a BYPASS policy covers them (NoPolicyError otherwise).
        """
        sa = self.inbound_sa(packet)
        if sa is not None:
            return sa.unprotect(packet)
        if _is_keepalive(packet):
            self.counters.keepalives += 1
            return None
        flow = packet_flow(packet)
        for p in self.policies:
            if p.action is Action.BYPASS and p.selectors.inbound(flow):
                self.counters.inbound_bypassed += 1
                return packet
        self.counters.no_policy += 1
        raise NoPolicyError(f"clear inbound packet {flow} matches no BYPASS policy")


def _is_keepalive(packet: bytes) -> bool:
    nh_off, off, end = upper_layer(packet)
    return packet[nh_off] == PROTO_UDP and packet[off + 8 : end] == KEEPALIVE


def _tuple(ts: TrafficSelector | Sequence[TrafficSelector]) -> tuple[TrafficSelector, ...]:
    return (ts,) if isinstance(ts, TrafficSelector) else tuple(ts)

"""The endpoint's data plane, sans-I/O: every installed Child SA pair, the SPD that picks one for each packet
the TUN device hands over, and the inbound checks of RFC 4301 5.2.  The runner does the I/O.

Why a layer between the runner and ``esp/``: the engine speaks in Child SA events (established, outbound
moved, deleted) and the kernel in packets; this turns one into the other.  Each ``ChildSaEstablished``
installs a pair: its inbound SA is registered at once (by SPI) and keeps working until its
``ChildSaDeleted``, so during a rekey both the old and the new pair accept traffic; its outbound SA takes
over the SPD policy of the pair it replaces only when the engine says so (``outbound`` on the event, else
a later ``ChildSaOutbound``).  A pair made by CREATE_CHILD_SA for other selectors gets its own policy.

Inbound (RFC 4301 5.2): a packet that decrypts but lies outside its SA's selectors is dropped and counted
(``policy_mismatch``, the SA's own check); replays, bad ICVs, unknown SPIs and malformed packets are dropped
and counted under their own names.  Clear-text traffic that policy says must be protected never reaches
this class: the kernel drops it (``endpoint/tun.py`` routes the protected selectors through the TUN device
and turns strict reverse-path filtering on) and the runner reads the kernel's count into ``clear_dropped``.

Transport mode behind a NAT (RFC 3948 3.1.2): the peer's TCP/UDP checksum was computed over its own view of
the addresses, so decapsulated packets get it recomputed before the kernel sees them; the selectors of such
a pair are the addresses actually on the wire (ours, and the peer's as its packets arrive), as the kernel's
policies are for strongSwan and Libreswan.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import (
    DecodeError,
    IntegrityError,
    IpsecLabError,
    NoPolicyError,
    ReplayError,
    SelectorMismatchError,
    UnknownSpiError,
)
from ..esp import AhSA, EspSA
from ..esp.iphdr import PROTO_ESP, PROTO_NONE, OuterHeader, fix_l4_checksum, insertion_point, tunnel_inner
from ..esp.spd import Policy, Spd
from ..esp.ts import Selectors, TrafficSelector
from ..ike.events import ChildSaEstablished
from ..packets import payloads
from .children import esp_sas

Sa = EspSA | AhSA


@dataclass(slots=True)
class DataPlaneCounters:
    """What the data plane dropped and why (``status`` and ``counters.json``; names read by verdicts)."""

    packets_out: int = 0
    packets_in: int = 0
    no_policy: int = 0  # a packet from the TUN that no installed Child SA's selectors cover: dropped
    policy_mismatch: int = 0  # decrypted, but outside its SA's selectors (RFC 4301 5.2): dropped
    clear_dropped: int = 0  # clear traffic that policy says must be protected (the kernel's count, see tun.py)
    replay: int = 0  # a sequence number already seen or left of the window (RFC 4303 3.4.3)
    integrity: int = 0  # the ICV did not verify (RFC 4303 3.4.4, RFC 4302 3.4.4)
    unknown_spi: int = 0  # ESP/AH for no inbound SA of ours
    malformed: int = 0  # does not parse (truncated, bad padding, not an IP packet inside)
    checksum_fixed: int = 0  # TCP/UDP checksums recomputed after transport-mode NAT-T (RFC 3948 3.1.2)
    dummies_in: int = 0  # authentic dummy packets (next header 59, RFC 4303 2.6): dropped, never handed to the TUN
    dummies_out: int = 0  # dummy packets we sent (the ``dummy`` command)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Pair:
    """One installed Child SA pair; ``policy`` is set while it carries our outbound traffic."""

    spi_in: int
    spi_out: int
    out: Sa
    inn: Sa
    selectors: Selectors
    mode: str
    udp_encap: bool
    policy: Policy | None = None


class Outbound(NamedTuple):
    """What to send for one packet from the TUN: ``data`` is ESP bytes for the UDP 4500 socket when ``udp``,
    else a whole IP packet (the SA built the outer or spliced header) for a raw socket."""

    pair: Pair
    data: bytes
    udp: bool


def esp_selector(ts: payloads.TrafficSelector) -> TrafficSelector:
    """The data plane's selector for an IKE Traffic Selector payload's (RFC 7296 3.13.1)."""
    start, end = ts.start_addr, ts.end_addr
    lo = int(start) if not isinstance(start, bytes) else int.from_bytes(start, "big")
    hi = int(end) if not isinstance(end, bytes) else int.from_bytes(end, "big")
    return TrafficSelector(4 if ts.ts_type == 7 else 6, lo, hi, ts.ip_protocol, ts.start_port, ts.end_port)


def pair_selectors(child: ChildSaEstablished, local: str, peer: str) -> Selectors:
    """The selectors a pair's packets must match; transport mode in UDP uses the addresses on the wire."""
    loc = tuple(esp_selector(t) for t in child.local_ts)
    rem = tuple(esp_selector(t) for t in child.remote_ts)
    if child.mode == "transport" and child.udp_encap:
        mine, theirs = ipaddress.ip_address(local), ipaddress.ip_address(peer)
        loc = tuple(TrafficSelector(mine.version, int(mine), int(mine), t.proto, t.start_port, t.end_port)
                    for t in loc)
        rem = tuple(TrafficSelector(theirs.version, int(theirs), int(theirs), t.proto, t.start_port, t.end_port)
                    for t in rem)
    return Selectors(loc, rem)


def selector_networks(selectors: tuple[TrafficSelector, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The address ranges of ``selectors`` as CIDR blocks (what a route can say)."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for ts in selectors:
        fam = ipaddress.IPv4Address if ts.version == 4 else ipaddress.IPv6Address
        for net in ipaddress.summarize_address_range(fam(ts.start), fam(ts.end)):
            if net not in out:
                out.append(net)
    return out


@dataclass(slots=True)
class DataPlane:
    """Every installed pair of one endpoint (see the module docstring); ``local`` is our transit address."""

    local: str
    replay_window: int = 64
    tfc_padding: int = 0  # pad outbound tunnel-mode ESP inner packets to this many bytes (RFC 4303 2.7); 0: off
    spd: Spd = field(default_factory=Spd)
    pairs: dict[int, Pair] = field(default_factory=dict)  # by inbound SPI
    counters: DataPlaneCounters = field(default_factory=DataPlaneCounters)
    _by_out: dict[int, Pair] = field(default_factory=dict)  # by outbound SPI
    _headers: dict[tuple[str, str], OuterHeader] = field(default_factory=dict)

    # -- what the engine says ----------------------------------------------------------------------

    def install(self, child: ChildSaEstablished, peer: str) -> Pair:
        """Install the pair of a ``ChildSaEstablished``; its outbound SA carries traffic if the event says so."""
        out, inn = esp_sas(child, self.local, peer, replay_window=self.replay_window, tfc_padding=self.tfc_padding)
        sel = pair_selectors(child, self.local, peer)
        inn.selectors = sel  # RFC 4301 5.2: checked on every packet it decrypts
        pair = Pair(child.spi_in, child.spi_out, out, inn, sel, child.mode, child.udp_encap)
        self.spd.add_inbound_sa(inn)
        self.pairs[child.spi_in] = pair
        self._by_out[child.spi_out] = pair
        if child.outbound:  # False: a peer's rekey (outbound moves on ChildSaOutbound) or a collision's spare
            self.carry(child.spi_in, child.rekeyed)
        return pair

    def carry(self, spi_in: int, replaced: int | None = None) -> None:
        """Make pair ``spi_in`` carry our outbound traffic, in place of pair ``replaced`` when it did."""
        pair = self.pairs.get(spi_in)
        if pair is None or pair.policy is not None:
            return
        old = self.pairs.get(replaced) if replaced is not None else None
        if old is not None and old.policy is not None:
            old.policy.outbound = pair.out
            pair.policy, old.policy = old.policy, None
        else:
            pair.policy = self.spd.add(pair.selectors.local, pair.selectors.remote, outbound=pair.out,
                                       name=f"{spi_in:#010x}")

    def remove(self, spi_in: int) -> Pair | None:
        """Forget a deleted pair: its inbound SA stops accepting, its policy (if it still has one) goes."""
        pair = self.pairs.pop(spi_in, None)
        if pair is None:
            return None
        self._by_out.pop(pair.spi_out, None)
        self.spd.remove_inbound_sa(pair.inn)
        if pair.policy is not None:
            self.spd.remove(pair.policy)
        return pair

    def clear(self) -> list[Pair]:
        """Forget every pair (the IKE SA is gone and its Child SAs with it)."""
        return [p for spi in list(self.pairs) if (p := self.remove(spi)) is not None]

    # -- packets -----------------------------------------------------------------------------------

    def outbound(self, packet: bytes) -> Outbound | None:
        """Protect a packet from the TUN with the SA its policy names; None (counted) when none covers it."""
        try:
            policy = self.spd.lookup(packet)
        except NoPolicyError:
            self.counters.no_policy += 1
            return None
        except DecodeError:
            self.counters.malformed += 1
            return None
        sa = policy.outbound
        pair = self._by_out.get(sa.spi) if sa is not None else None
        if sa is None or pair is None:
            self.counters.no_policy += 1
            return None
        try:
            if pair.udp_encap and isinstance(sa, EspSA):
                if pair.mode == "tunnel":
                    nh, _ds, _df, inner = tunnel_inner(packet)
                    data = sa.encapsulate(inner, nh)
                else:
                    nh_off, cut, end = insertion_point(packet)
                    data = sa.encapsulate(packet[cut:end], packet[nh_off])
                out = Outbound(pair, data, True)
            else:
                out = Outbound(pair, sa.protect(packet), False)
        except DecodeError:
            self.counters.malformed += 1
            return None
        self.counters.packets_out += 1
        return out

    def dummies(self, size: int, count: int, peer: str) -> list[Outbound]:
        """Dummy packets (next header 59, RFC 4303 2.6) of ``size`` payload bytes, ``count`` on every ESP pair
        that carries our outbound traffic, as ``outbound`` gives packets (``peer``: the transport-mode outer
        destination); the peer drops them unseen.  They are not TFC-padded: ``size`` is the whole payload."""
        out = []
        for pair in self.pairs.values():
            sa = pair.out
            if pair.policy is None or not isinstance(sa, EspSA):
                continue
            for _ in range(count):
                if pair.udp_encap:
                    out.append(Outbound(pair, sa.encapsulate(bytes(size), PROTO_NONE), True))
                else:
                    out.append(Outbound(pair, sa.dummy_packet(size, src=self.local, dst=peer), False))
                self.counters.dummies_out += 1
        return out

    def inbound(self, packet: bytes) -> tuple[Pair, bytes] | None:
        """The pair and the packet to hand to the kernel for a whole ESP/AH packet; None (counted) if dropped."""
        c = self.counters
        try:
            sa = self.spd.inbound_sa(packet)
            if sa is None:
                return None  # not ESP or AH: not ours to judge here
            inner = sa.unprotect(packet)
        except UnknownSpiError:
            c.unknown_spi += 1
            return None
        except ReplayError:
            c.replay += 1
            return None
        except IntegrityError:
            c.integrity += 1
            return None
        except SelectorMismatchError:
            c.policy_mismatch += 1
            return None
        except IpsecLabError:
            c.malformed += 1
            return None
        pair = self.pairs.get(sa.spi)
        if inner is None or pair is None:
            if inner is None and isinstance(sa, EspSA):  # our SAs have no UDP of their own: None is no keepalive
                c.dummies_in += 1  # a dummy packet (RFC 4303 2.6): authentic, and dropped without a word
            return None
        if pair.mode == "transport" and pair.udp_encap:
            inner = fix_l4_checksum(inner)
            c.checksum_fixed += 1
        c.packets_in += 1
        return pair, inner

    def inbound_udp(self, esp: bytes, src: str, dst: str) -> tuple[Pair, bytes] | None:
        """As ``inbound`` for ESP bytes that came on UDP 4500 from ``src`` to ``dst`` (RFC 3948 3.1).

        The packet is rebuilt as the ESP packet it stands for (the header the peer's kernel would have
        restored: its address as we see it, ours), so one path checks everything and transport mode
        restores its header from the addresses actually on the wire.
        """
        head = self._headers.get((src, dst))
        if head is None:
            head = self._headers[(src, dst)] = OuterHeader(src, dst)
        return self.inbound(head.build(PROTO_ESP, len(esp)) + esp)

    def ipv6_packet(self, payload: bytes, proto: int, src: str, dst: str) -> bytes:
        """An IPv6 packet around what a raw IPv6 socket hands over (the payload only), for ``inbound``.

        The fields a raw socket leaves out are the ones AH treats as mutable (RFC 4302 3.3.3.1.2: traffic
        class, flow label, hop limit) or that follow from the payload, so the ICV still checks.
        """
        head = self._headers.get((src, dst))
        if head is None:
            head = self._headers[(src, dst)] = OuterHeader(src, dst)
        return head.build(proto, len(payload)) + payload

"""The SA lifecycle between peers (issue 11): rekeys by each side, a collision, a dead peer, volume
lifetimes, an additional Child SA, TCP in transport mode behind a NAT.

Each case declares per-side settings (short lifetimes so a cell takes seconds, not hours) and the
steps the runner performs once the first Child SA is up; its check reads the decrypted trace and the
steps' record (``lifecycle_checks``).  Timings: a Child SA rekey at lifetime - margin = 3 s after the SA
came up (an IKE SA rekey at 4 s), pings every 0.2 s; a gap bound of 1 s is four missed pings in a row (the
daemons' make-before-break rekeys lost none here: the longest silence measured was 0.22 s), so an SA torn
down before its successor carries traffic fails the case.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.pcap.trace import IpsecPacket, Trace

from .base import TestCase
from .lifecycle_checks import (
    additional_children,
    answered,
    by_side,
    check_child_replaced,
    check_gap,
    check_keys_cover_every_sa,
    check_pings_answered,
    child_rekeys,
    esp_spis,
    fail,
    ike_rekeys,
    response_to,
    step_entries,
    steps_record,
    traffic_span,
    view,
)
from .steps import Delay, Kill, Ping, Rekey, StartChild, TcpTransfer, Wait, WaitSasGone


def _esp_where(p: IpsecPacket) -> str:
    return f"frame {p.frame} spi 0x{p.spi:08x} {p.src}->{p.dst}"


GAP_BOUND = 1.0  # seconds of silence allowed in one direction while pings run every 0.2 s
REKEY_AT = 3  # seconds after establishment: lifetime 10 - margin 7 (each new Child SA again 3 s later)
CHILD_SHORT = (("child_lifetime", 10), ("child_rekey_margin", 7), ("ike_rekey_margin", 7))
# the IKE SA rekeys at lifetime 12 - margin 8 = 4 s, each new one again 4 s later: the initiator's Child SA
# rekey goes out midway between two of its own (it queues its exchanges, so they cannot cross)
IKE_REKEY_AT = 4
IKE_SHORT = (("ike_lifetime", 12), ("ike_rekey_margin", 8), ("child_rekey_margin", 8))
# the responder's IKE rekeys (lifetime 14 - margin 8 = 6 s, 12 s, ...; Libreswan: 10 s, then 16 s, each Delete
# of the old SA 1 s later) could cross the initiator's Child SA rekey: it goes out at 13 s, a second or more
# from any of them
IKE_SHORT_RESPONDER = (("ike_lifetime", 14), ("ike_rekey_margin", 8), ("child_rekey_margin", 8))
# pings from the SA's start to 4 s after the rekey: 15 on the old Child SA, 20 on the new one
TRAFFIC = (Ping(7), Wait(7.5))
# Libreswan 4.10 as the responder rekeys at lifetime - margin/2 (seen: 12.7 s after the SA came up with
# lifetime 20, margin 14), strongSwan at lifetime - margin: the responder cases run long enough for both
RESPONDER_REKEY_AT = 6.5
RESPONDER_TRAFFIC = (Ping(10.5), Wait(11))


@dataclass(frozen=True)
class ChildRekeyCase(TestCase):
    """A Child SA rekey started by ``rekeyer`` (or by both at once: a collision)."""

    rekeyer: str = "left"
    collision: bool = False
    gap_bound: float = GAP_BOUND

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        record = steps_record(trace)
        rekeys = child_rekeys(v)
        if not rekeys:
            fail(f"no decrypted CREATE_CHILD_SA with REKEY_SA on {v.link}")
        sides = ("left", "right") if self.collision else (self.rekeyer,)
        firsts = []
        for side in sides:
            mine = by_side(v, rekeys, side)
            if not mine:
                fail(f"the {side} peer started no Child SA rekey; rekeys seen: "
                     + "; ".join(f"frame {r.frame} from {r.src} ({v.side(r.src)})" for r in rekeys))
            firsts.append(mine[0])
        if not self.collision:
            others = [r for r in rekeys if v.side(r.src) != self.rekeyer and r.time < firsts[0].time]
            if others:
                fail(f"the {v.side(others[0].src)} peer rekeyed first (frame {others[0].frame}), not the "
                     f"{self.rekeyer} one")
        else:
            a, b = firsts
            ra, rb = response_to(v, a), response_to(v, b)
            # a collision: each side's request left before the other's response came (RFC 7296 2.8.1)
            if not (b.time < (ra.time if ra else float("inf")) and a.time < (rb.time if rb else float("inf"))):
                fail(f"the rekeys did not cross: left's frame {a.frame} at {a.time:.3f} answered at "
                     f"{ra.time if ra else float('nan'):.3f}, right's frame {b.frame} at {b.time:.3f} answered at "
                     f"{rb.time if rb else float('nan'):.3f}")
        first = min(firsts, key=lambda r: r.time)
        resp = answered(v, first, "the Child SA rekey")
        if self.collision:
            resp = max((response_to(v, r) or resp for r in firsts), key=lambda r: r.time)
        old, _ = check_child_replaced(v, first, resp)
        if self.collision:  # the redundant SA went too: the last packet each way is on one new Child SA
            last = {(p.src, p.dst): p for p in v.esp}
            if len(last) != 2 or {p.spi for p in last.values()} & old or len({p.spi for p in last.values()}) != 2:
                fail("after the collision the traffic should end on one new Child SA; the last packets were "
                     + "; ".join(_esp_where(p) for p in last.values()))
        start, end = traffic_span(record, v)
        check_gap(v, start, end, self.gap_bound)
        check_pings_answered(record)


@dataclass(frozen=True)
class IkeRekeyCase(TestCase):
    """An IKE SA rekey started by ``rekeyer``; then a Child SA rekey runs on the new IKE SA."""

    rekeyer: str = "left"

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        record = steps_record(trace)
        rekeys = ike_rekeys(v)
        mine = by_side(v, rekeys, self.rekeyer)
        if not mine:
            fail(f"the {self.rekeyer} peer started no IKE SA rekey (decrypted CREATE_CHILD_SA with an IKE "
                 f"proposal); seen: " + ("; ".join(f"frame {r.frame} from {v.side(r.src)}" for r in rekeys)
                                         or "none"))
        req = mine[0]
        resp = answered(v, req, "the IKE SA rekey")
        old = (req.spi_i, req.spi_r)
        deleted = [r for r in v.ike if r.exchange == 37 and r.decrypted and (r.spi_i, r.spi_r) == old
                   and (1, 0) in r.deletes and r.time >= resp.time]
        if not deleted:
            fail(f"no decrypted Delete of the old IKE SA {old[0]:016x}/{old[1]:016x} after {resp.frame}")
        later = [r for r in v.ike if r.time > resp.time and r.encrypted and r.spi_r
                 and (r.spi_i, r.spi_r) != old and r.decrypted]
        if not later:
            fail(f"no decrypted message on a new IKE SA after the rekey (frame {resp.frame}): nothing ran on it")
        follow = [r for r in child_rekeys(v) if (r.spi_i, r.spi_r) != old and r.time > resp.time]
        if not follow:
            fail("the Child SA rekey after the IKE rekey did not run on the new IKE SA (decrypted REKEY_SA on "
                 f"new SPIs); messages on new SPIs: frames {', '.join(str(r.frame) for r in later[:6])}")
        check_child_replaced(v, follow[0], answered(v, follow[0], "the Child SA rekey on the new IKE SA"))
        start, end = traffic_span(record, v)
        check_gap(v, start, end, GAP_BOUND)
        check_pings_answered(record)


@dataclass(frozen=True)
class DeadPeerCase(TestCase):
    """The responder's daemon is killed (its kernel SAs flushed); the initiator's DPD must find it dead."""

    dead_within: float = 20.0

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        record = steps_record(trace)
        kills, gone = step_entries(record, "Kill"), step_entries(record, "WaitSasGone")
        if not kills or not gone:
            fail("the steps record lacks the Kill or the WaitSasGone step")
        killed = kills[0]["end"]
        probes = [r for r in v.ike if r.exchange == 37 and not r.response and r.time > killed
                  and v.side(r.src) == "left"]
        if not probes:
            fail(f"no INFORMATIONAL request from the left peer after the right one was killed at {killed:.3f}")
        empty = [r for r in probes if r.decrypted and r.payloads == (46,)]
        if not empty:
            fail(f"the left peer's INFORMATIONAL requests after the kill are not empty liveness checks: frames "
                 f"{', '.join(str(r.frame) for r in probes[:5])} payloads {probes[0].payloads}")
        same = [r for r in probes if r.message_id == empty[0].message_id]
        if len(same) < 2:
            fail(f"the liveness check {empty[0].frame} #{empty[0].message_id} was never retransmitted")
        answers = [r for r in v.ike if r.response and r.time > killed and r.exchange == 37]
        if answers:
            fail(f"the killed peer answered frame {answers[0].frame}")
        if not gone[0].get("gone"):
            fail(f"the left peer still held {gone[0].get('sas_left')} kernel SAs {gone[0].get('waited')} s after "
                 "the kill: it did not declare the peer dead")
        took = gone[0]["gone_at"] - killed
        if took > self.dead_within:
            fail(f"the left peer took {took:.1f} s to give the dead peer up (bound {self.dead_within} s)")


@dataclass(frozen=True)
class VolumeRekeyCase(TestCase):
    """A Child SA rekeyed by ``left`` once it carried ``child_rekey_bytes`` (its time lifetime is hours)."""

    min_bytes: int = 0

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        record = steps_record(trace)
        mine = by_side(v, child_rekeys(v), "left")
        if not mine:
            fail("the left peer started no Child SA rekey: the volume limit did not act")
        req = mine[0]
        old = esp_spis(p for p in v.esp if p.time < req.time)
        carried: dict[tuple[str, str], int] = {}
        for p in v.esp:
            if p.spi in old and p.time < req.time:
                carried[(p.src, p.dst)] = carried.get((p.src, p.dst), 0) + p.length
        if max(carried.values(), default=0) < self.min_bytes:
            fail(f"the rekey (frame {req.frame}) came before the old Child SA carried {self.min_bytes} bytes in a "
                 f"direction: {carried}")
        check_child_replaced(v, req, answered(v, req, "the Child SA rekey"))
        start, end = traffic_span(record, v)
        check_gap(v, start, end, GAP_BOUND)
        check_pings_answered(record)


@dataclass(frozen=True)
class AdditionalChildCase(TestCase):
    """A second Child SA (other subnets) created by CREATE_CHILD_SA under the IKE SA; both carry pings."""

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        record = steps_record(trace)
        new = additional_children(v)
        if not new:
            fail(f"no decrypted CREATE_CHILD_SA for an additional Child SA on {v.link}")
        resp = answered(v, new[0], "the additional Child SA")
        # each SA payload's proposal carries its sender's inbound SPI: IKE_AUTH's are the first Child SA's,
        # the CREATE_CHILD_SA exchange's the second's
        auth = [r for r in v.ike if r.exchange == 35 and r.decrypted and r.spis]
        first = {spi for r in auth for spi in r.spis}
        second = set(new[0].spis) | set(resp.spis)
        carried = esp_spis(p for p in v.esp if p.time > resp.time and "icmp" in p.inner)
        for name, spis in (("first", first), ("additional", second)):
            if len(spis) != 2 or not spis <= carried:
                fail(f"the {name} Child SA (SPIs {sorted(hex(s) for s in spis)}) does not carry pings both ways; "
                     f"ESP with ICMP after frame {resp.frame} used {sorted(hex(s) for s in carried)}")
        if first & second:
            fail(f"the additional Child SA reuses an SPI of the first: {sorted(hex(s) for s in first & second)}")
        deletes = [r for r in v.ike if r.exchange == 37 and r.deletes]
        if deletes:
            fail(f"a Child SA was deleted during the run: frame {deletes[0].frame} {deletes[0].deletes}")
        check_pings_answered(record)


@dataclass(frozen=True)
class TcpCase(TestCase):
    """A TCP download through the Child SA; the bytes arrive intact and every ESP packet carries TCP."""

    nbytes: int = 200_000

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        record = steps_record(trace)
        tcp = step_entries(record, "TcpTransfer")
        if not tcp:
            fail("the steps record has no TcpTransfer")
        t = tcp[0]
        if t.get("received_bytes") != self.nbytes or not t.get("served_sha256") \
                or t.get("served_sha256") != t.get("received_sha256"):
            fail(f"the TCP download from {t.get('server')} did not arrive intact: {t.get('received_bytes')} of "
                 f"{self.nbytes} bytes, sha256 {t.get('received_sha256') or '-'} vs served "
                 f"{t.get('served_sha256') or '-'}; client said: {t.get('client_output', '').strip()[:200]}")
        v = view(trace)
        carried = [p for p in v.esp if "tcp" in p.inner]
        if len({(p.src, p.dst) for p in carried}) < 2:
            fail(f"no TCP inside ESP in both directions on {v.link}")
        for p in v.esp:
            if p.tunnel != (self.mode == "tunnel"):
                fail(f"{self.mode} mode expected, frame {p.frame} carries {'/'.join(p.inner)}")
            want_udp = self.encap or self.topology == "nat"
            if p.udp_encap != want_udp or (want_udp and p.udp_port != 4500):
                fail(f"{'ESP in UDP 4500' if want_udp else 'plain ESP'} expected at frame {p.frame} "
                     f"(udp port {p.udp_port})")
        if sum(p.length for p in carried) < self.nbytes:
            fail(f"the ESP packets with TCP inside total {sum(p.length for p in carried)} bytes, less than the "
                 f"{self.nbytes} downloaded")


CHILD_REKEY_INITIATOR = ChildRekeyCase(
    name="child-rekey-initiator",
    description=f"the initiator rekeys the Child SA (CREATE_CHILD_SA, REKEY_SA) {REKEY_AT} s after it came up, "
                "pings every 0.2 s across it",
    left_settings=CHILD_SHORT, steps=TRAFFIC, rekeyer="left",
)
CHILD_REKEY_RESPONDER = ChildRekeyCase(
    name="child-rekey-responder",
    description=f"the responder rekeys the Child SA {REKEY_AT} s after it came up (Libreswan as responder: "
                f"{RESPONDER_REKEY_AT} s), pings across it",
    right_settings=CHILD_SHORT, steps=RESPONDER_TRAFFIC, rekeyer="right",
)
IKE_REKEY_INITIATOR = IkeRekeyCase(
    name="ike-rekey-initiator",
    description=f"the initiator rekeys the IKE SA (new SPIs, RFC 7296 1.3.2) {IKE_REKEY_AT} s after it came up; a "
                "Child SA rekey then runs on the new IKE SA",
    left_settings=IKE_SHORT, steps=(Ping(10), Wait(6), Rekey("left", "child"), Wait(3)), rekeyer="left",
)
IKE_REKEY_RESPONDER = IkeRekeyCase(
    name="ike-rekey-responder",
    description="the responder rekeys the IKE SA 6 s after it came up (Libreswan: 10 s); the initiator's Child SA "
                "rekey then runs on the new IKE SA",
    right_settings=IKE_SHORT_RESPONDER, steps=(Ping(16.5), Wait(13), Rekey("left", "child"), Wait(3)),
    rekeyer="right",
)
REKEY_COLLISION = ChildRekeyCase(
    name="rekey-collision",
    description="both peers rekey the Child SA at the same moment (their rekey commands at once: their timers "
                "cannot be set to fire together, Libreswan's responder rekeys at lifetime - margin/2); 2 s of delay "
                "each way (netem in both guests; whack takes about 1 s under UML) makes the requests cross "
                "(RFC 7296 2.8.1); traffic settles on one new Child SA",
    # the pings' own end (the last of 14 s of pings plus its 4 s round trip) bounds the cell: the Deletes of the
    # old and the redundant SA are through 2-4 s before it (measured); the last Wait only covers a quick rekey
    steps=(Delay(2000), Ping(14), Wait(3), Rekey("both", "child"), Wait(5)), collision=True,
    # one path delay: the replies on the surviving SA start when its inbound half is in at the far end
    # (measured 0.89 s and 0.93 s, strongSwan and Libreswan each way)
    gap_bound=2.0,
)
DPD_DEAD_PEER = DeadPeerCase(
    name="dpd-dead-peer",
    description="the responder's daemon is killed and its kernel SAs flushed; the initiator's liveness checks "
                "(DPD every 1 s, retransmitted after 0.5, 1, 2 s) go unanswered and it clears the SAs",
    left_settings=(("dpd_delay", 1), ("dpd_action", "clear"), ("retransmit_timeout", 0.5),
                   ("retransmit_tries", 2)),
    steps=(Ping(2), Wait(2.5), Kill("right"), WaitSasGone("left", within=40)),
    dead_within=20.0,
)
LIFETIME_BYTES = VolumeRekeyCase(
    name="lifetime-bytes",
    description="the initiator's Child SA rekeys after 15,000 bytes (hard limit 30,000); 1,000-byte pings "
                "every 0.2 s reach it in about 3 s, long before its time lifetime",
    left_settings=(("child_rekey_bytes", 15_000), ("child_life_bytes", 30_000)),
    steps=(Ping(7, size=1000), Wait(7.5)),
    min_bytes=15_000,
)
CHILD_ADDITIONAL = AdditionalChildCase(
    name="child-sa-additional",
    description="a second Child SA for other subnets (203.0.113.192/27 <-> 203.0.113.224/27) created by "
                "CREATE_CHILD_SA under the IKE SA; both Child SAs carry pings",
    left_settings=(("extra_children", (("203.0.113.192/27", "203.0.113.224/27"),)),),
    right_settings=(("extra_children", (("203.0.113.224/27", "203.0.113.192/27"),)),),
    steps=(StartChild("left", 1), Ping(3), Ping(3, child=1), Wait(4)),
)
TCP_TRANSPORT_NAT = TcpCase(
    name="tcp-transport-nat",
    description="a 200,000-byte TCP download through an ESP transport-mode SA with the initiator behind a NAT "
                "(UDP 4500; the receiver must fix TCP checksums, RFC 3948 3.1.2)",
    topology="nat", mode="transport",
    steps=(TcpTransfer(200_000),),
)

CASES: list[TestCase] = [CHILD_REKEY_INITIATOR, CHILD_REKEY_RESPONDER, IKE_REKEY_INITIATOR, IKE_REKEY_RESPONDER,
                         REKEY_COLLISION, DPD_DEAD_PEER, LIFETIME_BYTES, CHILD_ADDITIONAL, TCP_TRANSPORT_NAT]

"""The SA lifecycle between peers (issue 11): rekeys by each side, a collision, a dead peer, volume
lifetimes, an additional Child SA, TCP in transport mode behind a NAT.

Each case declares per-side settings (short lifetimes so a cell takes seconds, not hours) and the
steps the runner performs once the first Child SA is up; its check reads the decrypted trace and the
steps' record (``lifecycle_checks``).  Timings: a Child SA rekey at lifetime - margin = 3 s after the SA
came up (the responder's at 4 s, Libreswan's 7.5 s), an IKE SA rekey at 3 s (the responder's at 4 s,
Libreswan's 7 s); pings every 0.2 s.  A case does not wait a fixed time for its rekey: ``Until`` reads
the clear headers of the capture as it grows until the rekey is answered, the old SA's Delete answered
and ESP on new SPIs both ways, then lets the pings run 2 s more (``SETTLE``) and stops them; a rekey that
never comes times out there and the check fails.  A gap bound of 1 s is four missed pings in a row (the
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
    liveness_checks,
    response_to,
    step_entries,
    steps_record,
    traffic_span,
    view,
)
from .steps import Delay, Kill, Ping, Rekey, Revive, StartChild, TcpTransfer, Until, Wait, WaitSasGone


def _esp_where(p: IpsecPacket) -> str:
    return f"frame {p.frame} spi 0x{p.spi:08x} {p.src}->{p.dst}"


GAP_BOUND = 1.0  # seconds of silence allowed in one direction while pings run every 0.2 s
# pings go on this long after the wire shows a rekey done: the gap check's window, which ends half a second
# before they stop, covers 1.5 s past the old SA's Delete (the last moment a peer moves its traffic), and any
# ESP on the old SA after the Delete would be seen
SETTLE = 2.0
UNTIL_WITHIN = 25.0  # the longest an Until waits for a rekey (seen: 3-5 s after the SA came up, a loaded host)
PINGS = 30  # seconds at most: the pings stop once the steps are done
# a Child SA rekey at lifetime 6 - margin 3 = 3 s after the SA came up, each new Child SA again 3 s later; the
# initiator's pings start about 1 s after it came up, so the old SA carries some before; the old SA expires at
# 6 s, 3 s after a rekey that a loaded host may slow down
REKEY_AT = 3
CHILD_SHORT = (("child_lifetime", 6), ("child_rekey_margin", 3), ("ike_rekey_margin", 3))
# The responder's Child SA rekey, at lifetime 11 - margin 7 = 4 s: the initiator's pings start when its initiate
# returns, up to 2.7 s after the responder installed the SA (seen: a Libreswan initiator on a loaded host).
# Libreswan 4.10 as the responder of the Child SA rekeys it at lifetime - margin/2 (seen: 12.7 s after the SA came
# up with lifetime 20, margin 14): 7.5 s, then every 4 s as the initiator of the new ones; it counts from when it
# logs the SA up, about 1 s (under UML) after its kernel SA's lifetime started, so margin/2 must leave room: with
# lifetime 5, margin 2 the kernel expired the SA as pluto began the rekey (seen).  (Libreswan takes one margin for
# both SAs, hence the IKE margin.)
RESPONDER_REKEY_AT = 4
LIBRESWAN_RESPONDER_REKEY_AT = 7.5
CHILD_SHORT_RESPONDER = (("child_lifetime", 11), ("child_rekey_margin", 7), ("ike_rekey_margin", 7))
# the IKE SA rekeys at lifetime 6 - margin 3 = 3 s, each new one again 3 s later: the initiator's Child SA rekey
# command follows the first once its Delete is answered (the initiator queues its own exchanges: they cannot cross)
IKE_REKEY_AT = 3
IKE_SHORT = (("ike_lifetime", 6), ("ike_rekey_margin", 3), ("child_rekey_margin", 3))
# the responder's IKE SA rekeys at 10 - 6 = 4 s (Libreswan: 10 - 6/2 = 7 s, its Delete of the old SA 1 s later),
# the next 4 s after: the initiator's Child SA rekey goes out at once after the first, 2 s or more from the next.
# Libreswan's margin/2 is 3 s before the IKE SA expires: with lifetime 6, margin 2 a loaded host ran its rekey and
# expiry events together and it reauthenticated instead (seen)
IKE_REKEY_RESPONDER_AT = 4
IKE_SHORT_RESPONDER = (("ike_lifetime", 10), ("ike_rekey_margin", 6), ("child_rekey_margin", 6))
TRAFFIC = (Ping(PINGS), Until("child-rekey", "left", settle=SETTLE, within=UNTIL_WITHIN))
RESPONDER_TRAFFIC = (Ping(PINGS), Until("child-rekey", "right", settle=SETTLE, within=UNTIL_WITHIN))


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
        liveness_checks(v, killed)
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
class DeadPeerRestartCase(TestCase):
    """The responder's daemon is killed and started again (it knows no IKE SA); the initiator's DPD finds the old
    IKE SA dead and, with ``dpd_action`` restart, sets up a new IKE SA and Child SA with it, which carry pings."""

    def check(self, trace: Trace) -> None:
        check_keys_cover_every_sa(trace)
        v = view(trace)
        kills = step_entries(steps_record(trace), "Kill")
        if not kills:
            fail("the steps record lacks the Kill step")
        killed = kills[0]["end"]
        old = {r.spi_i for r in v.ike if r.time <= killed}
        tries = liveness_checks(v, killed, on=old)
        auths = [r for r in v.ike if r.exchange == 35 and not r.response and r.time > killed
                 and r.spi_i not in old and v.side(r.src) == "left"]
        if not auths:
            fail("the left peer set up no new IKE SA after the kill (no IKE_AUTH request on new SPIs): "
                 "dpd_action restart did not act")
        if auths[0].time < tries[-1].time:
            fail(f"the new IKE SA (IKE_AUTH frame {auths[0].frame}) came before the liveness check's last "
                 f"retransmission (frame {tries[-1].frame}): the peer was not found dead first")
        resp = answered(v, auths[0], "the new IKE SA's IKE_AUTH")
        # the new IKE SA's Child SAs: IKE_AUTH's, and any a CREATE_CHILD_SA made on it (Libreswan 4.10 as the
        # initiator once made a second one at once, its kernel's acquire for the pings racing the restart, and
        # moved the pings there)
        made = [r for r in v.ike if r.spi_i == auths[0].spi_i and r.exchange in (35, 36) and r.decrypted]
        new = {spi for r in made for spi in r.spis}
        carried = {(p.src, p.dst) for p in v.esp if p.time > resp.time and p.spi in new and "icmp" in p.inner}
        if len(carried) < 2:
            fail(f"the new IKE SA's Child SAs (SPIs {sorted(hex(x) for x in new)}) did not carry pings both ways "
                 f"after frame {resp.frame}; they carried {sorted(carried) or 'nothing'}")


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
    description=f"the responder rekeys the Child SA {RESPONDER_REKEY_AT} s after it came up (Libreswan as "
                f"responder: {LIBRESWAN_RESPONDER_REKEY_AT} s), pings across it",
    right_settings=CHILD_SHORT_RESPONDER, steps=RESPONDER_TRAFFIC, rekeyer="right",
)
IKE_REKEY_INITIATOR = IkeRekeyCase(
    name="ike-rekey-initiator",
    description=f"the initiator rekeys the IKE SA (new SPIs, RFC 7296 1.3.2) {IKE_REKEY_AT} s after it came up; a "
                "Child SA rekey then runs on the new IKE SA",
    left_settings=IKE_SHORT,
    steps=(Ping(PINGS), Until("ike-rekey", "left", within=UNTIL_WITHIN), Rekey("left", "child"),
           Until("child-rekey", "left", settle=SETTLE, within=UNTIL_WITHIN)),
    rekeyer="left",
)
IKE_REKEY_RESPONDER = IkeRekeyCase(
    name="ike-rekey-responder",
    description=f"the responder rekeys the IKE SA {IKE_REKEY_RESPONDER_AT} s after it came up (Libreswan: "
                f"{IKE_REKEY_RESPONDER_AT + 3} s); the initiator's Child SA rekey then runs on the new IKE SA",
    right_settings=IKE_SHORT_RESPONDER,
    steps=(Ping(PINGS), Until("ike-rekey", "right", within=UNTIL_WITHIN), Rekey("left", "child"),
           Until("child-rekey", "left", settle=SETTLE, within=UNTIL_WITHIN)),
    rekeyer="right",
)
REKEY_COLLISION = ChildRekeyCase(
    name="rekey-collision",
    description="both peers rekey the Child SA at the same moment (their rekey commands at once: their timers "
                "cannot be set to fire together, Libreswan's responder rekeys at lifetime - margin/2); 2 s of delay "
                "each way (netem in both guests; whack takes about 1 s under UML) makes the requests cross "
                "(RFC 7296 2.8.1); traffic settles on one new Child SA",
    # pings go on 3.5 s after both Deletes are answered: a stopped ping's last 4.5 s (the 4 s round trip and half a
    # second) are out of the gap check's window, which then ends a second after them
    steps=(Delay(2000), Ping(PINGS + 10), Wait(1), Rekey("both", "child"),
           Until("collision", settle=3.5, within=UNTIL_WITHIN)),
    collision=True,
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
    # killed while the pings run (nothing is silent for a DPD delay before it), which end before the SAs go (a
    # daemon that revives a connection it initiated would otherwise be sent traffic to acquire SAs with)
    steps=(Ping(2), Kill("right"), WaitSasGone("left", within=40)),
    dead_within=20.0,
)
DPD_RESTART = DeadPeerRestartCase(
    name="dpd-restart",
    description="the responder's daemon is killed (its kernel SAs flushed) and started again at once; the "
                "initiator's liveness checks (DPD every 1 s, retransmitted after 0.5 and 1 s) go unanswered on the "
                "old IKE SA, and with dpd_action restart it sets up a new IKE SA and Child SA that carry the pings",
    left_settings=(("dpd_delay", 1), ("dpd_action", "restart"), ("retransmit_timeout", 0.5),
                   ("retransmit_tries", 2)),
    # the pings run throughout: lost while the responder is down, answered through the new Child SA after
    steps=(Ping(PINGS), Kill("right"), Revive("right"), Until("restart", "left", settle=1.0, within=UNTIL_WITHIN)),
)
LIFETIME_BYTES = VolumeRekeyCase(
    name="lifetime-bytes",
    description="the initiator's Child SA rekeys after 15,000 bytes (hard limit 45,000); 1,000-byte pings "
                "every 0.1 s reach it in about 1.5 s, long before its time lifetime",
    left_settings=(("child_rekey_bytes", 15_000), ("child_life_bytes", 45_000)),
    steps=(Ping(PINGS, size=1000, interval=0.1), Until("child-rekey", "left", settle=SETTLE, within=UNTIL_WITHIN)),
    min_bytes=15_000,
)
CHILD_ADDITIONAL = AdditionalChildCase(
    name="child-sa-additional",
    description="a second Child SA for other subnets (203.0.113.192/27 <-> 203.0.113.224/27) created by "
                "CREATE_CHILD_SA under the IKE SA; both Child SAs carry pings",
    left_settings=(("extra_children", (("203.0.113.192/27", "203.0.113.224/27"),)),),
    right_settings=(("extra_children", (("203.0.113.224/27", "203.0.113.192/27"),)),),
    # ten echoes through each Child SA: a second of pings every 0.1 s, their answers in before the Wait ends
    steps=(StartChild("left", 1), Ping(1, interval=0.1), Ping(1, child=1, interval=0.1), Wait(1.3)),
)
TCP_TRANSPORT_NAT = TcpCase(
    name="tcp-transport-nat",
    description="a 200,000-byte TCP download through an ESP transport-mode SA with the initiator behind a NAT "
                "(UDP 4500; the receiver must fix TCP checksums, RFC 3948 3.1.2)",
    topology="nat", mode="transport",
    steps=(TcpTransfer(200_000),),
)

CASES: list[TestCase] = [CHILD_REKEY_INITIATOR, CHILD_REKEY_RESPONDER, IKE_REKEY_INITIATOR, IKE_REKEY_RESPONDER,
                         REKEY_COLLISION, DPD_DEAD_PEER, DPD_RESTART, LIFETIME_BYTES, CHILD_ADDITIONAL,
                         TCP_TRANSPORT_NAT]

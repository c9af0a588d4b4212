"""Probes: what the interop runner sends at a victim peer with the run's own keys, and what it records.

A probe case (``TestCase.probe``) runs after the SA is up and the initiator has pinged: the
victim's inbound ESP SA is read from the victim itself: a kernel peer's from ``ip -s xfrm state``
in its guest (``EspSA.from_xfrm``), the ipseclab endpoint's from its ``status`` answer (SPIs, mode,
ESN, the replay window's size and top) and its own ``esp_sa`` key file; ipseclab builds packets
with that SA and puts them on the link toward the victim as if the other peer had sent them
(``Lab.inject``).
The victim is the responder (``right``) unless the case says ``victim="initiator"``.
Each step is a list of packets and what the victim must do with each (how many echo replies the
trace must then hold for its ICMP echo), with the victim's counters (through its driver) before
and after the step.  Everything goes to ``probe.json`` in the run directory, where the case's
``check`` (testcases/verdicts.py) reads it beside Wireshark's view of the pcap.

A step lasts as long as its evidence takes to appear, not a fixed time (``await_evidence``): each packet
says what a correct victim leaves behind (``Sent.evidence``): a reply, seen as one more ESP packet from
the victim on its outbound SA in the link's capture as tcpdump writes it (``PcapFollower``), or a drop,
seen as one more in the victim's drop counters (``drop_count``: the kernel's XfrmIn* statistics, the
endpoint's data plane drops); then ``SETTLE`` seconds more, so that a wrong extra reply is still in the
step.  A victim that does not do what the step expects makes it wait ``EVIDENCE_TIMEOUT`` at most, and the
verdict, which reads the whole capture and the counters, judges it as before.

The packets (RFC 4303 3.4.3, the kernel's xfrm_replay_check):

* ``replay``: the initiator's captured ESP packets sent again byte for byte; pings in a new
  order inside the window (each answered once) and one of them again; with a window W > 0, a
  ping that becomes the window's top H, one at its left edge (H - W + 1: new, answered) and one
  just past it (H - W: too old, dropped); a forged ping (ICV flipped) far ahead (H + 1000,
  dropped, and it must not move the window: a ping at H + 1 is still answered).
* ``tfc``: a ping TFC-padded by ipseclab (answered), dummy packets (next header 59, RFC 4303 2.6:
  dropped without a word: the victim's outbound SA sends nothing), a ping after them (answered).
* ``access``: a ping inside the SA (answered); the same ping in the clear (its source is inside
  the selectors, so policy demands ESP: dropped); a ping inside the SA from an address outside the
  negotiated selectors (dropped by the inbound policy check, RFC 4301 5.2).
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import LabError
from .esp.esp import EspSA
from .lab.keys import parse_xfrm_state
from .lab.lab import Lab
from .lab.runtimes.process import EndpointHost
from .pcap.esp_keyfiles import read_esp_sa
from .pcap.reader import IpPacket, PcapFollower

PROBE_ICMP_ID = 0x1E13  # the ICMP echo identifier of every ping a probe makes (issue 13)
OUTSIDE_SELECTORS = "203.0.113.200"  # in neither side's protected /26 of the direct topology
TFC_PAD_TO = 1000  # ipseclab's TFC padding of its probe ping (payload bytes)
VICTIM_DUMMIES = 3  # dummy packets an ipseclab victim is told to send its peer (which must drop them unseen)
FORGED_AHEAD = 1000

# How long a step may wait for its evidence.  A correct victim answers or counts within milliseconds (in the
# captures of 10 probe cells, 2026-11-30, load 2-4: 54 replies 0.5 ms after the request at the median, 10 ms at
# most, kernels and the endpoint alike; a counter read is one command in the guest, 0.1-0.3 s): the bound is only
# reached by a victim that does not do what the step expects, whose verdict the capture and counters then give.
EVIDENCE_TIMEOUT = 5.0
# What a step waits after its evidence is complete, for a wrong extra reply to reach the capture.  The victim
# handles the step's packets in order and tcpdump writes frames in the order it captures them, so once the last
# packet's reply is in the file, a reply to any packet before it is there too; once a drop is counted, the
# packet was handled in the same receive path that would have answered it, a counter read (a command through
# the guest's spool, >= 50 ms) earlier.  What is left is a frame between the victim and tcpdump's file while
# tcpdump (-U, --immediate-mode) waits for a core: 0.2 s is 20 times the slowest turnaround seen on the wire
# (above) and covers a descheduled tcpdump on 2 shared cores.  The capture also runs on after the last step while
# the lab collects keys and counters (>= 0.3 s), and the verdict counts replies over the whole capture, not per step.
SETTLE = 0.2
POLL = 0.01  # between two reads of the capture (a read of what is new costs microseconds)
# the endpoint's data plane counters that each count one dropped packet (endpoint/dataplane.py, tun.py)
ENDPOINT_DROPS = ("replay", "integrity", "policy_mismatch", "clear_dropped", "unknown_spi", "malformed",
                  "dummies_in")
Evidence = Literal["reply", "drop", ""]


@dataclass(slots=True)
class Sent:
    """One packet a probe sent and what must follow: ``replies`` echo replies in the whole trace for
    its ICMP echo (``icmp_seq`` of PROBE_ICMP_ID; for a replayed capture, the original's, found by ESP seq);
    -1: not an echo request (a replayed echo reply), judged by the victim's counters alone.

    ``evidence`` (not in probe.json: how long the step waits) is what a correct victim leaves when it handles this
    packet: ``"reply"`` one more ESP packet of its own on the wire, ``"drop"`` one more in its drop counters,
    ``""`` nothing (a replayed echo reply accepted with replay protection off)."""

    label: str
    esp_seq: int | None = None
    icmp_seq: int | None = None
    replies: int = 0
    clear: bool = False
    evidence: Evidence = ""

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "esp_seq": self.esp_seq, "icmp_seq": self.icmp_seq, "replies": self.replies,
                "clear": self.clear}


@dataclass(slots=True)
class ProbeRun:
    """What ``probe.json`` holds."""

    kind: str
    victim: str
    victim_impl: str
    spi_in: int = 0
    spi_out: int = 0
    window: int = 0
    esn: bool = False
    top: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "victim": self.victim, "victim_impl": self.victim_impl,
                "spi_in": f"0x{self.spi_in:08x}", "spi_out": f"0x{self.spi_out:08x}", "window": self.window,
                "esn": self.esn, "top": self.top, "icmp_id": PROBE_ICMP_ID, "steps": self.steps}


@dataclass(frozen=True, slots=True)
class VictimSa:
    """The victim's live inbound ESP SA as the victim itself shows it, and its outbound SA's SPI.

    ``make(**kwargs)`` builds an :class:`EspSA` on it (the victim's keys; ``kwargs`` as EspSA's: seq,
    tfc_pad_to, ...); ``top`` is the highest sequence number the victim has received on it."""

    spi_in: int
    spi_out: int
    mode: str
    window: int
    esn: bool
    top: int
    make: Callable[..., EspSA]


def kernel_victim_sa(lab: Lab, victim: str, victim_addr: str) -> VictimSa:
    """A kernel peer's newest inbound/outbound ESP SAs from ``ip -s xfrm state`` in its guest."""
    _, out = lab.exec(victim, "ip -s xfrm state", timeout=15)
    states = [s for s in parse_xfrm_state(out) if s.proto == "esp"]
    inbound = [s for s in states if s.dst == victim_addr]
    outbound = [s for s in states if s.src == victim_addr]
    if not inbound or not outbound:
        raise LabError(f"the {victim} peer ({lab.peer(victim).driver.impl}) shows no ESP SA pair in ip xfrm state",
                       output=out)
    st = inbound[-1]

    def make(**kwargs: Any) -> EspSA:
        return EspSA.from_xfrm(st.spi, aead=st.aead, enc=st.enc, auth=st.auth, tunnel=(st.src, st.dst), esn=st.esn,
                               udp=(st.encap[1], st.encap[2]) if st.encap else None, **kwargs)

    return VictimSa(st.spi, outbound[-1].spi, st.mode, st.replay_window, st.esn,
                    st.counters.get("seq", 0) | (st.counters.get("seq-hi", 0) << 32), make)


def endpoint_victim_sa(lab: Lab, victim: str, status: dict[str, Any]) -> VictimSa:
    """The ipseclab endpoint's ESP pair that carries its traffic, from its ``status`` answer (``child_sas``:
    SPIs, mode, tunnel addresses, UDP encapsulation, ESN, the window's size and top) and its keys from the
    ``esp_sa`` file it writes for Wireshark."""
    pairs = [(int(spi, 16), sa) for spi, sa in status.get("child_sas", {}).items()
             if sa.get("protocol") == "esp" and sa.get("carries_outbound")]
    if not pairs:
        raise LabError(f"the {victim} ipseclab endpoint reports no ESP Child SA carrying its traffic",
                       output=json.dumps(status.get("child_sas")))
    spi_in, sa = pairs[-1]
    key_file = lab.peer(victim).host.dir / "esp_sa"
    rows = [r for r in read_esp_sa(key_file) if r.spi == spi_in]
    if not rows or rows[-1].encr_id is None:
        raise LabError(f"the {victim} ipseclab endpoint's {key_file} has no usable row for SPI {spi_in:#010x}")
    row = rows[-1]
    tunnel = tuple(sa["tunnel"]) if sa.get("tunnel") else None
    if sa.get("udp_encap"):
        raise LabError("the probes inject ESP on the wire; this endpoint's SA is in UDP (the direct topology "
                       "has no NAT: was encap forced?)")

    def make(**kwargs: Any) -> EspSA:
        return EspSA(spi_in, row.encr_id or 0, row.encr_key, integ=row.integ_id or None, integ_key=row.auth_key,
                     mode=sa["mode"], tunnel=tunnel, esn=bool(sa["esn"]), **kwargs)

    return VictimSa(spi_in, int(sa["spi_out"], 16), sa["mode"], int(sa["replay_window"]), bool(sa["esn"]),
                    int(sa["top"]), make)


def drop_count(counters: dict[str, Any]) -> int:
    """How many packets a victim has dropped so far, by its own counters (``Lab.peer_counters``): the sum of a
    kernel's ``XfrmIn*`` statistics (each inbound drop counts in exactly one: XfrmInStateSeqError for a replay,
    XfrmInStateProtoError for a bad ICV or a dummy, XfrmInTmplMismatch, XfrmInNoPols, ...), or of the ipseclab
    endpoint's data plane drops (``ENDPOINT_DROPS``, again one per packet)."""
    if counters.get("source") == "ipseclab":
        dataplane = counters.get("dataplane") or {}
        return sum(int(dataplane.get(name, 0)) for name in ENDPOINT_DROPS)
    return sum(int(v) for k, v in (counters.get("xfrm_stat") or {}).items() if k.startswith("XfrmIn"))


def esp_spi(p: IpPacket) -> int | None:
    """The SPI of an ESP packet, plain or in UDP 4500 (RFC 3948: not the non-ESP marker), else None."""
    if p.proto == 50 and len(p.payload) >= 8:
        return int.from_bytes(p.payload[:4], "big")
    if (p.proto == 17 and len(p.payload) >= 16 and 4500 in (int.from_bytes(p.payload[:2], "big"),
                                                          int.from_bytes(p.payload[2:4], "big"))):
        spi = int.from_bytes(p.payload[8:12], "big")
        return spi or None  # 0: the non-ESP marker of IKE
    return None


def await_evidence(replies: int, drops: int, seen_replies: Callable[[], int], seen_drops: Callable[[], int],
                   timeout: float = EVIDENCE_TIMEOUT, settle: float = SETTLE,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Wait until ``seen_replies()`` (new replies on the wire, cheap to ask) reaches ``replies`` and ``seen_drops()``
    (new drops by the victim's counters, a command in its guest) reaches ``drops``, or ``timeout`` has passed; then
    ``settle`` seconds (see SETTLE).  Counters are asked only once the replies are in, at most once a poll.
    Returns what was seen and how long it took, for probe.json (``complete``: every piece of evidence came)."""
    started = clock()
    got_replies = got_drops = 0
    while True:
        if got_replies < replies:
            got_replies = seen_replies()
        if got_replies >= replies and got_drops < drops:
            got_drops = seen_drops()
        complete = got_replies >= replies and got_drops >= drops
        if complete or clock() - started >= timeout:
            break
        sleep(POLL)
    waited = clock() - started
    if settle > 0:
        sleep(settle)
    return {"replies": [got_replies, replies], "drops": [got_drops, drops], "complete": complete,
            "seconds": round(waited, 3)}


class _Prober:
    def __init__(self, lab: Lab, kind: str, victim: str = "right") -> None:
        self.lab = lab
        self.victim = victim
        self.attacker = "left" if victim == "right" else "right"
        prepare_probe(lab, victim)  # if run_case has not already
        topo = lab.topology
        self.victim_addr = topo.hosts[victim].address
        self.src_inner = topo.hosts[self.attacker].protected_addr
        self.dst_inner = topo.hosts[victim].protected_addr
        peer = lab.peer(victim)
        status = lab.peer_counters(victim)
        self.state = (endpoint_victim_sa(lab, victim, status) if status.get("source") == "ipseclab"
                      else kernel_victim_sa(lab, victim, self.victim_addr))
        st = self.state
        self.run = ProbeRun(kind, victim, peer.driver.impl, st.spi_in, st.spi_out, st.window, st.esn, st.top)
        self.icmp_seq = 0
        self.counters = status  # the victim's counters as the last step left them (the next step's "before")
        pcap = next(c.pcap for c in lab.captures if c.link is topo.links[0])
        self.capture = PcapFollower(pcap)
        self.captured = self._captured_requests()

    def sa(self, **kwargs: Any) -> EspSA:
        if self.state.mode != "tunnel":
            raise LabError(f"probes need a tunnel-mode SA, the victim's is {self.state.mode or 'unknown'}")
        return self.state.make(**kwargs)

    def _captured_requests(self) -> dict[int, bytes]:
        """The ESP packets the initiator sent on the victim's inbound SA so far, by sequence number (the capture
        read to its end: what the victim sends from now on is what the steps wait for)."""
        out: dict[int, bytes] = {}
        for p in self.capture.read():
            if isinstance(p, IpPacket) and p.proto == 50 and p.dst == self.victim_addr and len(p.payload) >= 8:
                spi, seq = int.from_bytes(p.payload[:4], "big"), int.from_bytes(p.payload[4:8], "big")
                if spi == self.state.spi_in:
                    out.setdefault(seq, p.packet)
        return out

    def victim_esp(self) -> Callable[[], int]:
        """A counter of the ESP packets the victim sends on its outbound SA from now on, in the capture."""
        seen = 0

        def count() -> int:
            nonlocal seen
            seen += sum(1 for p in self.capture.read() if isinstance(p, IpPacket) and p.src == self.victim_addr
                        and esp_spi(p) == self.state.spi_out)
            return seen

        count()  # what the capture holds already is not this step's
        seen = 0
        return count

    def drops_since(self, side: str, before: dict[str, Any]) -> Callable[[], int]:
        base = drop_count(before)
        return lambda: drop_count(self.lab.peer_counters(side)) - base

    def ping(self, src: str | None = None) -> tuple[bytes, int]:
        """A new ICMP echo request (inner packet) from the attacker's protected address; its ICMP seq."""
        from scapy.layers.inet import ICMP, IP  # waits for prepare_probe's import if it still runs
        from scapy.packet import Raw

        self.icmp_seq += 1
        pkt = (IP(src=src or self.src_inner, dst=self.dst_inner, ttl=64)
               / ICMP(type=8, id=PROBE_ICMP_ID, seq=self.icmp_seq) / Raw(b"ipseclab issue 13 probe".ljust(56, b".")))
        return bytes(pkt), self.icmp_seq

    def step(self, name: str, packets: list[tuple[bytes, Sent]]) -> None:
        """Send one step's packets in order and wait for the evidence they must leave (``await_evidence``), with
        the victim's counters around it (before: as the step before left them, read after its settle time)."""
        before = self.counters
        replies = self.victim_esp()
        if packets:
            self.lab.inject(self.victim, [p for p, _ in packets], wait=0)
        waited = await_evidence(sum(s.evidence == "reply" for _, s in packets),
                                sum(s.evidence == "drop" for _, s in packets), replies,
                                self.drops_since(self.victim, before))
        self.counters = after = self.lab.peer_counters(self.victim)
        self.run.steps.append({"step": name, "sent": [s.as_dict() for _, s in packets],
                               "before": before, "after": after, "waited": waited})

    def victim_dummies(self, host: EndpointHost, count: int) -> None:
        """Have an ipseclab victim send ``count`` dummy packets (as large as its TFC padding), with both
        peers' counters around it: the other peer's kernel must take each and drop it without a word."""
        before, peer_before = self.counters, self.lab.peer_counters(self.attacker)
        size = self.lab.peer(self.victim).config.tfc_padding
        on_wire = self.victim_esp()
        sent = int(host.command({"cmd": "dummy", "size": size, "count": count}).get("sent", 0))
        # evidence: the dummies on the wire (the victim's outbound SA), and each dropped by the other peer
        waited = await_evidence(sent, sent, on_wire, self.drops_since(self.attacker, peer_before))
        self.counters = self.lab.peer_counters(self.victim)
        self.run.steps.append({"step": "dummy packets from the victim", "sent": [], "dummies": sent, "size": size,
                               "before": before, "after": self.counters, "peer_before": peer_before,
                               "peer_after": self.lab.peer_counters(self.attacker), "waited": waited})


def _replay(pr: _Prober) -> None:
    window, top = pr.run.window, pr.run.top
    sa = pr.sa()
    old = sorted(pr.captured)
    if not old:
        raise LabError("no ESP packet of the initiator on the victim's inbound SA in the capture to replay")
    protected = window > 0
    # the initiator's captured packets are its echo requests; toward an initiator victim they are the
    # responder's echo replies, which nobody answers: those are judged by the victim's counters alone (-1)
    answerable = pr.victim == "right"
    again: Evidence = "drop" if protected else "reply"  # a packet the victim has taken before
    pr.step("exact replays of captured packets",
            [(pr.captured[s], Sent(f"replay of captured seq {s}", esp_seq=s,
                                   replies=(1 if protected else 2) if answerable else -1,
                                   evidence=again if answerable or protected else "")) for s in old])
    base = top + 8
    order = [base + 3, base + 1, base + 2, base]
    made: dict[int, tuple[bytes, int]] = {}
    for seq in order:
        inner, icmp = pr.ping()
        made[seq] = (sa.protect(inner, seq=seq), icmp)
    pr.step("reordered inside the window", [(made[s][0], Sent(f"seq {s} (out of order)", s, made[s][1], 1,
                                                              evidence="reply")) for s in order])
    pr.step("exact replay of a reordered ping",
            [(made[base + 1][0], Sent(f"replay of seq {base + 1}", base + 1, made[base + 1][1],
                                      1 if protected else 2, evidence=again))])
    high = base + 3
    if protected:
        high = base + 3 + window + 8
        edge = []
        for seq, label, replies in ((high, "new top H", 1), (high - window + 1, "left edge H-W+1", 1),
                                    (high - window, "just past the left edge H-W", 0)):
            inner, icmp = pr.ping()
            edge.append((sa.protect(inner, seq=seq), Sent(f"seq {seq}: {label}", seq, icmp, replies,
                                                          evidence="reply" if replies else "drop")))
        pr.step("window edges", edge)
    inner, icmp = pr.ping()
    forged = bytearray(sa.protect(inner, seq=high + FORGED_AHEAD))
    forged[-1] ^= 0x01  # the ICV's last byte
    pr.step("forged ICV far ahead", [(bytes(forged), Sent(f"seq {high + FORGED_AHEAD} with a bad ICV",
                                                          high + FORGED_AHEAD, icmp, 0, evidence="drop"))])
    inner, icmp = pr.ping()
    pr.step("after the forgery", [(sa.protect(inner, seq=high + 1),
                                   Sent(f"seq {high + 1}: the forgery did not move the window", high + 1, icmp, 1,
                                        evidence="reply"))])


def _tfc(pr: _Prober) -> None:
    seq = pr.run.top + 1
    padded = pr.sa(tfc_pad_to=TFC_PAD_TO)
    inner, icmp = pr.ping()
    pr.step("TFC-padded ping", [(padded.protect(inner, seq=seq), Sent(f"seq {seq}: padded to {TFC_PAD_TO}",
                                                                      seq, icmp, 1, evidence="reply"))])
    sa = pr.sa(seq=seq)
    dummies = []
    for size in (0, 100, 1000):
        dummies.append((sa.dummy_packet(size), Sent(f"seq {sa.seq}: dummy of {size} bytes", sa.seq,
                                                    evidence="drop")))
    pr.step("dummy packets", dummies)
    inner, icmp = pr.ping()
    pr.step("ping after the dummies", [(sa.protect(inner, seq=sa.seq + 1),
                                        Sent(f"seq {sa.seq + 1}: after the dummies", sa.seq + 1, icmp, 1,
                                             evidence="reply"))])
    host = pr.lab.peer(pr.victim).host
    if isinstance(host, EndpointHost):  # the endpoint also sends dummies (its line protocol's dummy command)
        pr.victim_dummies(host, VICTIM_DUMMIES)


def _access(pr: _Prober) -> None:
    sa = pr.sa(seq=pr.run.top)
    inner, icmp = pr.ping()
    pr.step("ping inside the SA (control)", [(sa.protect(inner), Sent(f"seq {sa.seq}: control", sa.seq, icmp, 1,
                                                                      evidence="reply"))])
    inner, icmp = pr.ping()
    pr.step("ping in the clear from inside the selectors", [(inner, Sent("clear", icmp_seq=icmp, clear=True,
                                                                         evidence="drop"))])
    inner, icmp = pr.ping(src=OUTSIDE_SELECTORS)
    pr.step(f"ping inside the SA from {OUTSIDE_SELECTORS}, outside the selectors",
            [(sa.protect(inner), Sent(f"seq {sa.seq}: from {OUTSIDE_SELECTORS}", sa.seq, icmp, 0, evidence="drop"))])


PROBES = {"replay": _replay, "tfc": _tfc, "access": _access}


def prepare_probe(lab: Lab, victim: str = "right") -> None:
    """Start what a probe at ``victim`` needs before it runs, so that it overlaps other work (run_case calls it
    before the SA is negotiated): the injector's process and, in a thread, this process's import of Scapy (which
    ``ping`` builds with, ~0.5 s; once per process)."""
    lab.injector(victim)
    if "scapy.layers.inet" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("scapy.layers.inet",), daemon=True).start()


def run_probe(lab: Lab, kind: str, run_dir: Path, victim: str = "right") -> None:
    """Run probe ``kind`` at the lab's ``victim`` side and write ``probe.json`` (also when a step fails half-way)."""
    if kind not in PROBES:
        raise LabError(f"unknown probe {kind!r}; known: {', '.join(PROBES)}")
    pr = _Prober(lab, kind, victim)
    try:
        PROBES[kind](pr)
    finally:
        (run_dir / "probe.json").write_text(json.dumps(pr.run.as_dict(), indent=2) + "\n")

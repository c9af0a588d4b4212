"""Probes: what the interop runner sends at a victim peer with the run's own keys, and what it records.

A probe case (``TestCase.probe``) runs after the SA is up and the initiator has pinged: the
victim's inbound ESP SA is read from its own kernel (``ip -s xfrm
state`` in its guest: the run's keys); ipseclab builds packets with that SA (``EspSA.from_xfrm``)
and puts them on the link toward the victim as if the other peer had sent them (``Lab.inject``).
The victim is the responder (``right``) unless the case says ``victim="initiator"``.
Each step is a list of packets and what the victim must do with each (how many echo replies the
trace must then hold for its ICMP echo), with the victim's counters (through its driver) before
and after the step.  Everything goes to ``probe.json`` in the run directory, where the case's
``check`` (testcases/verdicts.py) reads it beside Wireshark's view of the pcap.

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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabError
from .esp.esp import EspSA
from .lab.keys import XfrmState, parse_xfrm_state
from .lab.lab import Lab

PROBE_ICMP_ID = 0x1E13  # the ICMP echo identifier of every ping a probe makes (issue 13)
OUTSIDE_SELECTORS = "203.0.113.200"  # in neither side's protected /26 of the direct topology
TFC_PAD_TO = 1000  # ipseclab's TFC padding of its probe ping (payload bytes)
FORGED_AHEAD = 1000


@dataclass(slots=True)
class Sent:
    """One packet a probe sent and what must follow: ``replies`` echo replies in the whole trace for
    its ICMP echo (``icmp_seq`` of PROBE_ICMP_ID; for a replayed capture, the original's, found by ESP seq);
    -1: not an echo request (a replayed echo reply), judged by the victim's counters alone."""

    label: str
    esp_seq: int | None = None
    icmp_seq: int | None = None
    replies: int = 0
    clear: bool = False

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


class _Prober:
    def __init__(self, lab: Lab, kind: str, victim: str = "right") -> None:
        self.lab = lab
        self.victim = victim
        self.attacker = "left" if victim == "right" else "right"
        topo = lab.topology
        self.victim_addr = topo.hosts[victim].address
        self.src_inner = topo.hosts[self.attacker].protected_addr
        self.dst_inner = topo.hosts[victim].protected_addr
        peer = lab.peer(victim)
        _, out = lab.exec(victim, "ip -s xfrm state", timeout=15)
        states = [s for s in parse_xfrm_state(out) if s.proto == "esp"]
        inbound = [s for s in states if s.dst == self.victim_addr]
        outbound = [s for s in states if s.src == self.victim_addr]
        if not inbound or not outbound:
            raise LabError(f"the {victim} peer ({peer.driver.impl}) shows no ESP SA pair in ip xfrm state",
                           output=out)
        self.state: XfrmState = inbound[-1]
        st = self.state
        self.run = ProbeRun(kind, victim, peer.driver.impl, st.spi, outbound[-1].spi, st.replay_window, st.esn,
                            st.counters.get("seq", 0) | (st.counters.get("seq-hi", 0) << 32))
        self.icmp_seq = 0
        self.captured = self._captured_requests()

    def sa(self, **kwargs: Any) -> EspSA:
        st = self.state
        if st.mode != "tunnel":
            raise LabError(f"probes need a tunnel-mode SA, the victim's is {st.mode or 'unknown'}")
        return EspSA.from_xfrm(st.spi, aead=st.aead, enc=st.enc, auth=st.auth, tunnel=(st.src, st.dst),
                               esn=st.esn, udp=(st.encap[1], st.encap[2]) if st.encap else None, **kwargs)

    def _captured_requests(self) -> dict[int, bytes]:
        """The ESP packets the initiator sent on the victim's inbound SA so far, by sequence number."""
        from .pcap.reader import IpPacket, read_ip

        pcap = next(c.pcap for c in self.lab.captures if c.link is self.lab.topology.links[0])
        out: dict[int, bytes] = {}
        for p in read_ip(pcap):
            if isinstance(p, IpPacket) and p.proto == 50 and p.dst == self.victim_addr and len(p.payload) >= 8:
                spi, seq = int.from_bytes(p.payload[:4], "big"), int.from_bytes(p.payload[4:8], "big")
                if spi == self.state.spi:
                    out.setdefault(seq, p.packet)
        return out

    def ping(self, src: str | None = None) -> tuple[bytes, int]:
        """A new ICMP echo request (inner packet) from the attacker's protected address; its ICMP seq."""
        from scapy.layers.inet import ICMP, IP
        from scapy.packet import Raw

        self.icmp_seq += 1
        pkt = (IP(src=src or self.src_inner, dst=self.dst_inner, ttl=64)
               / ICMP(type=8, id=PROBE_ICMP_ID, seq=self.icmp_seq) / Raw(b"ipseclab issue 13 probe".ljust(56, b".")))
        return bytes(pkt), self.icmp_seq

    def step(self, name: str, packets: list[tuple[bytes, Sent]], wait: float = 0.6) -> None:
        """Send one step's packets in order, with the victim's counters around it."""
        before = self.lab.peer_counters(self.victim)
        if packets:
            self.lab.inject(self.victim, [p for p, _ in packets], wait=wait)
        after = self.lab.peer_counters(self.victim)
        self.run.steps.append({"step": name, "sent": [s.as_dict() for _, s in packets],
                               "before": before, "after": after})


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
    pr.step("exact replays of captured packets",
            [(pr.captured[s], Sent(f"replay of captured seq {s}", esp_seq=s,
                                   replies=(1 if protected else 2) if answerable else -1)) for s in old])
    base = top + 8
    order = [base + 3, base + 1, base + 2, base]
    made: dict[int, tuple[bytes, int]] = {}
    for seq in order:
        inner, icmp = pr.ping()
        made[seq] = (sa.protect(inner, seq=seq), icmp)
    pr.step("reordered inside the window", [(made[s][0], Sent(f"seq {s} (out of order)", s, made[s][1], 1))
                                            for s in order])
    pr.step("exact replay of a reordered ping",
            [(made[base + 1][0], Sent(f"replay of seq {base + 1}", base + 1, made[base + 1][1],
                                      1 if protected else 2))])
    high = base + 3
    if protected:
        high = base + 3 + window + 8
        edge = []
        for seq, label, replies in ((high, "new top H", 1), (high - window + 1, "left edge H-W+1", 1),
                                    (high - window, "just past the left edge H-W", 0)):
            inner, icmp = pr.ping()
            edge.append((sa.protect(inner, seq=seq), Sent(f"seq {seq}: {label}", seq, icmp, replies)))
        pr.step("window edges", edge)
    inner, icmp = pr.ping()
    forged = bytearray(sa.protect(inner, seq=high + FORGED_AHEAD))
    forged[-1] ^= 0x01  # the ICV's last byte
    pr.step("forged ICV far ahead", [(bytes(forged), Sent(f"seq {high + FORGED_AHEAD} with a bad ICV",
                                                          high + FORGED_AHEAD, icmp, 0))])
    inner, icmp = pr.ping()
    pr.step("after the forgery", [(sa.protect(inner, seq=high + 1),
                                   Sent(f"seq {high + 1}: the forgery did not move the window", high + 1, icmp, 1))],
            wait=1.5)


def _tfc(pr: _Prober) -> None:
    seq = pr.run.top + 1
    padded = pr.sa(tfc_pad_to=TFC_PAD_TO)
    inner, icmp = pr.ping()
    pr.step("TFC-padded ping", [(padded.protect(inner, seq=seq), Sent(f"seq {seq}: padded to {TFC_PAD_TO}",
                                                                      seq, icmp, 1))])
    sa = pr.sa(seq=seq)
    dummies = []
    for size in (0, 100, 1000):
        dummies.append((sa.dummy_packet(size), Sent(f"seq {sa.seq}: dummy of {size} bytes", sa.seq)))
    pr.step("dummy packets", dummies, wait=1.0)
    inner, icmp = pr.ping()
    pr.step("ping after the dummies", [(sa.protect(inner, seq=sa.seq + 1),
                                        Sent(f"seq {sa.seq + 1}: after the dummies", sa.seq + 1, icmp, 1))], wait=1.5)


def _access(pr: _Prober) -> None:
    sa = pr.sa(seq=pr.run.top)
    inner, icmp = pr.ping()
    pr.step("ping inside the SA (control)", [(sa.protect(inner), Sent(f"seq {sa.seq}: control", sa.seq, icmp, 1))])
    inner, icmp = pr.ping()
    pr.step("ping in the clear from inside the selectors", [(inner, Sent("clear", icmp_seq=icmp, clear=True))])
    inner, icmp = pr.ping(src=OUTSIDE_SELECTORS)
    pr.step(f"ping inside the SA from {OUTSIDE_SELECTORS}, outside the selectors",
            [(sa.protect(inner), Sent(f"seq {sa.seq}: from {OUTSIDE_SELECTORS}", sa.seq, icmp, 0))], wait=1.5)


PROBES = {"replay": _replay, "tfc": _tfc, "access": _access}


def run_probe(lab: Lab, kind: str, run_dir: Path, victim: str = "right") -> None:
    """Run probe ``kind`` at the lab's ``victim`` side and write ``probe.json`` (also when a step fails half-way)."""
    if kind not in PROBES:
        raise LabError(f"unknown probe {kind!r}; known: {', '.join(PROBES)}")
    pr = _Prober(lab, kind, victim)
    try:
        PROBES[kind](pr)
    finally:
        (run_dir / "probe.json").write_text(json.dumps(pr.run.as_dict(), indent=2) + "\n")

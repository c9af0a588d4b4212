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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabError
from .esp.esp import EspSA
from .lab.keys import parse_xfrm_state
from .lab.lab import Lab
from .lab.runtimes.process import EndpointHost
from .pcap.esp_keyfiles import read_esp_sa

PROBE_ICMP_ID = 0x1E13  # the ICMP echo identifier of every ping a probe makes (issue 13)
OUTSIDE_SELECTORS = "203.0.113.200"  # in neither side's protected /26 of the direct topology
TFC_PAD_TO = 1000  # ipseclab's TFC padding of its probe ping (payload bytes)
VICTIM_DUMMIES = 3  # dummy packets an ipseclab victim is told to send its peer (which must drop them unseen)
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
        status = lab.peer_counters(victim)
        self.state = (endpoint_victim_sa(lab, victim, status) if status.get("source") == "ipseclab"
                      else kernel_victim_sa(lab, victim, self.victim_addr))
        st = self.state
        self.run = ProbeRun(kind, victim, peer.driver.impl, st.spi_in, st.spi_out, st.window, st.esn, st.top)
        self.icmp_seq = 0
        self.captured = self._captured_requests()

    def sa(self, **kwargs: Any) -> EspSA:
        if self.state.mode != "tunnel":
            raise LabError(f"probes need a tunnel-mode SA, the victim's is {self.state.mode or 'unknown'}")
        return self.state.make(**kwargs)

    def _captured_requests(self) -> dict[int, bytes]:
        """The ESP packets the initiator sent on the victim's inbound SA so far, by sequence number."""
        from .pcap.reader import IpPacket, read_ip

        pcap = next(c.pcap for c in self.lab.captures if c.link is self.lab.topology.links[0])
        out: dict[int, bytes] = {}
        for p in read_ip(pcap):
            if isinstance(p, IpPacket) and p.proto == 50 and p.dst == self.victim_addr and len(p.payload) >= 8:
                spi, seq = int.from_bytes(p.payload[:4], "big"), int.from_bytes(p.payload[4:8], "big")
                if spi == self.state.spi_in:
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

    def victim_dummies(self, host: EndpointHost, count: int) -> None:
        """Have an ipseclab victim send ``count`` dummy packets (as large as its TFC padding), with both
        peers' counters around it: the other peer's kernel must take each and drop it without a word."""
        before, peer_before = self.lab.peer_counters(self.victim), self.lab.peer_counters(self.attacker)
        size = self.lab.peer(self.victim).config.tfc_padding
        sent = int(host.command({"cmd": "dummy", "size": size, "count": count}).get("sent", 0))
        time.sleep(0.6)
        self.run.steps.append({"step": "dummy packets from the victim", "sent": [], "dummies": sent, "size": size,
                               "before": before, "after": self.lab.peer_counters(self.victim),
                               "peer_before": peer_before, "peer_after": self.lab.peer_counters(self.attacker)})


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
    host = pr.lab.peer(pr.victim).host
    if isinstance(host, EndpointHost):  # the endpoint also sends dummies (its line protocol's dummy command)
        pr.victim_dummies(host, VICTIM_DUMMIES)


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

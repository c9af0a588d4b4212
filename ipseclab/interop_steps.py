"""Perform a lifecycle case's steps (testcases/steps.py) on a running lab, and record what happened.

The record, ``steps.json`` in the run directory, is what a case's check reads beside the trace: each
step with its host-clock start and end (the clock tcpdump stamps the captures with), what it saw
(a ping's summary, when the wire showed a rekey done, how long the kernel kept SAs after a peer was
killed, both sums of a TCP transfer), and each side's addresses as the other side and the links see
them.  It is written after every step, so a step that fails still leaves the steps before it.

Pings run in the background; once the steps are done, those still running are stopped (SIGINT), so a
case whose steps end when the wire shows what it waits for (``Until``) is not held by a ping sized for the
slowest run.  A stopped ping's entry says when it stopped and, from the echoes it got answers to, how many
of those sent before the drain (half a second plus the round trip of any ``Delay``) were answered: the
last ones' answers may still have been on their way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipseclab.testcases.steps import Delay, Kill, Ping, Rekey, Revive, StartChild, TcpTransfer, Until, Wait, WaitSasGone

from .errors import LabError
from .interop_wire import EVIDENCE, Wire, responder_link
from .lab.lab import Lab, PeerRun
from .lab.runtimes.docker import ContainerHost
from .lab.runtimes.process import EndpointHost
from .lab.runtimes.uml import UmlHost

STEPS_FILE = "steps.json"
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_REPLY = re.compile(r"(?:icmp_)?seq=(\d+)")
PING_DRAIN = 0.5  # seconds before a ping's stop whose echoes may still be unanswered, beside any Delay's round trip
UNTIL_POLL = 0.1  # seconds between two reads of the capture while an Until waits


class _Runner:
    def __init__(self, lab: Lab, run_dir: Path) -> None:
        self.lab = lab
        self.path = run_dir / STEPS_FILE
        topo = lab.topology
        self.record: dict[str, Any] = {
            "sides": {side: sorted({h.address, topo.public_address(side), *([h.address6] if h.address6 else [])})
                      for side, h in topo.hosts.items()},
            "steps": [],
        }
        self.pings: list[tuple[dict[str, Any], tuple[PeerRun, str, str]]] = []
        self.round_trip = 0.0  # what a Delay adds to a ping's round trip (both ways)
        self.since = 0.0  # when the last Until's event was done: the next one waits for a later one
        self.wire: Wire | None = None

    def write(self) -> None:
        self.path.write_text(json.dumps(self.record, indent=2) + "\n")

    def other(self, side: str) -> str:
        return "right" if side == "left" else "left"

    # --- the steps ---------------------------------------------------------------------------

    def run(self, step: object) -> None:
        entry: dict[str, Any] = {"step": type(step).__name__, **dataclasses.asdict(step),  # type: ignore[call-overload]
                                 "start": time.time()}
        self.record["steps"].append(entry)
        try:
            entry.update(self.perform(step, entry))
        finally:
            entry["end"] = time.time()
            self.write()

    def perform(self, step: object, entry: dict[str, Any]) -> dict[str, Any]:
        if isinstance(step, Ping):
            return self.ping(step, entry)
        if isinstance(step, Wait):
            time.sleep(step.seconds)
            return {}
        if isinstance(step, Until):
            return self.until(step)
        if isinstance(step, Rekey):
            return self.rekey(step)
        if isinstance(step, StartChild):
            peer = self.lab.peer(step.side)
            name = f"{peer.config.name}-{step.index + 1}"
            return {"output": peer.driver.initiate_child(peer.host, peer.config, name, 30)}
        if isinstance(step, Kill):
            return self.kill(self.lab.peer(step.side))
        if isinstance(step, Revive):  # Lab.peer() refuses a peer that is not running: this one was killed
            return self.revive(self.lab.peers[step.side])
        if isinstance(step, WaitSasGone):
            return self.wait_sas_gone(self.lab.peer(step.side), step.within)
        if isinstance(step, Delay):
            for side in ("left", "right"):
                peer = self.lab.peer(side)
                if isinstance(peer.host, EndpointHost):  # the host kernel may lack netem: the endpoint holds its sends
                    peer.host.command({"cmd": "delay", "ms": step.ms})
                    continue
                dev = _transit_dev(peer)
                peer.host.exec(f"modprobe sch_netem 2>/dev/null; tc qdisc replace dev {dev} root "
                               f"netem delay {step.ms}ms", timeout=30)
                self.lab.shaped[side] = dev  # next_cell drops what netem still holds before its captures start
            self.round_trip = 2 * step.ms / 1000
            return {}
        if isinstance(step, TcpTransfer):
            return self.tcp(step)
        raise LabError(f"unknown lifecycle step {step!r}")

    def _ping_addresses(self, step: Ping) -> tuple[str, str]:
        peer = self.lab.peer(step.side)
        topo = self.lab.topology
        if step.child:
            local, remote = peer.config.extra_children[step.child - 1]
            return str(next(local.hosts())), str(next(remote.hosts()))
        if peer.config.mode == "transport":
            return topo.hosts[step.side].address, topo.public_address(self.other(step.side))
        return topo.hosts[step.side].protected_addr, topo.hosts[self.other(step.side)].protected_addr

    def ping(self, step: Ping, entry: dict[str, Any]) -> dict[str, Any]:
        """Start the pings in the background (a shell job in a guest, or in the endpoint's namespace)."""
        count = max(1, round(step.seconds / step.interval))
        peer = self.lab.peer(step.side)
        src, dst = self._ping_addresses(step)
        log = f"ping-{len(self.pings) + 1}.txt"
        # a guest's /ipl is its host directory; the endpoint's namespace shares the host's file system
        where = peer.host.dir if isinstance(peer.host, EndpointHost) else Path("/ipl")
        _, out = peer.host.exec(f"ping -n -c {count} -i {step.interval} -s {step.size} -W 5 -I {src} {dst} "
                                f"> {where / log} 2>&1 & echo $!", timeout=30)
        pid = out.split()[-1] if out.split() else ""
        self.pings.append((entry, (peer, log, pid if pid.isdigit() else "")))
        return {"src": src, "dst": dst, "count": count}

    def until(self, step: Until) -> dict[str, Any]:
        """Read the capture next to the responder until it shows ``step.event`` done, then settle; never raises
        for a timeout (the record says ``seen: false``; the case's check names what is missing)."""
        if step.event not in EVIDENCE:
            raise LabError(f"unknown event {step.event!r} for Until (known: {', '.join(EVIDENCE)})")
        if self.wire is None:
            caps = {c.link.name: c.pcap for c in self.lab.captures}
            if not caps:
                raise LabError("Until needs the lab's captures, and there are none")
            self.wire = Wire(caps[responder_link(list(caps))], self.record["sides"])
        started = time.time()
        done: float | None = None
        while True:
            self.wire.poll()
            done = EVIDENCE[step.event](self.wire, step.side, self.since)
            now = time.time()
            if (done is not None and now >= done + step.settle) or now >= started + step.within:
                break
            time.sleep(UNTIL_POLL)
        if done is not None:
            self.since = done
        return {"seen": done is not None, "done_at": done, "waited": round(time.time() - started, 2)}

    def finish_pings(self) -> None:
        """Stop every ping still running and record each one's summary (transmitted, received); a stopped one's
        also when it stopped and which of its echoes had time to be answered (module docstring)."""
        for entry, job in self.pings:
            peer, log, pid = job
            path = peer.host.dir / log
            text = path.read_text(errors="replace") if path.exists() else ""
            if not _PING_SUMMARY.search(text) and pid and time.time() < entry["start"] + entry["seconds"]:
                entry["stopped"] = time.time()
                peer.host.exec(f"kill -INT {pid} 2>/dev/null", timeout=30, check=False)
            deadline = (entry["stopped"] + 10) if "stopped" in entry else entry["start"] + entry["seconds"] + 20
            while time.time() < deadline:
                text = path.read_text(errors="replace") if path.exists() else ""
                if _PING_SUMMARY.search(text):
                    break
                time.sleep(0.1)
            m = _PING_SUMMARY.search(text)
            entry["transmitted"], entry["received"] = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
            entry["summary"] = m.group(0) if m else text.strip().splitlines()[-1:] or "no summary"
            if "stopped" in entry:
                entry.update(settled_echoes(text, entry["transmitted"], entry["interval"],
                                            PING_DRAIN + self.round_trip))
        self.pings.clear()
        self.write()

    def rekey(self, step: Rekey) -> dict[str, Any]:
        """One side's rekey command, or both sides' at once (a thread each; their times in the record)."""
        sides = ["left", "right"] if step.side == "both" else [step.side]
        peers = [self.lab.peer(side) for side in sides]
        out: dict[str, Any] = {}

        def one(peer: PeerRun) -> None:
            started = time.time()
            try:
                out[peer.side] = {"output": peer.driver.rekey(peer.host, peer.config, step.what, 30)}
            except LabError as exc:
                out[peer.side] = {"error": str(exc)}
            out[peer.side]["start"] = started

        threads = [threading.Thread(target=one, args=(peer,), daemon=True) for peer in peers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        errors = [f"{side}: {r['error']}" for side, r in out.items() if "error" in r]
        if errors:
            raise LabError("rekey refused: " + "; ".join(errors))
        return out

    def kill(self, peer: PeerRun) -> dict[str, Any]:
        if isinstance(peer.host, EndpointHost):
            peer.host.kill()
            return {"killed": "the endpoint process"}
        daemon = peer.driver.daemon
        _, out = peer.host.exec(f"kill -9 $(busybox pidof {daemon}); ip xfrm state flush; ip xfrm policy flush; "
                                f"busybox pidof {daemon} || echo {daemon} gone", timeout=30, check=False)
        return {"killed": daemon, "output": out}

    def revive(self, peer: PeerRun) -> dict[str, Any]:
        """The killed peer started again (its driver's revive_script in its guest; a new endpoint process)."""
        if isinstance(peer.host, EndpointHost):
            peer.host.revive()
            return {"revived": "the endpoint process", "ready_in": round(peer.host.wait_ready(), 2)}
        addressing = self.lab.topology.hosts[peer.side]
        _, out = peer.host.exec(peer.driver.revive_script(peer.config, addressing), timeout=60)
        return {"revived": peer.driver.daemon, "output": out}

    def wait_sas_gone(self, peer: PeerRun, within: float) -> dict[str, Any]:
        """Poll the guest's kernel (inside the guest: one exec) until it holds no SA; when it went, host time.
        The endpoint holds no kernel SA: its data plane's pairs (``status``) are polled instead."""
        started = time.time()
        if isinstance(peer.host, EndpointHost):
            left: object = "?"
            while time.time() < started + within:
                left = len(peer.driver.counters(peer.host).get("child_sas", {}))
                if left == 0:
                    break
                time.sleep(0.2)
            return {"gone": left == 0, "sas_left": str(left), "gone_at": time.time() if left == 0 else None,
                    "waited": round(time.time() - started, 2)}
        tries = int(within / 0.2)
        _, out = peer.host.exec(
            f"i=0; while [ $(ip xfrm state | grep -c '^src') -gt 0 ] && [ $i -lt {tries} ]; do sleep 0.2; "
            "i=$((i+1)); done; ip xfrm state | grep -c '^src'", timeout=within + 30, check=False)
        left = out.strip().splitlines()[-1] if out.strip() else "?"
        gone = left == "0"
        return {"gone": gone, "sas_left": left, "gone_at": time.time() if gone else None,
                "waited": round(time.time() - started, 2)}

    def tcp(self, step: TcpTransfer) -> dict[str, Any]:
        left, right = self.lab.peer("left"), self.lab.peer("right")
        topo = self.lab.topology
        dst = (topo.hosts["right"].address if right.config.mode == "transport"
               else topo.hosts["right"].protected_addr)
        # the endpoint's namespace shares the host's file system: its files go in its own directory
        www = f"{right.host.dir}/www" if isinstance(right.host, EndpointHost) else "/run/www"
        blob = f"{left.host.dir}/blob" if isinstance(left.host, EndpointHost) else "/tmp/blob"
        _, served = right.host.exec(
            f"mkdir -p {www} && head -c {step.nbytes} /dev/urandom > {www}/blob && "
            f"sha256sum {www}/blob && busybox httpd -p 8080 -h {www}", timeout=60)
        _, got = left.host.exec(
            # not wget -T: bookworm's busybox 1.35 wget segfaults with it (seen); timeout(1) bounds it instead
            f"timeout 60 busybox wget -q -O {blob} http://{dst}:8080/blob; echo rc=$?; wc -c < {blob}; "
            f"sha256sum {blob}", timeout=90, check=False)
        return {"server": dst, "served_sha256": served.split()[0] if served.split() else "",
                "client_output": got, "received_sha256": _sha_line(got), "received_bytes": _wc_line(got)}


def settled_echoes(text: str, transmitted: int, interval: float, drain: float) -> dict[str, Any]:
    """Of a ping stopped with ``transmitted`` echoes sent, those sent more than ``drain`` seconds before the
    stop (every ``interval`` s, the last just before it) and how many of them ping printed an answer to."""
    settled = max(0, transmitted - math.ceil(drain / interval))
    answered = {int(n) for line in text.splitlines() if "bytes from" in line and "DUP!" not in line
                for n in _PING_REPLY.findall(line)}
    return {"drain": drain, "settled_transmitted": settled,
            "settled_received": len({n for n in answered if n <= settled})}


def _sha_line(text: str) -> str:
    m = re.search(r"^([0-9a-f]{64})\s", text, re.M)
    return m.group(1) if m else ""


def _wc_line(text: str) -> int:
    m = re.search(r"^\s*(\d+)\s*$", text, re.M)
    return int(m.group(1)) if m else 0


def _transit_dev(peer: PeerRun) -> str:
    """The guest's transit interface: a UML guest's vec0, or the veth itself for a daemon in a container."""
    host = peer.host
    if isinstance(host, UmlHost) or (isinstance(host, ContainerHost) and host.uml):
        return "vec0"
    if isinstance(host, ContainerHost):
        return host.ifname
    raise LabError(f"the {peer.side} peer ({peer.driver.impl}) has no shell to delay packets in")


def run_steps(lab: Lab, steps: Sequence[object], run_dir: Path) -> dict[str, Any]:
    """Perform ``steps`` in order, then wait for background pings; returns (and writes) the record."""
    runner = _Runner(lab, run_dir)
    try:
        for step in steps:
            runner.run(step)
    finally:
        runner.finish_pings()
    return runner.record


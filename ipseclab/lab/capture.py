"""Packet capture on every link of the lab, independent of the peers: one tcpdump per capture point."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabError
from .proc import in_netns, require_tool, spawn, stop, tail
from .topology import Link


@dataclass(slots=True)
class Capture:
    """A running tcpdump writing ``pcap`` for one link."""

    link: Link
    pcap: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.pcap.with_suffix(".tcpdump.log")


def start_capture(link: Link, run_dir: Path, timeout: float = 10) -> Capture:
    """Start tcpdump on the link's capture end; returns once tcpdump is listening."""
    require_tool("tcpdump")
    pcap = run_dir / f"{link.name}.pcap"
    log = pcap.with_suffix(".tcpdump.log")
    # -U and --immediate-mode: every packet reaches the file at once, so stopping loses nothing.  -B: a 32 MiB
    # kernel buffer (tcpdump's default is 2 MiB), so a burst from a fast sender (the ipseclab endpoint on the host
    # kernel; seen: 32 of 232 packets "dropped by kernel" in a TCP download) waits while tcpdump is descheduled
    cmd = in_netns(link.capture_ns, ["tcpdump", "-n", "-i", link.capture_if, "-s", "0", "-U", "--immediate-mode",
                                     "-B", "32768", "-w", str(pcap)])
    proc = spawn(cmd, log)
    cap = Capture(link, pcap, proc)
    deadline = time.monotonic() + timeout
    while "listening on" not in tail(log):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise LabError(f"tcpdump on {link.capture_if} ({link.capture_ns}) did not start", command=cmd,
                           output=tail(log))
        time.sleep(0.02)
    return cap


# stop_capture waits until the pcap has not grown for QUIET seconds (at most SETTLE_MAX) before it stops tcpdump
QUIET, SETTLE_MAX = 0.06, 1.0


def stop_capture(cap: Capture) -> None:
    """Stop tcpdump with SIGINT so it flushes and closes the file, once the file has stopped growing.

    tcpdump drops, at SIGINT, what the kernel holds for it but it has not read yet: on a loaded host a cell's
    last ping and its reply were "received by filter" but not captured (seen 2026-12-01, 18 of 20 frames), and
    the cell failed for want of them.  Waiting until the file is quiet lets a descheduled tcpdump catch up."""
    import signal

    size, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + SETTLE_MAX
    while cap.proc.poll() is None and time.monotonic() < deadline:
        now_size = cap.pcap.stat().st_size if cap.pcap.exists() else 0
        if now_size != size:
            size, quiet_since = now_size, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET:
            break
        time.sleep(0.02)
    stop(cap.proc, sig=signal.SIGINT, grace=5)

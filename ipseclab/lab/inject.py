"""Send IP packets as Ethernet frames on an interface, from inside a lab namespace (KernelPeer.inject).

Run as ``ip netns exec NS python -m ipseclab.lab.inject IFACE [SRC_MAC DST_MAC]``: it reads one batch per line
on stdin, sends it, and answers ``ok N`` on stdout.  A batch is a JSON list of hex packets, sent from SRC_MAC to
DST_MAC, or ``{"src": MAC, "dst": MAC, "packets": [...]}`` with its own addresses (``Injector``: the process
can start before the lab knows them).  A separate, long-lived process because entering a network namespace is
per process; it sends on a packet socket of its own (no Scapy: its import cost every probe cell ~0.5 CPU-s).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from ..errors import LabError
from ..pcap.reader import capture_records
from .proc import in_netns


class Injector:
    """This module run as a process in namespace ``ns``, sending on ``iface``: started at once (its start-up runs
    while the caller goes on), told the frames' addresses with each batch (``send``)."""

    def __init__(self, ns: str, iface: str, log: Path) -> None:
        self.log = log
        cmd = in_netns(ns, [sys.executable, "-m", "ipseclab.lab.inject", iface])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     stderr=open(log, "w"))  # noqa: SIM115
        self.macs: tuple[str, str] | None = None  # (source, destination) of the frames; send needs them

    def send(self, ip_packets: list[bytes], wait: float = 0.0) -> None:
        """Send IP packets in order as Ethernet frames; returns once sent (then waits ``wait`` seconds)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.macs is None:
            raise LabError("the packet injector has no MAC addresses to send from and to")
        batch = {"src": self.macs[0], "dst": self.macs[1], "packets": [p.hex() for p in ip_packets]}
        try:
            self.proc.stdin.write(json.dumps(batch) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except (OSError, ValueError):
            answer = ""
        if not answer.startswith("ok"):
            raise LabError("the packet injector failed", output=self.log.read_text(errors="replace"))
        if wait:
            time.sleep(wait)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def macs_from_capture(pcap: Path, address: str) -> tuple[str, str] | None:
    """(the MAC that sends from IPv4 ``address``, the MAC it sends to) in an Ethernet capture, or None:
    where a lab guest's frames come from and go to, learned from the wire rather than from the guest."""
    import ipaddress

    want = ipaddress.IPv4Address(address).packed
    for rec in capture_records(pcap):
        if isinstance(rec, str):
            break
        data, _, linktype = rec
        if linktype == 1 and len(data) >= 34 and data[12:14] == b"\x08\x00" and data[26:30] == want:
            return data[6:12].hex(":"), data[0:6].hex(":")
    return None


def frame(src: str, dst: str, packet: bytes) -> bytes:
    """``packet`` (IPv4 or IPv6) as an Ethernet II frame from MAC ``src`` to ``dst``."""
    etype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + etype.to_bytes(2, "big") + packet


def main(argv: list[str]) -> int:
    # a packet socket of its own, not Scapy's L2socket: Scapy's import was ~0.5 CPU-s of every probe cell
    import socket

    iface, *macs = argv
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            batch = json.loads(line)
            if isinstance(batch, dict):
                src, dst, hexes = batch["src"], batch["dst"], batch["packets"]
            else:
                (src, dst), hexes = macs, batch
            packets = [bytes.fromhex(h) for h in hexes]
            for data in packets:
                sock.send(frame(src, dst, data))
            print(f"ok {len(packets)}", flush=True)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

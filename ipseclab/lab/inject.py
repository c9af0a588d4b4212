"""Send IP packets as Ethernet frames on an interface: run inside a lab namespace by KernelPeer.inject.

Usage: ``python -m ipseclab.lab.inject SPOOL.json`` where the spool names the interface, the source
and destination MAC addresses and the packets (hex).  A separate process because entering a
network namespace is per process; Scapy's ``sendp`` puts the frames on the wire.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.sendrecv import sendp

    with open(argv[0]) as fh:
        spec = json.load(fh)
    frames = []
    for hexdata in spec["packets"]:
        data = bytes.fromhex(hexdata)
        etype = 0x86DD if data[0] >> 4 == 6 else 0x0800
        frames.append(Ether(src=spec["src"], dst=spec["dst"], type=etype) / Raw(data))
    sendp(frames, iface=spec["iface"], verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

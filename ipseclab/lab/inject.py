"""Send IP packets as Ethernet frames on an interface, from inside a lab namespace (KernelPeer.inject).

Run as ``ip netns exec NS python -m ipseclab.lab.inject IFACE SRC_MAC DST_MAC``: it reads one JSON
list of hex packets per line on stdin, sends them, and answers ``ok N`` on stdout.  A separate,
long-lived process because entering a network namespace is per process, and Scapy's import
(~0.7 s) is paid once per lab instead of once per batch.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import scapy.arch  # noqa: F401  (loads the Linux arch layer, which sets conf.L2socket)
    from scapy.config import conf
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    iface, src, dst = argv
    sock = conf.L2socket(iface=iface)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            packets = [bytes.fromhex(h) for h in json.loads(line)]
            for data in packets:
                etype = 0x86DD if data[0] >> 4 == 6 else 0x0800
                sock.send(Ether(src=src, dst=dst, type=etype) / Raw(data))
            print(f"ok {len(packets)}", flush=True)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

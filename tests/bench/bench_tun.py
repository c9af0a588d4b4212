"""Throughput through the endpoint's TUN path (root, under the lab lock): two ipseclab endpoints, one per namespace.

Run: ``flock /tmp/ipseclab-lab.lock sudo .venv/bin/python -m tests.bench.bench_tun [--seconds 5]``.

The lab's direct topology (two namespaces joined by a veth, no capture) with an ipseclab endpoint in each,
tunnel mode between the protected subnets; iperf3 (TCP, one stream) from left's protected address to right's
crosses both endpoints' TUN devices and their ESP, and the same iperf3 between the transit addresses, which
no selector covers, goes in the clear: both in the same run, side by side (a Markdown table).  One row per
ESP suite.  The endpoint is Python: expect tens of Mbit/s, against the kernel's Gbit/s in the clear.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ipseclab.interop import case_configs
from ipseclab.lab import netns
from ipseclab.lab.impls.ipseclab import IpseclabDriver
from ipseclab.lab.lab import new_run_id
from ipseclab.lab.proc import in_netns
from ipseclab.lab.runtimes.process import EndpointHost
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

SUITES = ("aes128gcm16", "aes128-sha256")


def iperf(client_ns: str, server_ns: str, src: str, dst: str, seconds: int) -> float:
    """Mbit/s that the receiver counted for one TCP stream of ``seconds`` from src to dst."""
    server = subprocess.Popen(in_netns(server_ns, ["iperf3", "-s", "-1", "-B", dst]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = subprocess.run(in_netns(client_ns, ["iperf3", "-c", dst, "-B", src, "-t", str(seconds), "-J"]),
                             capture_output=True, text=True, timeout=seconds + 30)
        doc = json.loads(out.stdout or "{}")
        if "end" not in doc:
            raise SystemExit(f"iperf3 {src} -> {dst} failed: {doc.get('error') or out.stderr.strip()}")
        return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        server.wait(timeout=10) if server.poll() is not None else server.kill()


def one_suite(suite: str, seconds: int) -> tuple[float, float, dict[str, int]]:
    """(Mbit/s through the tunnel, Mbit/s in the clear, left endpoint's data plane counters) for one ESP suite."""
    topo = make_topology("direct", new_run_id())
    case = dataclasses.replace(by_name("esp-tunnel"), child_proposal=suite, ike_proposal="aes128gcm16-prfsha256-x25519")
    left_cfg, right_cfg = case_configs(case, topo)
    hosts: list[EndpointHost] = []
    with tempfile.TemporaryDirectory(prefix="ipseclab-bench-tun-") as tmp:
        try:
            netns.create(topo, {})
            for side, cfg in (("left", left_cfg), ("right", right_cfg)):
                d = Path(tmp) / side
                d.mkdir()
                IpseclabDriver().write_config(cfg, d)
                ns, ifname = topo.attach[side]
                host = EndpointHost(side, ns, ifname, topo.hosts[side], d)
                host.boot()
                host.wait_ready()
                hosts.append(host)
            left = hosts[0]
            left.command({"cmd": "initiate"})
            event = left.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed"), 20)
            if event["type"] != "ChildSaEstablished":
                raise SystemExit(f"{suite}: no Child SA: {event}")
            lh, rh = topo.hosts["left"], topo.hosts["right"]
            lns, rns = topo.attach["left"][0], topo.attach["right"][0]
            tunnel = iperf(lns, rns, lh.protected_addr, rh.protected_addr, seconds)
            clear = iperf(lns, rns, lh.address, rh.address, seconds)
            counters = left.command({"cmd": "status"})["dataplane"]
            return tunnel, clear, counters
        finally:
            for h in hosts:
                h.halt()
            netns.destroy(topo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run")
    args = ap.parse_args(argv)
    if shutil.which("iperf3") is None:
        print("bench_tun: iperf3 is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    print("| ESP suite | through the TUN path (Mbit/s) | in the clear (Mbit/s) | ratio | left: packets out/in, drops |")
    print("|---|---|---|---|---|")
    for suite in SUITES:
        tunnel, clear, c = one_suite(suite, args.seconds)
        drops = {k: v for k, v in c.items() if k not in ("packets_out", "packets_in", "checksum_fixed") and v}
        print(f"| {suite} | {tunnel:.1f} | {clear:.1f} | {tunnel / clear:.3f} | "
              f"{c['packets_out']}/{c['packets_in']}, {drops or 'none'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

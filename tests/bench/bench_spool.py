"""The UML spool's cost (root): how fast a command reaches a guest and comes back, what it costs, and what two
idle guests cost, with the agent woken through its console (what a UmlHost guest does) beside the agent polling
its spool (``IPSECLAB_UML_WAKE=0``: what every guest did before, and a container's guest still does), measured
in the same run on this machine.

Run: ``sudo .venv/bin/python -m tests.bench.bench_spool [--runs 30]`` (a Markdown table).  CPU is the whole
machine's (user + system from /proc/stat, the hypervisor's steal left out), so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ipseclab.interop import case_configs
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.runtimes.uml import WAKE_ENV
from ipseclab.lab.runtimes.uml_probe import host_cpu
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

HZ = os.sysconf("SC_CLK_TCK")


def busy() -> float:
    """CPU-seconds the machine has been busy (user, nice, system, irq, softirq; not idle, iowait or steal)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ


def measure(runs: int, run_dir: Path) -> dict[str, float]:
    case = by_name("esp-tunnel")
    left, right = case_configs(case, make_topology(case.topology, "bench"))
    out: dict[str, float] = {}
    with Lab(LabSpec(left, right, "direct", "strongswan", "libreswan", "uml"), run_dir=run_dir) as lab:
        lab.initiate("left")
        time.sleep(3)  # past the polling agent's 2 s of 10 ms looks after the last command
        b = busy()
        time.sleep(5)
        out["idle"] = (busy() - b) / 5 * 100
        lab.exec("left", ":")
        lab.exec("right", ":")
        b = busy()
        time.sleep(1.5)
        out["after"] = (busy() - b) / 1.5 * 100
        latency = []
        for _ in range(runs):
            t = time.monotonic()
            lab.exec("left", ":")
            latency.append(time.monotonic() - t)
            time.sleep(0.1)
        out["latency"] = statistics.median(latency) * 1000
        b, t = busy(), time.monotonic()
        for _ in range(runs):
            lab.exec("left", ":")
        out["b2b"] = (time.monotonic() - t) / runs * 1000
        out["b2b_cpu"] = (busy() - b) / runs * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30, help="commands per latency figure")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ipseclab-bench-spool-") as runs_dir:
        for name, value in (("woken (console)", "1"), ("polling (before)", "0")):
            os.environ[WAKE_ENV] = value
            try:
                results[name] = measure(args.runs, Path(runs_dir) / value)
            finally:
                del os.environ[WAKE_ENV]
    names = list(results)
    print(f"CPU: {host_cpu().describe()}; strongswan -> libreswan under UML, SAs up\n")
    print(f"| measurement | {' | '.join(names)} |")
    print("|---|" + "---:|" * len(names))
    for key, label, unit in (
        ("idle", "two idle guests (3 s after the last command), % of a CPU", "%"),
        ("after", "two guests in the 1.5 s after a command, % of a CPU", "%"),
        ("latency", f"a command's round trip (`:`, median of {args.runs}, 0.1 s apart)", "ms"),
        ("b2b", f"{args.runs} commands back to back, each", "ms"),
        ("b2b_cpu", "CPU per command back to back", "CPU-ms"),
    ):
        print(f"| {label} | {' | '.join(f'{results[n][key]:.1f} {unit}' for n in names)} |")


if __name__ == "__main__":
    main()

"""What starting an ipseclab endpoint costs the machine: forked by the zygote that imported the endpoint's modules
once (``endpoint/zygote.py``, what EndpointHost does: one endpoint a matrix cell on the ipseclab side) beside a
fresh ``python -m ipseclab.endpoint`` (``IPSECLAB_ENDPOINT_ZYGOTE=0``: what every cell did before), in the same run.

Each endpoint is given a spec file that does not exist, so it ends where a real one would go on to read its spec:
the figures are the start-up alone (interpreter and imports, or the fork), in this process's namespace, with no
socket or TUN device made.  Run: ``.venv/bin/python -m tests.bench.bench_endpoint_start [--runs 20]`` (a Markdown
table); CPU is the whole machine's (user + system from /proc/stat, steal left out), so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ipseclab.lab.runtimes.process import Zygote
from ipseclab.lab.runtimes.uml_probe import host_cpu

from .bench_spool import busy


def fresh(spec: Path, stderr: Path) -> None:
    with open(stderr, "w") as err:
        subprocess.run([sys.executable, "-m", "ipseclab.endpoint", str(spec)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=err, check=False, timeout=60)


def measure(runs: int, tmp: Path) -> dict[str, tuple[float, float]]:
    """{way: (CPU-ms a start, ms a start)}, medians over ``runs``."""
    spec = tmp / "missing.json"
    zygote = Zygote("", tmp / "zygote.log")
    try:
        zygote.fork(spec, tmp / "warm.stderr").wait(60)  # the zygote's own imports are not a cell's
        ways = {"fresh process": lambda: fresh(spec, tmp / "fresh.stderr"),
                "forked by the zygote": lambda: zygote.fork(spec, tmp / "forked.stderr").wait(60)}
        out = {}
        for way, start in ways.items():
            cpu, wall = [], []
            for _ in range(runs):
                c0, t0 = busy(), time.monotonic()
                start()
                wall.append(time.monotonic() - t0)
                cpu.append(busy() - c0)
            out[way] = (statistics.median(cpu) * 1000, statistics.median(wall) * 1000)
        for way in ("fresh.stderr", "forked.stderr"):  # both ended where a spec is read, not earlier
            if "cannot use" not in (tmp / way).read_text():
                raise SystemExit(f"the endpoint did not get as far as its spec: see {tmp / way}")
        return out
    finally:
        zygote.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(args.runs, Path(tmp))
    print(f"Endpoint start-up, median of {args.runs} ({host_cpu().describe()}):\n")
    print("| how | CPU a start | wall a start |\n|---|---:|---:|")
    for way, (cpu, wall) in res.items():
        print(f"| {way} | {cpu:.0f} CPU-ms | {wall:.0f} ms |")


if __name__ == "__main__":
    main()

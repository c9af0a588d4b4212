"""Lab timings (root): cold image builds, cached reuse, UML peer readiness, lab up + down.

Run: ``sudo .venv/bin/python -m tests.bench.bench_lab [--cold]`` (prints a Markdown table).
``--cold`` builds both images into a fresh temporary cache (needs Debian's mirrors, ~1 min).
The kernel is the lab's own choice (``ipseclab kernel``); ``IPSECLAB_UML_KERNEL=system`` measures
bookworm's 6.1 instead, for a before/after on a CPU where both boot.
Targets from the lab issue: cold build < 90 s each, cached reuse < 2 s, a UML peer ready to
negotiate < 5 s, lab up and down for two peers < 15 s in total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ipseclab.interop import case_configs
from ipseclab.lab.images import build_image
from ipseclab.lab.kernel import select_kernel
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.probe import check_kernel, host_cpu
from ipseclab.lab.topology import make_topology
from testcases import by_name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="also time cold image builds in a fresh cache")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    kernel = select_kernel()  # chosen before --cold points the cache elsewhere
    t = time.monotonic()
    verdict = check_kernel(kernel, again=True)  # booted now, to measure it; labs use the cached verdict
    if not verdict.ok:
        raise verdict.error()
    rows.append(("start-up probe (boot to init; cached per kernel and CPU)", f"{time.monotonic() - t:.2f} s",
                 "~1 s"))
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="ipseclab-bench-cache-") as cache:
            old = os.environ.get("IPSECLAB_CACHE")
            os.environ["IPSECLAB_CACHE"] = cache
            try:
                for impl in ("strongswan", "libreswan"):
                    t = time.monotonic()
                    build_image(impl, kernel)
                    rows.append((f"cold image build, {impl}", f"{time.monotonic() - t:.1f} s", "< 90 s"))
            finally:
                if old is None:
                    del os.environ["IPSECLAB_CACHE"]
                else:
                    os.environ["IPSECLAB_CACHE"] = old
    for impl in ("strongswan", "libreswan"):
        build_image(impl, kernel)
        t = time.perf_counter()
        build_image(impl, kernel)
        rows.append((f"cached image reuse, {impl}", f"{(time.perf_counter() - t) * 1000:.2f} ms", "< 2 s"))
    case = by_name("esp-tunnel")
    left, right = case_configs(case, make_topology(case.topology, "probe"))
    ready: dict[str, list[float]] = {"strongswan": [], "libreswan": []}
    totals, negotiate = [], []
    with tempfile.TemporaryDirectory(prefix="ipseclab-bench-runs-") as runs:
        for i in range(args.runs):
            t = time.monotonic()
            lab = Lab(LabSpec(left, right, "direct", "strongswan", "libreswan"), run_dir=Path(runs) / str(i))
            with lab:
                up = time.monotonic()
                lab.initiate("left")
                negotiate.append(time.monotonic() - up)
                # up includes both guests booting in parallel; each guest's own time to ready:
                ready["strongswan"].append(lab.timings.boot["left"])
                ready["libreswan"].append(lab.timings.boot["right"])
            totals.append(time.monotonic() - t - negotiate[-1])
    med = statistics.median
    rows.append(("UML peer ready (boot + daemon), strongswan", f"{med(ready['strongswan']):.2f} s", "< 5 s"))
    rows.append(("UML peer ready (boot + daemon), libreswan", f"{med(ready['libreswan']):.2f} s", "< 5 s"))
    rows.append(("IKE_SA_INIT + IKE_AUTH, strongswan -> libreswan", f"{med(negotiate):.2f} s", "-"))
    rows.append(("lab up + down, two peers (negotiation excluded)", f"{med(totals):.2f} s", "< 15 s"))
    print(f"kernel: {kernel.describe()}; CPU: {host_cpu().describe()}\n")
    print(f"| measurement (median of {args.runs} runs) | value | target |")
    print("|---|---:|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()

"""Lab timings (root): the start-up probe, image builds, cached reuse, peer readiness, lab up + down, one cell.

Run: ``sudo .venv/bin/python -m tests.bench.bench_lab [--cold] [--runtimes uml,docker]`` (a Markdown
table, one column per runtime, measured in the same run).  ``--cold`` builds the images from nothing:
the UML root filesystems into a fresh temporary cache, the docker images after removing ipseclab's
(they are rebuilt, so the machine ends as it started).  The kernel is the lab's own choice
(``ipseclab kernel``); ``IPSECLAB_UML_KERNEL=system`` measures bookworm's 6.1 instead, for a
before/after on a CPU where both boot.

Targets from the lab issues: cold build < 90 s per image, cached reuse < 2 s, a peer ready to
negotiate <= 5 s, lab up and down for two peers <= 15 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ipseclab.interop import case_configs, run_case
from ipseclab.lab.images import build_image
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.runtimes import docker_images
from ipseclab.lab.runtimes.uml_kernel import UmlKernel, select_kernel
from ipseclab.lab.runtimes.uml_probe import check_kernel, host_cpu
from ipseclab.lab.topology import make_topology
from ipseclab.matrix import PASSED
from ipseclab.testcases import by_name

IMPLS = ("strongswan", "libreswan")


def cold_builds(runtime: str, kernel: UmlKernel) -> dict[str, float]:
    out = {}
    if runtime == "uml":
        with tempfile.TemporaryDirectory(prefix="ipseclab-bench-cache-") as cache:
            old = os.environ.get("IPSECLAB_CACHE")
            os.environ["IPSECLAB_CACHE"] = cache
            try:
                for impl in IMPLS:
                    t = time.monotonic()
                    build_image(impl, kernel)
                    out[impl] = time.monotonic() - t
            finally:
                if old is None:
                    del os.environ["IPSECLAB_CACHE"]
                else:
                    os.environ["IPSECLAB_CACHE"] = old
        return out
    _, kept = docker_images.prune(everything=True)
    if kept:
        raise SystemExit(f"cannot measure a cold docker build: containers use {kept}")
    t = time.monotonic()
    docker_images.build_base(docker_images.engine())
    out["base"] = time.monotonic() - t
    for impl in IMPLS:
        out[impl] = docker_images.build(impl).built_in
    return out


def cached_check(runtime: str, kernel: UmlKernel, impl: str) -> float:
    build = (lambda: build_image(impl, kernel)) if runtime == "uml" else (lambda: docker_images.build(impl))
    build()
    t = time.perf_counter()
    build()
    return time.perf_counter() - t


def labs(runtime: str, runs: int) -> dict[str, float]:
    case = by_name("esp-tunnel")
    left, right = case_configs(case, make_topology(case.topology, "bench"))
    ready: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    totals, negotiate, cells = [], [], []
    with tempfile.TemporaryDirectory(prefix="ipseclab-bench-runs-") as runs_dir:
        for i in range(runs):
            t = time.monotonic()
            with Lab(LabSpec(left, right, "direct", "strongswan", "libreswan", runtime),
                     run_dir=Path(runs_dir) / str(i)) as lab:
                up = time.monotonic()
                lab.initiate("left")
                negotiate.append(time.monotonic() - up)
                ready["strongswan"].append(lab.timings.boot["left"])
                ready["libreswan"].append(lab.timings.boot["right"])
            totals.append(time.monotonic() - t - negotiate[-1])
            res = run_case(case, "strongswan", "libreswan", Path(runs_dir) / f"cell-{i}", runtime)
            if res.status != PASSED:
                raise SystemExit(f"the benchmark cell did not pass on {runtime}: {res.reason}")
            cells.append(res.seconds)
    med = statistics.median
    return {"ready strongswan": med(ready["strongswan"]), "ready libreswan": med(ready["libreswan"]),
            "negotiate": med(negotiate), "up+down": med(totals), "cell": med(cells)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="also time cold image builds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtimes", default="uml,docker", help="comma-separated: uml, docker")
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    kernel = select_kernel()  # chosen before --cold points the cache elsewhere
    t = time.monotonic()
    verdict = check_kernel(kernel, again=True)  # booted now, to measure it; labs use the cached verdict
    if not verdict.ok:
        raise verdict.error()
    probe = time.monotonic() - t
    rows: list[tuple[str, dict[str, str], str]] = [
        ("start-up probe (boot to init; cached per kernel and CPU)", {r: f"{probe:.2f} s" for r in runtimes},
         "~1 s")]
    if args.cold:
        cold = {r: cold_builds(r, kernel) for r in runtimes}
        if "docker" in cold:
            rows.append(("cold image build, bookworm base (docker)",
                         {r: f"{cold[r]['base']:.1f} s" if "base" in cold[r] else "-" for r in runtimes}, "-"))
        for impl in IMPLS:
            rows.append((f"cold image build, {impl}", {r: f"{cold[r][impl]:.1f} s" for r in runtimes}, "< 90 s"))
    for impl in IMPLS:
        rows.append((f"cached image check, {impl}",
                     {r: f"{cached_check(r, kernel, impl) * 1000:.2f} ms" for r in runtimes}, "< 2 s"))
    measured = {r: labs(r, args.runs) for r in runtimes}
    for key, label, target in (
        ("ready strongswan", "peer ready (boot + daemon), strongswan", "<= 5 s"),
        ("ready libreswan", "peer ready (boot + daemon), libreswan", "<= 5 s"),
        ("negotiate", "IKE_SA_INIT + IKE_AUTH, strongswan -> libreswan", "-"),
        ("up+down", "lab up + down, two peers (negotiation excluded)", "<= 15 s"),
        ("cell", "one matrix cell (esp-tunnel, strongswan -> libreswan)", "-"),
    ):
        rows.append((label, {r: f"{measured[r][key]:.2f} s" for r in runtimes}, target))
    print(f"kernel: {kernel.describe()}; CPU: {host_cpu().describe()}\n")
    print(f"| measurement (median of {args.runs} runs) | {' | '.join(runtimes)} | target |")
    print("|---|" + "---:|" * len(runtimes) + "---|")
    for name, values, target in rows:
        print(f"| {name} | {' | '.join(values[r] for r in runtimes)} | {target} |")


if __name__ == "__main__":
    main()

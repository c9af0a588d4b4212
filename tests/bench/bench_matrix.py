"""The full default matrix as scripts/test.sh runs it (root): wall time, the machine's CPU, and each cell's
seconds (their median, the cells that booted their pair apart), for each worker count and schedule asked for,
one after another on the same machine.  The figures of issue 13's goal (a median cell <= 1.5 s, the matrix
<= 3 minutes on 2 cores) are this bench's.

Schedules: ``kinds`` (tests/interop/conftest.py's, scripts/test.sh's: one worker a core on the computing
cells, the others on the lifecycle cells) and ``groups`` (the reference: the same groups, handed out in
xdist's order to any worker).

Run: ``sudo .venv/bin/python -m tests.bench.bench_matrix [--runs kinds:5,groups:4]`` (a Markdown table).  Each
run takes 2.5-5 minutes on 2 cores; run it on a quiet machine (the CPU is the whole machine's, from
/proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ipseclab.lab.runtimes.uml_probe import host_cpu
from ipseclab.matrix import UNSUPPORTED

from .bench_spool import busy

REPO = Path(__file__).resolve().parents[2]


def run(schedule: str, workers: int) -> dict[str, float | int | str]:
    """One pytest run of the matrix; its figures."""
    started = time.strftime("pytest-%Y%m%d-%H%M%S")
    env = dict(os.environ, IPSECLAB_MATRIX_SCHEDULE=schedule)
    c0, t0 = busy(), time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:hypothesispytest", "-p", "no:cacheprovider",
                           "-q", "tests/interop/test_matrix.py", "-n", str(workers)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall, cpu = time.monotonic() - t0, busy() - c0
    cells = []
    for results in (REPO / "runs").glob("pytest-*/results.json"):
        if results.parent.name[: len(started)] >= started:
            cells += json.loads(results.read_text())["results"]
    ran = [c for c in cells if c["status"] != UNSUPPORTED]
    if proc.returncode != 0 or not ran or any(c["status"] != "passed" for c in ran):
        tail = "\n".join(proc.stdout.splitlines()[-5:])
        raise SystemExit(f"{schedule} -n {workers}: the matrix did not pass (a bench of failing cells measures "
                         f"nothing):\n{tail}")
    booted = [c for c in ran if _cell_of_boot(c)]
    reused = [c["seconds"] for c in ran if not _cell_of_boot(c)]
    return {"schedule": schedule, "workers": workers, "wall": wall, "cpu": cpu, "cells": len(ran),
            "median": statistics.median(c["seconds"] for c in ran), "median_reused": statistics.median(reused),
            "boots": len(booted), "cell_seconds": sum(c["seconds"] for c in ran)}


def _cell_of_boot(cell: dict[str, str]) -> bool:
    """Whether the cell booted its peers (lab.json's timings.cell is its place on its boot)."""
    lab = Path(cell["run_dir"]) / "lab.json"
    return lab.exists() and json.loads(lab.read_text()).get("timings", {}).get("cell") == 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0))
    ap.add_argument("--runs", default=f"kinds:{cores + 3},groups:4",
                    help="SCHEDULE:WORKERS,... (schedules: kinds, groups; default: scripts/test.sh's, and the "
                         "reference with four workers)")
    args = ap.parse_args()
    rows = []
    for spec in args.runs.split(","):
        schedule, _, workers = spec.partition(":")
        if schedule not in ("kinds", "groups") or not workers.isdigit():
            raise SystemExit(f"--runs {spec!r}: write SCHEDULE:WORKERS, SCHEDULE one of kinds, groups")
        rows.append(run(schedule, int(workers)))
    print(f"The default matrix ({host_cpu().describe()}, {cores} cores)\n")
    print("| schedule | workers | wall | CPU-s | cells passed | median cell s | median, reused peers | boots "
          "| cell seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wall = float(r["wall"])
        print(f"| {r['schedule']} | {r['workers']} | {int(wall // 60)} min {wall % 60:02.0f} s | {float(r['cpu']):.0f} "
              f"| {r['cells']} | {float(r['median']):.2f} | {float(r['median_reused']):.2f} | {r['boots']} "
              f"| {float(r['cell_seconds']):.0f} |")


if __name__ == "__main__":
    main()

"""Where a matrix cell's CPU goes (root): one pair's cells run one at a time (``interop.run_matrix``, its pool
booting once a topology), with the machine's CPU while each phase of the lab ran and each UML guest's CPU from
one command handed to it to the next (the command and what its daemon did until the next one: a reset with the
daemon's start or reload, an initiate with the negotiation).

The phases are the lab's own methods, wrapped for the run (a phase inside another counts in the outer one);
a guest's CPU is its kernel process and its processes (UML runs each guest process as a host process), read
from /proc.  The figures of the rounds of issue 13 (README, the session notes) came from this kind of run.

Run: ``sudo .venv/bin/python -m tests.bench.bench_cell_cpu [--pair strongswan:libreswan] [--cases N]`` (Markdown
tables); CPU is the whole machine's (user + system from /proc/stat, steal left out), so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipseclab import interop
from ipseclab.lab import lab as lab_module
from ipseclab.lab.runtimes import uml
from ipseclab.lab.runtimes.uml_probe import host_cpu
from ipseclab.matrix import UNSUPPORTED
from ipseclab.pcap import trace
from ipseclab.testcases import ALL_CASES

from .bench_spool import busy

HZ = os.sysconf("SC_CLK_TCK")
PHASES: list[tuple[Any, str, str]] = [
    (lab_module.Lab, "up", "boot (Lab.up)"), (lab_module.Lab, "next_cell", "reset (Lab.next_cell)"),
    (lab_module.Lab, "initiate", "initiate"), (lab_module.Lab, "ping", "ping"),
    (lab_module.Lab, "end_cell", "end_cell"), (lab_module.Lab, "down", "down"),
    (trace.Trace, "load", "Trace.load (tshark; the drops run meanwhile)"),
    (interop, "run_steps", "lifecycle steps"), (interop, "check_ipseclab_decrypts", "ipseclab's own decryption"),
]


def tree_cpu(pid: int) -> float:
    """CPU-seconds of process ``pid`` (with its reaped children) and of its live descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15]) / HZ
        children = [c for t in os.listdir(f"/proc/{pid}/task")
                    for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return 0.0
    return total + sum(tree_cpu(int(c)) for c in children)


class Accounts:
    """What the wrapped phases and the guests' commands cost, summed by label: [count, wall, CPU]."""

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
        self.commands: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
        self._depth = 0
        self._open: dict[int, tuple[str, float]] = {}  # a guest's command running, and its CPU when handed over

    def phase(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0, c0 = time.monotonic(), busy()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                acc = self.phases[label]
                acc[0] += 1
                acc[1] += time.monotonic() - t0
                acc[2] += busy() - c0
        return wrapped

    def handed(self, host: uml.UmlHost, script: str | None) -> None:
        """``host`` gets its next command (None: it halts): the one before it ends here."""
        now = tree_cpu(host.proc.pid) if host.proc is not None else 0.0
        before = self._open.pop(id(host), None)
        if before is not None:
            acc = self.commands[before[0]]
            acc[0] += 1
            acc[2] += now - before[1]
        if script is not None:
            self._open[id(host)] = (f"{host.image.impl}: {command_name(script)}", now)


def command_name(script: str) -> str:
    """A command's kind: the reset, the kernel snapshot, a drop, or its first line."""
    if "=== xfrm_stat" in script and "mount -t hostfs" in script:
        return "reset, then start or reload"
    if script == lab_module.KERNEL_SNAPSHOT:
        return "kernel snapshot (keys, counters)"
    if script.startswith("ipl_pid=; read -r ipl_pid"):
        return "drop"
    first = next((line for line in script.splitlines() if line.strip()), "")
    return first[:70]


def run(pair: tuple[str, str], cases: int, out: Path) -> tuple[Accounts, int]:
    acc = Accounts()
    saved = [(owner, name, vars(owner)[name]) for owner, name, _ in PHASES]  # a classmethod as itself
    submit, halt = uml.UmlHost._submit, uml.UmlHost.halt

    def counted_submit(host: uml.UmlHost, spool: Path, script: str) -> Path:
        acc.handed(host, script)
        return submit(host, spool, script)

    def counted_halt(host: uml.UmlHost, timeout: float = 10) -> None:
        acc.handed(host, None)
        halt(host, timeout)

    try:
        for owner, name, label in PHASES:
            setattr(owner, name, acc.phase(getattr(owner, name), label))
        uml.UmlHost._submit = counted_submit  # type: ignore[method-assign]
        uml.UmlHost.halt = counted_halt  # type: ignore[method-assign]
        c0, t0 = busy(), time.monotonic()
        results = interop.run_matrix(list(ALL_CASES)[:cases], [pair], out, progress=False)
        acc.phases["whole run"] = [1, time.monotonic() - t0, busy() - c0]
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
        uml.UmlHost._submit, uml.UmlHost.halt = submit, halt  # type: ignore[method-assign]
    bad = [r for r in results if r.status not in ("passed", UNSUPPORTED)]
    if bad:
        raise SystemExit(f"{len(bad)} cells did not pass (a bench of failing cells measures nothing): "
                         + "; ".join(f"{r.case}: {r.status} {r.reason[:80]}" for r in bad[:3]))
    return acc, sum(r.status != UNSUPPORTED for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", default="strongswan:libreswan", help="INIT:RESP")
    ap.add_argument("--cases", type=int, default=len(ALL_CASES), help="the first N cases of the default matrix")
    args = ap.parse_args()
    init, resp = args.pair.split(":")
    with tempfile.TemporaryDirectory(prefix="ipseclab-bench-cell-cpu-") as tmp:
        acc, cells = run((init, resp), args.cases, Path(tmp))
    whole = acc.phases.pop("whole run")
    print(f"{init} -> {resp}, {cells} cells one at a time ({host_cpu().describe()}): {whole[1]:.1f} s, "
          f"{whole[2]:.1f} CPU-s ({whole[2] / max(cells, 1):.2f} a cell)\n")
    print("| phase | times | wall s | CPU-s |\n|---|---:|---:|---:|")
    for label, (n, wall, cpu) in sorted(acc.phases.items(), key=lambda kv: -kv[1][2]):
        print(f"| {label} | {n:.0f} | {wall:.1f} | {cpu:.1f} |")
    total = sum(c for _, _, c in acc.commands.values())
    print(f"\nThe guests: {total:.1f} CPU-s\n\n| guest: command | times | CPU-s | CPU-ms each |\n|---|---:|---:|---:|")
    for label, (n, _, cpu) in sorted(acc.commands.items(), key=lambda kv: -kv[1][2])[:20]:
        print(f"| {label.replace('|', '/')} | {n:.0f} | {cpu:.2f} | {cpu / n * 1000:.0f} |")


if __name__ == "__main__":
    main()

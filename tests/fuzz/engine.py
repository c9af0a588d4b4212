"""The long fuzz run of the IKE engine: ``python -m tests.fuzz.engine --seconds N [--seed S] [--save DIR]``.

The same targets, generators and properties as the CI fuzz tests (``tests/fuzz/targets.py``), driven by one
seeded ``random.Random`` in batches (a fresh target per batch, a few hundred inputs each) instead of one
Hypothesis example at a time.  One batch in ten against a side with keys is a flood of fragments made with the
peer's own keys, checked against the memory budget only (a peer with the keys may say anything).

It prints inputs per second, total inputs, escapes (exceptions out of the engine) and property violations,
per target and per generator, and the peak bytes of stored fragments and cached responses, per SA and over
all SAs (one ``MemoryBudget`` with the production defaults is shared by the whole run).  With ``--save`` each
escape or violation is written as JSON (target, seed, batch, the batch's inputs in hex) to replay.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.ike import MemoryBudget
from tests.fuzz.targets import (
    TARGETS,
    PropertyViolation,
    Target,
    attack,
    authentic_fragments,
    build,
    check_bounds,
    finish,
    pick,
)


@dataclass
class Stats:
    inputs: int = 0
    batches: int = 0
    escapes: int = 0
    violations: int = 0
    seconds: float = 0.0
    peak_fragment_bytes: int = 0  # one SA
    peak_response_bytes: int = 0
    peak_fragment_total: int = 0  # all SAs of the run's budget
    peak_response_total: int = 0
    per_target: Counter[str] = field(default_factory=Counter)
    per_generator: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, object]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _peaks(stats: Stats, t: Target, budget: MemoryBudget) -> None:
    stats.peak_fragment_bytes = max(stats.peak_fragment_bytes, t.conn.stored_fragment_bytes)
    stats.peak_response_bytes = max(stats.peak_response_bytes, t.conn.cached_response_bytes)
    stats.peak_fragment_total = max(stats.peak_fragment_total, budget.stored_fragment_bytes)
    stats.peak_response_total = max(stats.peak_response_total, budget.cached_response_bytes)


def _batch(rnd: random.Random, t: Target, stats: Stats, budget: MemoryBudget, inputs: list[bytes]) -> None:
    if t.keyed and rnd.random() < 0.1:
        for d in authentic_fragments(rnd, t, rnd.randint(1, 300)):
            inputs.append(d)
            t.last_input = d
            t.conn.receive_datagram(d, t.now)
            check_bounds(t)
            _peaks(stats, t, budget)
        stats.per_generator["authentic-fragments"] += len(inputs)
        return

    def generate() -> Iterator[bytes]:
        for _ in range(rnd.randint(20, 400)):
            name, gen = pick(rnd)
            stats.per_generator[name] += 1
            data = gen(rnd, t)
            inputs.append(data)
            yield data

    attack(t, generate())
    _peaks(stats, t, budget)
    finish(t, retransmit=rnd.random() < 0.3)
    _peaks(stats, t, budget)


def run(seconds: float, *, seed: int = 0, max_batches: int = 0, save: Path | None = None,
        progress: bool = False) -> Stats:
    """Fuzz until ``seconds`` have passed or ``max_batches`` batches ran (whichever is given and first)."""
    rnd = random.Random(seed)
    budget = MemoryBudget()
    stats = Stats()
    start = last_report = time.monotonic()
    keep: list[Target] = []  # a few SAs stay alive, so the budget's totals cover more than one at a time
    while True:
        elapsed = time.monotonic() - start
        if (max_batches and stats.batches >= max_batches) or (seconds and elapsed >= seconds) \
                or (not max_batches and not seconds):
            break
        where = TARGETS[rnd.randrange(len(TARGETS))]
        t = build(*where, budget=budget)
        inputs: list[bytes] = []
        failure = ""
        try:
            _batch(rnd, t, stats, budget, inputs)
        except PropertyViolation as exc:
            stats.violations += 1
            failure = f"violation: {exc}"
        except Exception:  # an escape from the engine: what this run counts
            stats.escapes += 1
            failure = "escape: " + traceback.format_exc()
        stats.inputs += len(inputs)
        stats.batches += 1
        stats.per_target[t.name] += len(inputs)
        if failure:
            record = {"target": list(where), "seed": seed, "batch": stats.batches, "failure": failure,
                      "last_input": t.last_input.hex(), "inputs": [d.hex() for d in inputs]}
            stats.failures.append(record)
            print(failure.splitlines()[0][:300], file=sys.stderr)
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"failure-{seed}-{stats.batches}.json").write_text(json.dumps(record, indent=1))
        keep.append(t)
        if len(keep) > 16:
            keep.pop(0)
        now = time.monotonic()
        if progress and now - last_report >= 10:
            last_report = now
            print(f"{now - start:7.0f} s  {stats.inputs:>10,} inputs  {stats.inputs / (now - start):>8,.0f}/s  "
                  f"escapes {stats.escapes}  violations {stats.violations}", file=sys.stderr, flush=True)
    stats.seconds = time.monotonic() - start
    return stats


def report(stats: Stats, budget: MemoryBudget) -> str:
    lines = [
        f"engine fuzz: {stats.inputs:,} inputs in {stats.seconds:,.0f} s = {stats.rate:,.0f} inputs/s, "
        f"{stats.batches:,} batches (fresh targets)",
        f"escapes: {stats.escapes}   property violations: {stats.violations}",
        f"peak stored fragments: {stats.peak_fragment_bytes:,} bytes per SA (bound {budget.fragment_bytes_per_sa:,}), "
        f"{stats.peak_fragment_total:,} over all SAs (bound {budget.fragment_bytes_total:,})",
        f"peak cached responses: {stats.peak_response_bytes:,} bytes per SA (bound {budget.response_bytes_per_sa:,}), "
        f"{stats.peak_response_total:,} over all SAs (bound {budget.response_bytes_total:,})",
        "",
        "| target | inputs |",
        "|---|---:|",
        *(f"| {name} | {n:,} |" for name, n in sorted(stats.per_target.items())),
        "",
        "| generator | inputs |",
        "|---|---:|",
        *(f"| {name} | {n:,} |" for name, n in sorted(stats.per_generator.items())),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run (default: from the clock)")
    parser.add_argument("--max-batches", type=int, default=0, help="stop after this many batches")
    parser.add_argument("--save", type=Path, default=None, help="write each failure as JSON into this directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"seed {seed}", file=sys.stderr)
    stats = run(args.seconds, seed=seed, max_batches=args.max_batches, save=args.save, progress=True)
    print(report(stats, MemoryBudget()))
    return 1 if stats.escapes or stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())

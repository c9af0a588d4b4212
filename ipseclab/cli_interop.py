"""``ipseclab interop`` and ``ipseclab results``: run the matrix (whole, listed, or one shard) and merge shards.

Apart from ``cli.py`` because these two grow with the suite (listing, sharding, JUnit, merging) and share
the matrix model (``matrix.py``); ``cli.py`` keeps the entry point and the error handling: a ConfigError
raised here is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .lab.runtimes import KERNEL_IPSEC_ENV, KERNEL_IPSEC_HELP, KERNEL_IPSEC_MODES, RUNTIMES

if TYPE_CHECKING:
    from .interop import Support
    from .testcases.base import TestCase

RUNTIME_HELP = ("where kernel peers run: uml (default; $IPSECLAB_RUNTIME overrides), docker (containers: on the host "
                "kernel where it has ESP/AH, else booting the peer's kernel under UML; see --kernel-ipsec), auto "
                "(docker when an engine answers)")
SHARD_HELP = ("run only shard I of N (1-based): a cell's shard is its SHA-256 of case|initiator|responder modulo N, "
              "so it does not depend on the order or the set of --case/--pair; merge the shards' directories with "
              "`ipseclab results merge`")


def parse_pairs(specs: list[str] | None) -> list[tuple[str, str]]:
    """``INIT:RESP`` specs (default: DEFAULT_PAIRS), each a registered implementation; ConfigError otherwise."""
    from .interop import DEFAULT_PAIRS
    from .lab.impls import implementations

    known = implementations()
    if not specs:
        return list(DEFAULT_PAIRS)
    out = []
    for spec in specs:
        init, sep, resp = spec.partition(":")
        if not sep or init not in known or resp not in known:
            raise ConfigError(f"--pair {spec!r}: write INITIATOR:RESPONDER, each one of {', '.join(known)}")
        out.append((init, resp))
    return list(dict.fromkeys(out))


def _needs(case: TestCase) -> str:
    child = "ESP" if case.protocol == "esp" else "AH"
    encap = ("ESP in UDP 4500 (forced)" if case.encap else
             "ESP in UDP 4500 (NAT-T)" if case.topology == "nat" else f"{child} directly on IP")
    return (f"{case.topology} topology, {child} {case.mode} mode, IKE {case.ike_proposal}, {child} "
            f"{case.child_proposal}, {encap}, {case.transit.replace('ip', 'IP')} transit, {case.pings} pings")


def _without_prefix(s: Support) -> Support:
    """Some drivers' reasons start with their own name; the listing names the implementation already."""
    from .interop import Support

    def cut(why: str | None) -> str | None:
        return why[len(s.impl) + 2:] if why and why.startswith(f"{s.impl}: ") else why

    return Support(s.impl, cut(s.initiator), cut(s.responder))


def list_cases(cases: list[TestCase], pairs: list[tuple[str, str]], shard: object = None) -> list[str]:
    """The lines of ``interop --list``: each case, what it needs, which implementations do it (their drivers'
    own checks; nothing booted, no root), and how many of the selected cells would run."""
    from .interop import case_support, unsupported_reason
    from .lab.impls import driver
    from .matrix import Selection, Shard

    lines = [f"{len(cases)} cases x {len(pairs)} pairs = {len(cases) * len(pairs)} cells; a cell runs when both "
             "sides support their role and one of them gives its IKE keys, else it is UNSUPPORTED"]
    for case in cases:
        able, unable = [], []
        for s in case_support(case):
            s = _without_prefix(s)
            note = " (needs a Docker engine)" if driver(s.impl).placement == "container" else ""
            if s.initiator is None and s.responder is None:
                able.append(s.impl + note)
            elif s.initiator is None or s.responder is None:
                role, other = ("initiator", "responder") if s.initiator is None else ("responder", "initiator")
                able.append(f"{s.impl} as {role} only{note}")
                unable.append(f"{s.impl} as {other}: {s.responder or s.initiator}")
            else:
                same = s.initiator == s.responder
                unable.append(f"{s.impl}: {s.initiator}" if same else
                              f"{s.impl}: as initiator: {s.initiator}; as responder: {s.responder}")
        runs = sum(unsupported_reason(case, i, r, host=False) is None for i, r in pairs)
        lines += ["", f"{case.name}: {case.description}", f"  needs:       {_needs(case)}",
                  f"  supported:   {', '.join(able) or 'none'}"]
        lines += [f"  {'unsupported:' if n == 0 else '':<12} {u}" for n, u in enumerate(unable)]
        lines.append(f"  cells:       {runs} of {len(pairs)} selected pairs run, {len(pairs) - runs} UNSUPPORTED")
    if isinstance(shard, Shard):
        cells = Selection(tuple(c.name for c in cases), tuple(pairs)).cells(shard)
        lines += ["", f"shard {shard}: {len(cells)} of {len(cases) * len(pairs)} cells"]
        lines += [f"  {cell}" for cell in cells]
    return lines


def cmd_interop(args: argparse.Namespace) -> int:
    import time

    from .interop import run_matrix
    from .matrix import PASSED, UNSUPPORTED, Shard, junit_xml, matrix_markdown
    from .testcases import ALL_CASES, by_name

    cases = list({c.name: c for c in (by_name(n) for n in args.case)}.values()) if args.case else ALL_CASES
    pairs = parse_pairs(args.pair)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    if args.list:
        for line in list_cases(cases, pairs, shard):
            print(line)
        return 0
    junit = Path(args.junit).resolve() if args.junit else None
    if junit and not junit.parent.is_dir():
        raise ConfigError(f"--junit {args.junit}: no directory {junit.parent}")
    out = Path(args.out or Path("runs") / time.strftime("interop-%Y%m%d-%H%M%S")).resolve()
    if _runs_remotely(args.runtime):
        from .lab.runtimes.remote import run_interop

        out.mkdir(parents=True, exist_ok=True)
        print(f"interop: {len(cases)} cases x {len(pairs)} pairs on a remote engine; results, pcaps, keys and "
              f"logs come back to {out}")
        return run_interop(_forwarded(args), out, junit)
    from .lab.runtimes import choose_runtime

    if args.kernel_ipsec:  # read by every Lab of the matrix (lab.runtimes.choose_runtime)
        os.environ[KERNEL_IPSEC_ENV] = args.kernel_ipsec
    runtime = choose_runtime(args.runtime)
    which = f", shard {shard}" if shard else ""
    print(f"interop: {len(cases)} cases x {len(pairs)} pairs{which}; runs, pcaps, keys and logs in {out}")
    print(f"runtime: {runtime.name}: {runtime.reason}")
    from .lab.impls import driver

    if runtime.name == "docker":
        print(f"kernel IPsec: {runtime.kernel_ipsec}: {runtime.kernel_ipsec_reason}")
    if any(runtime.boots_uml(driver(impl).placement) for pair in pairs for impl in pair):
        from .lab.runtimes.uml_kernel import select_kernel
        from .lab.runtimes.uml_probe import require_bootable

        kernel = select_kernel()  # before the first case: a kernel that cannot boot here stops the run
        print(f"kernel: {kernel.describe()}: {require_bootable(kernel).summary()}")
    jobs = _jobs(args.jobs)
    if jobs > 1:
        from .interop_parallel import run_matrix_parallel

        print(f"jobs: {jobs} worker processes, one per core on the computing cells, the others on the lifecycle cells")
        results = run_matrix_parallel(cases, pairs, out, jobs, runtime=runtime.name, shard=shard)
    else:
        results = run_matrix(cases, pairs, out, runtime=runtime.name, shard=shard)
    print()
    print(matrix_markdown(results))
    if junit:
        junit.write_text(junit_xml(results))
    print(f"results: {out / 'results.md'}, {out / 'results.json'} and {junit or out / 'results.xml'} (JUnit)")
    bad = [r for r in results if r.status not in (PASSED, UNSUPPORTED)]
    return 1 if bad else 0


def _jobs(value: str) -> int:
    """``--jobs``: a number of worker processes, or "auto" (the cores + 3, as scripts/test.sh's matrix)."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) + 3
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--jobs {value}: give a number of worker processes (1 or more) or 'auto'")
    return int(value)


def _runs_remotely(runtime: str | None) -> bool:
    """The docker runtime with $DOCKER_HOST naming another machine: the lab runs there (runtimes/remote.py)."""
    from .lab.runtimes.remote import remote_engine

    asked = runtime or os.environ.get("IPSECLAB_RUNTIME") or "uml"
    if not remote_engine() or asked not in ("docker", "auto"):
        return False
    if asked == "auto":
        from .lab.runtimes.docker_images import engine_answers

        return engine_answers()
    return True


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options of this ``interop`` that the remote run takes as they are (it chooses its own --out)."""
    out: list[str] = []
    for case in args.case or []:
        out += ["--case", case]
    for pair in args.pair or []:
        out += ["--pair", pair]
    if args.shard:
        out += ["--shard", args.shard]
    if args.kernel_ipsec:
        out += ["--kernel-ipsec", args.kernel_ipsec]
    if args.jobs != "1":
        out += ["--jobs", args.jobs]
    return out


def cmd_results(args: argparse.Namespace) -> int:
    """``results merge DIR... --out DIR``: the shards' matrices as one; exit 1 when a cell failed, as interop."""
    from .matrix import ERROR, FAILED, matrix_markdown, merge, read_results, write_results

    out = Path(args.out).resolve()
    files = [read_results(Path(p)) for p in args.inputs]
    if any(f.path.parent.resolve() == out for f in files):
        raise ConfigError(f"--out {args.out} is one of the inputs: write the merged matrix elsewhere")
    selection, results = merge(files)
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out, selection)
    if args.junit:
        from .matrix import junit_xml

        Path(args.junit).write_text(junit_xml(results))
    print(matrix_markdown(results))
    print(f"merged {len(files)} inputs, {len(results)} cells: {out / 'results.md'}, {out / 'results.json'}, "
          f"{out / 'results.xml'}")
    return 1 if any(r.status in (FAILED, ERROR) for r in results) else 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("interop", help="run the interop matrix: test cases x initiator->responder pairs (root)")
    p.add_argument("--case", action="append", help="a test case name (default: all); may be repeated")
    p.add_argument("--pair", action="append", metavar="INIT:RESP",
                   help="e.g. strongswan:libreswan; may be repeated (default: every pair of the main matrix)")
    p.add_argument("--list", action="store_true",
                   help="print each case, what it needs and which implementations do it, then exit (no root)")
    p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
    p.add_argument("--jobs", default="1", metavar="N",
                   help="run the cells on N worker processes, or 'auto' (the cores + 3): one per core takes the "
                        "computing cells, the others the lifecycle cells, which mostly wait (default: 1)")
    p.add_argument("--out", help="directory for the runs and the results matrix")
    p.add_argument("--junit", metavar="FILE", help="also write the matrix as JUnit XML here (always: OUT/results.xml)")
    p.add_argument("--runtime", choices=RUNTIMES, help=RUNTIME_HELP)
    p.add_argument("--kernel-ipsec", choices=KERNEL_IPSEC_MODES, help=KERNEL_IPSEC_HELP)
    p.set_defaults(func=cmd_interop)

    p = sub.add_parser("results", help="work with results matrices: merge shards into one (no root)")
    p.add_argument("action", choices=["merge"])
    p.add_argument("inputs", nargs="+", metavar="DIR", help="shard run directories (or their results.json)")
    p.add_argument("--out", required=True, help="directory for the merged results.json, results.md, results.xml")
    p.add_argument("--junit", metavar="FILE", help="also write the merged JUnit XML here")
    p.set_defaults(func=cmd_results)

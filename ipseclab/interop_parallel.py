"""The matrix on several worker processes (``ipseclab interop --jobs N``), scheduled as the pytest matrix is.

The cells go out in scopes: a pair's cells of one ``interop.reuse_group`` together (the worker keeps the pair's
peers booted between them, in a LabPool of its own), a cell that boots its own lab alone.  One worker per core
takes the computing scopes, the others the lifecycle scopes, which mostly wait on the daemons' timers, and a
waiting worker stops when those are done (``interop.next_scope``: a third computing worker on two cores makes
every cell slower and the matrix hardly sooner).  tests/interop/conftest.py hands pytest-xdist the same scopes.

The workers are forked processes (each its own labs, namespaces and UML guests); each sends back every cell's
result as it ends, and this process writes the matrix files after each, in matrix order, as ``run_matrix`` does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .interop import (
    COMPUTES,
    cell_kind,
    group_scope,
    joined_kind,
    next_scope,
    progress_line,
    run_case,
    run_order,
    worker_kind,
)
from .lab.pool import LabPool
from .matrix import ERROR, CaseResult, Cell, Shard, cell_id, order, write_results
from .testcases.base import TestCase

Runner = Callable[..., CaseResult]  # run_case's signature: (case, initiator, responder, out_dir, runtime, pool)


def scopes(cells: list[Cell], by_name: dict[str, TestCase]) -> dict[str, tuple[str, list[Cell]]]:
    """Each scope's kind and cells, in the order their first cells come in ``cells``: a pair's cells of one reuse
    group (``interop.group_scope``), or a cell that boots its own lab alone; kinds joined by
    ``interop.joined_kind``."""
    out: dict[str, tuple[str, list[Cell]]] = {}
    for cell in cells:
        case = by_name[cell.case]
        name = (group_scope(case, cell.initiator, cell.responder)
                or cell_id(cell.case, cell.initiator, cell.responder))
        before = out.get(name)
        members = before[1] if before is not None else []
        out[name] = (joined_kind(before[0] if before is not None else None, cell_kind(case)), [*members, cell])
    return out


def _worker(conn: Connection, by_name: dict[str, TestCase], out_dir: Path, runtime: str, run: Runner) -> None:
    """A worker process: asks for a scope, runs its cells on its own pool, sends each result; until told None."""
    with LabPool() as pool:
        conn.send(None)  # ready for a scope
        while (cells := conn.recv()) is not None:
            for cell in cells:
                conn.send(run(by_name[cell.case], cell.initiator, cell.responder, out_dir, runtime, pool))
            conn.send(None)  # done with it: the next one
    conn.close()


def run_matrix_parallel(cases: list[TestCase], pairs: list[tuple[str, str]], out_dir: Path, jobs: int,
                        runtime: str = "", shard: Shard | None = None,
                        report: Callable[[str], None] | None = None, run: Runner = run_case,
                        cores: int | None = None) -> list[CaseResult]:
    """``run_matrix`` on ``jobs`` worker processes (see the module docstring); the same results and files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name, selection, cells = run_order(cases, pairs, shard)
    queue = scopes(cells, by_name)
    kinds = {name: kind for name, (kind, _) in queue.items()}
    cores = cores or len(os.sched_getaffinity(0))
    results: list[CaseResult] = []
    if not cells:
        write_results(results, out_dir, selection, shard)
        return results
    ctx = multiprocessing.get_context("fork")
    workers: dict[Connection, tuple[multiprocessing.process.BaseProcess, str]] = {}
    for _ in range(max(1, min(jobs, len(queue)))):
        ours, theirs = ctx.Pipe()
        started = ctx.Process(target=_worker, args=(theirs, by_name, out_dir, runtime, run), daemon=False)
        started.start()
        theirs.close()
        computing = sum(1 for _, kind in workers.values() if kind == COMPUTES)
        workers[ours] = (started, worker_kind(computing, cores))
    try:
        while workers:
            for conn in wait(list(workers)):
                assert isinstance(conn, Connection)
                proc, kind = workers[conn]
                try:
                    msg = conn.recv()
                except EOFError:  # the worker died: its scope's remaining cells have no result
                    proc.join()
                    del workers[conn]
                    continue
                if isinstance(msg, CaseResult):
                    results.append(msg)
                    (report or _print)(progress_line(len(results), len(cells), msg))
                    write_results(order(results, selection), out_dir, selection, shard)
                    continue
                name = next_scope(queue, kinds, kind)
                conn.send(queue.pop(name)[1] if name is not None else None)
                if name is None:
                    proc.join()
                    del workers[conn]
    finally:
        for conn, (proc, _) in workers.items():  # interrupted: the workers tear their pools down themselves
            proc.join(timeout=120)
            conn.close()
    done = {(r.case, r.initiator, r.responder) for r in results}
    lost = [CaseResult(c.case, c.initiator, c.responder, ERROR, "the worker process running it ended before it did",
                       str(out_dir / cell_id(c.case, c.initiator, c.responder)), 0.0)
            for c in cells if (c.case, c.initiator, c.responder) not in done]
    if lost:
        results += lost
        write_results(order(results, selection), out_dir, selection, shard)
    return order(results, selection)


def _print(line: str) -> None:
    print(line, flush=True)

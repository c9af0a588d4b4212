"""Interop fixtures: one output directory per pytest session, with the results files written at the end, and the
booted labs the matrix's cells share (``lab_pool``).

The matrix's cells (tests/interop/test_matrix.py) run pair by pair, each pair's cells that may share booted peers
(``interop.reusable``) one after another and by topology (``interop.cell_order``), so that a worker boots each
pair once per topology.  Under pytest-xdist (``-n N`` without ``--dist``, or ``--dist loadgroup``) the cells go
out in groups (``MatrixScheduling``): a pair's cells of one ``interop.reuse_group`` (plain and probe cells of the
direct topology, its lifecycle cells, the NAT cells) to one worker, which keeps them on one boot; other tests one by
one.  One worker per core takes the computing groups, the others the lifecycle groups, which mostly wait
(``interop.next_scope``): ``-n`` the cores + 3 (scripts/test.sh) gives the matrix's six lifecycle groups two a
waiting worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipseclab.interop import COMPUTES, cell_kind, cell_order, group_scope, joined_kind, next_scope, worker_kind
from ipseclab.lab.pool import LabPool
from ipseclab.matrix import CaseResult, write_results
from ipseclab.pytest_plugin import cell_of_nodeid

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def interop_out() -> Iterator[tuple[Path, list[CaseResult]]]:
    # one directory per xdist worker too (scripts/test.sh runs the matrix three cells at a time)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    out = REPO / "runs" / (time.strftime("pytest-%Y%m%d-%H%M%S") + (f"-{worker}" if worker else ""))
    out.mkdir(parents=True, exist_ok=True)
    results: list[CaseResult] = []
    yield out, results
    if results:
        write_results(results, out)
        # the plugin prints the matrix at the end of the session; the files keep each cell's reason and run directory
        print(f"\ninterop results (JSON, Markdown, JUnit XML): {out}")


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") == "load":  # -n N without --dist: keep each pair's cells on one worker
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """pytest-xdist's hook: under ``loadgroup``, :class:`MatrixScheduling`."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MatrixScheduling(LoadScopeScheduling):
        """Whole scopes to a worker, a scope being a matrix cell's group (:func:`matrix_group`) or else the test
        itself.  Not xdist's own loadgroup: it names a test's group by appending it to the node id in the worker
        (``item._nodeid``), which pytest 9.2's node ids no longer read, so every cell went out alone (a full matrix
        booted 53 labs, 2026-12-01; pytest-xdist issue 1386).  Here the controller reads the group off the node id
        pytest gives it.

        And by kind (``interop.cell_kind``): as many workers as cores take the computing cells, the others the
        lifecycle cells, which mostly wait on the daemons' timers, and stop when those are done
        (``interop.next_scope``).  xdist's own order (the scopes with most tests first, any worker) had four
        workers take 3:15 with a median cell of 1.5 s, six 2:31 and 2.2 s; two computing and three waiting take
        2:33 and 1.2 s (2026-12-01, 2 cores with AMX).  ``IPSECLAB_MATRIX_SCHEDULE=groups`` hands out groups in
        xdist's order, to any worker (the reference ``tests/bench/bench_matrix.py`` measures beside this)."""

        def __init__(self, config: pytest.Config, log: object) -> None:
            super().__init__(config, log)
            self.kinds: dict[str, str] = {}  # scope -> its cells' kind ("" for a test that is no cell)
            self.worker_kinds: dict[object, str] = {}
            self.cores = len(os.sched_getaffinity(0))

        def _split_scope(self, nodeid: str) -> str:
            scope = matrix_group(nodeid) or nodeid
            cell = cell_of_nodeid(nodeid)
            self.kinds[scope] = joined_kind(self.kinds.get(scope), cell_kind(cell[0])) if cell is not None else ""
            return scope

        def _assign_work_unit(self, node: object) -> None:
            if os.environ.get("IPSECLAB_MATRIX_SCHEDULE") == "groups":  # the reference of bench_matrix
                super()._assign_work_unit(node)
                return
            if node not in self.worker_kinds:
                self.worker_kinds[node] = worker_kind(list(self.worker_kinds.values()).count(COMPUTES), self.cores)
            scope = next_scope(self.workqueue, self.kinds, self.worker_kinds[node])
            if scope is None:  # nothing of its kind left: done (xdist's own rule when the queue is empty)
                node.shutdown()  # type: ignore[attr-defined]
                return
            self.workqueue.move_to_end(scope, last=False)  # where super() takes the next unit from
            super()._assign_work_unit(node)

    return MatrixScheduling(config, log)


def matrix_group(nodeid: str) -> str | None:
    """The group of a matrix cell's node id: ``INIT-to-RESP-GROUP`` for a case with a ``reuse_group``, else None
    (a cell that boots its own lab, or not a cell)."""
    cell = cell_of_nodeid(nodeid)
    return group_scope(*cell) if cell is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The matrix's cells pair by pair, each pair's reusable cells first, by topology and group (the order a
    worker runs a group's cells in)."""
    slots = [n for n, item in enumerate(items) if _cell(item) is not None]
    if not slots:
        return
    cells = [items[n] for n in slots]
    pairs = list(dict.fromkeys(_cell(item)[1] for item in cells))  # type: ignore[index]

    def key(item: pytest.Item) -> tuple[int, tuple[bool, str, str]]:
        case, pair = _cell(item)  # type: ignore[misc]
        return pairs.index(pair), cell_order(case)

    cells.sort(key=key)
    for n, item in zip(slots, cells, strict=True):
        items[n] = item


def _cell(item: pytest.Item) -> tuple[object, tuple[str, str]] | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "ipseclab_case" in params and "ipseclab_pair" in params and "lab_pool" in getattr(item, "fixturenames", ()):
        return params["ipseclab_case"], params["ipseclab_pair"]
    return None


@pytest.fixture(scope="session")
def lab_pool() -> Iterator[LabPool]:
    """The booted lab the matrix's cells hand on to the next cell of their pair; torn down at the end."""
    with LabPool() as pool:
        yield pool

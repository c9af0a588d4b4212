"""Interop fixtures: one output directory per pytest session, with the results files written at the end, and the
booted labs the matrix's cells share (``lab_pool``).

The matrix's cells (tests/interop/test_matrix.py) run pair by pair, each pair's cells that may share booted peers
(``interop.reusable``) one after another and by topology (``interop.cell_order``), so that a worker boots each
pair once per topology; under pytest-xdist's default ``load`` distribution (``-n 3``) the session distributes by
``loadgroup`` with those cells grouped by pair and ``interop.reuse_group`` (plain, probe and lifecycle cells of
the direct topology, the NAT cells), so one worker keeps a group's cells on one boot (other tests are distributed
one by one, as under ``load``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipseclab.interop import cell_order, reuse_group
from ipseclab.lab.pool import LabPool
from ipseclab.matrix import CaseResult, write_results

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


@pytest.hookimpl(tryfirst=True)  # before an xdist worker reads the groups off the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The matrix's cells pair by pair, each pair's reusable cells first, by topology, in one xdist group per
    reuse group."""
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
        case, pair = _cell(item)  # type: ignore[misc]
        group = reuse_group(case)
        if group:
            item.add_marker(pytest.mark.xdist_group(f"{pair[0]}-to-{pair[1]}-{group}"))


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

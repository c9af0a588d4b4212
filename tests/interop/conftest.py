"""Interop fixtures: one output directory per pytest session, with the results files written at the end."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipseclab.matrix import CaseResult, write_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def interop_out() -> Iterator[tuple[Path, list[CaseResult]]]:
    # one directory per xdist worker too (scripts/test.sh runs the matrix two cells at a time)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    out = REPO / "runs" / (time.strftime("pytest-%Y%m%d-%H%M%S") + (f"-{worker}" if worker else ""))
    out.mkdir(parents=True, exist_ok=True)
    results: list[CaseResult] = []
    yield out, results
    if results:
        write_results(results, out)
        # the plugin prints the matrix at the end of the session; the files keep each cell's reason and run directory
        print(f"\ninterop results (JSON, Markdown, JUnit XML): {out}")

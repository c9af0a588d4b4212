"""Interop fixtures: one output directory per pytest session, with the results matrix written at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipseclab.matrix import CaseResult, write_results

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def interop_out() -> Iterator[tuple[Path, list[CaseResult]]]:
    out = REPO / "runs" / time.strftime("pytest-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    results: list[CaseResult] = []
    yield out, results
    if results:
        write_results(results, out)
        print(f"\ninterop results matrix: {out / 'results.md'}")
        print((out / "results.md").read_text())

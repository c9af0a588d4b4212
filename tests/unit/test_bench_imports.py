"""Every benchmark module still imports: benchmarks run by hand, so nothing else notices when a move breaks one."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("bench_*.py")))
def test_the_benchmark_imports(name):
    module = importlib.import_module(f"tests.bench.{name}")
    assert callable(getattr(module, "main", None)), f"tests/bench/{name}.py has no main()"

"""Declarative interop test cases (one module per theme): what to set up and what to check in the pcaps."""

from __future__ import annotations

from .algorithms import CASES as ALGORITHM_CASES
from .base import TestCase
from .modes import CASES as MODE_CASES

ALL_CASES: list[TestCase] = [*MODE_CASES, *ALGORITHM_CASES]


def by_name(name: str) -> TestCase:
    for case in ALL_CASES:
        if case.name == name:
            return case
    raise KeyError(f"no test case {name!r}; known: {', '.join(c.name for c in ALL_CASES)}")

"""Declarative interop test cases (one module per theme): what to set up and what to check in the pcaps."""

from __future__ import annotations

from ipseclab.errors import ConfigError

from .algorithms import CASES as ALGORITHM_CASES
from .auth import CASES as AUTH_CASES
from .base import TestCase
from .lifecycle import CASES as LIFECYCLE_CASES
from .modes import CASES as MODE_CASES
from .verdicts import CASES as VERDICT_CASES

ALL_CASES: list[TestCase] = [*MODE_CASES, *ALGORITHM_CASES, *LIFECYCLE_CASES, *AUTH_CASES, *VERDICT_CASES]


def by_name(name: str) -> TestCase:
    """The case called ``name``; ConfigError listing the known ones (a user's typo: one line from the CLI)."""
    for case in ALL_CASES:
        if case.name == name:
            return case
    raise ConfigError(f"no test case {name!r}; known: {', '.join(c.name for c in ALL_CASES)}")

"""The one source of randomness (IVs, nonces, SPIs, padding), injectable for deterministic tests."""

from __future__ import annotations

import os
from collections.abc import Callable

RandomSource = Callable[[int], bytes]


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return os.urandom(n)

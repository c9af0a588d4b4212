"""Repository-wide pytest configuration: skips that name what is missing."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_tshark = shutil.which("tshark") is None
    not_root = os.geteuid() != 0
    for item in items:
        if no_tshark and item.get_closest_marker("tshark"):
            item.add_marker(pytest.mark.skip(reason="tshark is not installed (apt-get install tshark)"))
        if not_root and item.get_closest_marker("interop"):
            item.add_marker(pytest.mark.skip(reason="interop tests need root (network namespaces, UML)"))

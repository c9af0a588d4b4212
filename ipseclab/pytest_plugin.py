"""The ipseclab pytest plugin (entry point ``pytest11``): markers for suites that use ipseclab.

Registered through pyproject.toml, so any project that installs ipseclab gets
the ``interop`` and ``tshark`` markers without configuration.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: needs root and real strongSwan/Libreswan peers")
    config.addinivalue_line("markers", "tshark: needs Wireshark's tshark binary")

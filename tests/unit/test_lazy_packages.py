"""crypto/ and esp/ import their public names on first use: every name in __all__ still resolves, to the
object its submodule defines, and a name not there is an AttributeError."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ipseclab.errors import CheckFailed


@pytest.mark.parametrize("package", ["ipseclab.crypto", "ipseclab.esp"])
def test_every_public_name_resolves_to_its_submodules_object(package: str) -> None:
    pkg = importlib.import_module(package)
    table = pkg._SUBMODULE
    if sorted(table) != sorted(pkg.__all__):
        raise CheckFailed(f"{package}: __all__ and the lazy table differ: {set(table) ^ set(pkg.__all__)}")
    for name, sub in table.items():
        if getattr(pkg, name) is not getattr(importlib.import_module(f"{package}.{sub}"), name):
            raise CheckFailed(f"{package}.{name} is not {package}.{sub}.{name}")
    with pytest.raises(AttributeError):
        pkg.no_such_name  # noqa: B018


def test_importing_the_cipher_module_leaves_key_derivation_and_the_spd_unloaded() -> None:
    code = ("import sys, ipseclab.crypto.cipher, ipseclab.esp.esp; "
            "print(sorted(m for m in sys.modules if m in ('ipseclab.crypto.keys', 'ipseclab.esp.spd')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if out.strip() != "[]":
        raise CheckFailed(f"loaded at import: {out.strip()}")

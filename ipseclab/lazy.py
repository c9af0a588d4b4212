"""A package's public names imported from their submodules on first use (PEP 562 ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], submodule: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``submodule`` maps each public name to the submodule defining it;
    a name once imported is kept in ``namespace`` (the package's globals), so it is looked up once."""

    def __getattr__(name: str) -> Any:
        try:
            sub = submodule[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{sub}"), name)
        namespace[name] = value
        return value

    return __getattr__

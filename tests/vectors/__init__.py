"""Known-answer vectors as JSON data files, each naming its source (RFC section, CAVP/ACVP file, capture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load(name: str) -> dict[str, Any]:
    """The parsed vector file ``tests/vectors/<name>.json``."""
    with open(HERE / f"{name}.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def cases(name: str) -> list[Any]:
    """pytest.param per vector, with the id naming the file's source section and the vector."""
    import pytest

    data = load(name)
    return [pytest.param(v, id=f"{name}:{v.get('name', i)}") for i, v in enumerate(data["vectors"])]

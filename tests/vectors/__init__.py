"""Known-answer vectors as JSON data files, each naming its source (RFC section, CAVP/ACVP file, capture)."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def rsp_blocks(path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(section parameters, record) pairs of a NIST-style .rsp/.txt vector file (CAVP, and the pyca
    ``cryptography_vectors`` files in that form)."""
    params: dict[str, str] = {}
    block: dict[str, str] = {}
    for raw in [*path.read_text().splitlines(), ""]:
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.startswith("["):
            k, _, val = line[1:-1].partition("=")
            params[k.strip()] = val.strip()
        elif "=" in line:
            k, _, val = line.partition("=")
            block[k.strip()] = val.strip()
        elif block:
            yield dict(params), block
            block = {}

"""Booted labs kept from one cell to the next of the same pair: the matrix boots each pair's peers once.

::

    with LabPool() as pool:
        for spec, run_dir in cells:
            with pool.lab(spec, run_dir, reuse=True) as lab:   # a fresh Lab, or the last one reset
                lab.initiate(); lab.ping()
            ...check the run directory...                       # pool.discard() when the cell did not pass

A lab is kept (parked) after a cell that asked for reuse and ended without an exception, when
``Lab.reusable()`` allows (UML guests and running endpoint processes, either topology).  The next cell with
the same implementations, topology and runtime runs on it through ``Lab.next_cell``; anything else
(another pair, a cell that does not ask for reuse, a reset that fails, ``discard``) tears the parked lab
down first and boots a fresh one, exactly as a lone ``with Lab(...)`` does.  Every cell keeps its own
run directory with everything a fresh lab leaves there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from .lab import Lab, LabSpec


def _key(spec: LabSpec) -> tuple[str, str, str, str]:
    return spec.left, spec.right, spec.topology, spec.runtime


class LabPool:
    """At most one parked lab, handed to the next cell of the same pair (see the module docstring)."""

    def __init__(self) -> None:
        self._parked: Lab | None = None
        self.reused = 0  # cells that ran on a parked lab
        self.booted = 0  # cells that booted their own

    def __enter__(self) -> LabPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Tear the parked lab down (its last cell's run directory is already complete)."""
        lab, self._parked = self._parked, None
        if lab is not None:
            lab.down()

    discard = close  # after a cell that did not pass: the next one boots afresh, whatever the failure left

    @contextmanager
    def lab(self, spec: LabSpec, run_dir: Path, reuse: bool = True) -> Iterator[Lab]:
        """The lab of one cell: the parked one moved on to ``spec`` (``reuse`` and the same pair), else a fresh
        one; afterwards parked (``reuse``, no exception, ``Lab.reusable()``) or torn down."""
        lab = self._parked if reuse and self._parked is not None and _key(self._parked.spec) == _key(spec) else None
        if lab is None:
            self.close()
        else:
            self._parked = None
            try:
                lab.next_cell(spec, run_dir)
                self.reused += 1
            except Exception as exc:  # a guest that would not reset: this cell boots its own, from a clean directory
                lab.down()
                lab = None
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "reuse.warning").write_text(f"the booted lab could not be reset, so this cell booted "
                                                        f"its own: {type(exc).__name__}: {exc}\n")
            except BaseException:
                lab.down()
                raise
        if lab is None:
            lab = Lab(spec, run_dir=run_dir).__enter__()  # tears itself down if it cannot come up
            self.booted += 1
        ok = False
        try:
            yield lab
            ok = True
        finally:
            if ok and reuse and lab.reusable():
                try:
                    lab.end_cell()
                    self._parked = lab
                except BaseException:
                    lab.down()
                    raise
            else:
                lab.down()

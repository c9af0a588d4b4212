"""``ipseclab interop --jobs N`` against real peers: every cell of the selection passes, each pair's cells of one
reuse group share one boot (lab.json says which boot a cell ran on and which cell of it it was), and the matrix
files hold every cell in matrix order, as the serial run writes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.matrix import PASSED, Selection, read_results

pytestmark = [pytest.mark.interop, pytest.mark.tshark]

CASES = ("esp-tunnel", "esp-transport", "child-rekey-initiator", "dpd-restart")
PAIRS = ("strongswan:libreswan", "ipseclab:strongswan")


def test_the_cli_runs_the_cells_on_worker_processes_each_group_on_one_boot(tmp_path: Path):
    args = [sys.executable, "-m", "ipseclab.cli", "interop", "--jobs", "3", "--out", str(tmp_path)]
    args += [a for c in CASES for a in ("--case", c)] + [a for p in PAIRS for a in ("--pair", p)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "jobs: 3 worker processes" in done.stdout
    results = read_results(tmp_path).results
    every = Selection(CASES, tuple(tuple(p.split(":")) for p in PAIRS)).cells()
    assert [(r.case, r.initiator, r.responder) for r in results] == [(c.case, c.initiator, c.responder)
                                                                     for c in every]
    assert {r.status for r in results} == {PASSED}, [(r.case, r.reason) for r in results if r.status != PASSED]
    for pair in PAIRS:
        init, resp = pair.split(":")
        labs = {case: json.loads((tmp_path / f"{case}--{init}-to-{resp}" / "lab.json").read_text()) for case in CASES}
        # a group's cells on one boot (booted_in: the run directory of the cell that booted the peers); a worker
        # whose pool still holds the pair's peers may run its next group of the pair on them too
        for group in (("esp-tunnel", "esp-transport"), ("child-rekey-initiator", "dpd-restart")):
            boots = {labs[case]["booted_in"] for case in group}
            places = sorted(labs[case]["timings"]["cell"] for case in group)
            assert len(boots) == 1 and places[1] == places[0] + 1, {case: labs[case]["timings"] for case in group}

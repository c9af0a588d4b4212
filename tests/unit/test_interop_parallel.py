"""The matrix on worker processes (``interop_parallel``) without labs: the cell runner is replaced by one that
records which worker process ran each cell and in which order, so the scheduling itself is what is checked (the
interop suite runs the real thing, tests/interop/test_interop_jobs.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ipseclab import interop
from ipseclab.interop import COMPUTES, WAITS, cell_kind, reuse_group
from ipseclab.interop_parallel import run_matrix_parallel, scopes
from ipseclab.matrix import PASSED, CaseResult, Selection, read_results
from ipseclab.testcases import by_name

CASES = [by_name(n) for n in ("esp-tunnel", "esp-transport", "replay", "esp-tunnel-nat", "tcp-transport-nat",
                              "child-rekey-initiator", "dpd-restart")]
PAIRS = [("strongswan", "libreswan"), ("ipseclab", "strongswan")]


def _fake_run(case, initiator, responder, out_dir, runtime, pool):
    """What run_case returns, and a line saying which process ran the cell with which pool."""
    with (out_dir / "ran.jsonl").open("a") as f:
        f.write(json.dumps({"cell": [case.name, initiator, responder], "pid": os.getpid(), "pool": id(pool)}) + "\n")
    return CaseResult(case.name, initiator, responder, PASSED, "", str(out_dir / case.name), 0.1)


def test_a_scope_is_a_pairs_reuse_group_and_waits_only_if_all_its_cells_do():
    by_name_ = {c.name: c for c in CASES}
    got = scopes(Selection(tuple(by_name_), tuple(PAIRS)).cells(), by_name_)
    assert got["strongswan-to-libreswan-direct"] == (COMPUTES, [c for c in Selection(("esp-tunnel", "esp-transport",
                                                                                    "replay"), (PAIRS[0],)).cells()])
    assert got["strongswan-to-libreswan-lifecycle"][0] == WAITS
    assert [c.case for c in got["strongswan-to-libreswan-lifecycle"][1]] == ["child-rekey-initiator", "dpd-restart"]
    # the NAT group: a plain cell (computes) and a TCP download (a lifecycle step): it computes
    assert cell_kind(by_name("tcp-transport-nat")) == WAITS and reuse_group(by_name("tcp-transport-nat")) == "nat"
    assert got["strongswan-to-libreswan-nat"][0] == COMPUTES


def test_every_cell_runs_once_a_scope_on_one_worker_and_the_matrix_files_are_the_serial_ones(tmp_path: Path,
                                                                                             monkeypatch):
    lines: list[str] = []
    results = run_matrix_parallel(CASES, PAIRS, tmp_path, jobs=4, report=lines.append, run=_fake_run, cores=2)
    every = Selection(tuple(c.name for c in CASES), tuple(PAIRS)).cells()
    assert [(r.case, r.initiator, r.responder) for r in results] == [(c.case, c.initiator, c.responder)
                                                                     for c in every]
    assert len(lines) == len(every) and lines[-1].startswith(f"[{len(every)}/{len(every)}]")
    ran = [json.loads(line) for line in (tmp_path / "ran.jsonl").read_text().splitlines()]
    assert sorted(tuple(r["cell"]) for r in ran) == sorted((c.case, c.initiator, c.responder) for c in every)
    by_name_ = {c.name: c for c in CASES}
    for name, (_, cells) in scopes(every, by_name_).items():
        mine = [r for r in ran if tuple(r["cell"]) in {(c.case, c.initiator, c.responder) for c in cells}]
        assert len({(r["pid"], r["pool"]) for r in mine}) == 1, name  # one worker, one pool: one boot
    assert len({r["pid"] for r in ran}) > 1  # the scopes went to several workers
    assert [r.status for r in read_results(tmp_path).results] == [PASSED] * len(every)
    # the serial run_matrix of the same cells writes the same matrix
    monkeypatch.setattr(interop, "run_case", _fake_run)
    (tmp_path / "serial").mkdir()
    interop.run_matrix(CASES, PAIRS, tmp_path / "serial", progress=False)
    assert (tmp_path / "serial" / "results.md").read_text() == (tmp_path / "results.md").read_text()

"""The matrix without a lab: ``interop --list``, shards, ``results merge``, JUnit XML and the progress line.

Nothing here boots anything: results are CaseResult objects made in memory (or results.json files written
from them), and where the CLI would run cells, ``run_case`` is replaced by a fake that records the calls.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ipseclab import interop
from ipseclab.cli import main
from ipseclab.matrix import (
    ERROR,
    FAILED,
    PASSED,
    UNSUPPORTED,
    CaseResult,
    Cell,
    Selection,
    Shard,
    junit_xml,
    write_results,
)
from ipseclab.testcases import ALL_CASES

CASES = tuple(c.name for c in ALL_CASES)
FULL = Selection(CASES, tuple(interop.DEFAULT_PAIRS))


def _one_line_error(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _result(cell: Cell, n: int) -> CaseResult:
    status = (PASSED, FAILED, UNSUPPORTED, ERROR)[n % 4]
    reason = "" if status == PASSED else f"{status} because of cell {n}\nsecond line"
    return CaseResult(cell.case, cell.initiator, cell.responder, status, reason,
                      f"/runs/x/{cell.case}--{cell.initiator}-to-{cell.responder}", float(n % 7))


def _results(selection: Selection, shard: Shard | None = None) -> list[CaseResult]:
    every = {c: _result(c, n) for n, c in enumerate(selection.cells())}
    return [every[c] for c in selection.cells(shard)]


# --- interop --list ----------------------------------------------------------------------------------


def test_list_prints_every_case_with_what_it_needs_and_who_supports_it(capsys):
    assert main(["interop", "--list"]) == 0
    out = capsys.readouterr().out
    for case in ALL_CASES:
        assert f"\n{case.name}: {case.description}\n" in out
    block = out.split("\nesp-tunnel-udp: ")[1].split("\n\n")[0]
    assert "needs:       direct topology, ESP tunnel mode, IKE aes256-sha256-modp2048, ESP aes128-sha256, " \
           "ESP in UDP 4500 (forced), IPv4 transit" in block
    assert "supported:   strongswan, libreswan, ipseclab, strongswan-libipsec (needs a Docker engine)" in block
    # the drivers' own reasons, as run_case would give them for UNSUPPORTED cells
    assert "openiked: peer 'lab': encap: OpenIKED forces NAT-T only for every policy at once" in block
    assert "cells:       10 of 16 selected pairs run, 6 UNSUPPORTED" in block


def test_list_counts_agree_with_the_verdict_run_case_gives_before_booting(capsys):
    """The cells --list says run are exactly those where run_case's own pre-boot check finds no reason."""
    assert main(["interop", "--list", "--case", "aes-cbc-sha1-ecp256"]) == 0
    out = capsys.readouterr().out
    case = next(c for c in ALL_CASES if c.name == "aes-cbc-sha1-ecp256")
    runs = [p for p in interop.DEFAULT_PAIRS if interop.unsupported_reason(case, *p, host=False) is None]
    assert f"cells:       {len(runs)} of 16 selected pairs run" in out
    assert ("openiked", "libreswan") not in runs  # neither gives its IKE keys
    assert "neither openiked nor libreswan" in interop.unsupported_reason(case, "openiked", "libreswan", host=False)


def test_list_with_a_shard_names_the_shards_cells(capsys):
    assert main(["interop", "--list", "--case", "esp-tunnel", "--pair", "strongswan:libreswan",
                 "--pair", "libreswan:strongswan", "--shard", "1/1"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("shard 1/1: 2 of 2 cells\n  esp-tunnel strongswan->libreswan\n"
                        "  esp-tunnel libreswan->strongswan\n")


@pytest.mark.parametrize("argv", [
    ["interop", "--list", "--pair", "strongswan"],
    ["interop", "--list", "--pair", "strongswan:nobody"],
    ["interop", "--list", "--case", "bogus"],
])
def test_list_with_bad_selections_is_one_line(capsys, argv):
    _one_line_error(capsys, main(argv))


# --- shards ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1", "a/b", "1/0", "-1/3", "1/2/3", ""])
def test_a_bad_shard_is_one_line(capsys, spec):
    _one_line_error(capsys, main(["interop", "--list", f"--shard={spec}"]), "--shard", "I/N")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_cells(count):
    every = FULL.cells()
    parts = [FULL.cells(Shard(i, count)) for i in range(1, count + 1)]
    assert sorted(map(str, (c for p in parts for c in p))) == sorted(map(str, every))
    assert sum(map(len, parts)) == len(every)


def test_a_cells_shard_depends_on_the_cell_alone():
    """Reordering --case/--pair, or asking for fewer of them, moves no cell to another shard."""
    shuffled = Selection(tuple(reversed(CASES)), tuple(reversed(interop.DEFAULT_PAIRS)))
    fewer = Selection(CASES[2:5], tuple(interop.DEFAULT_PAIRS[3:9]))
    for i in (1, 2, 3):
        mine = set(FULL.cells(Shard(i, 3)))
        assert set(shuffled.cells(Shard(i, 3))) == mine
        assert set(fewer.cells(Shard(i, 3))) == mine & set(fewer.cells())


def test_the_shard_function_is_the_documented_one():
    """Shards made by two ipseclab versions must still merge: SHA-256 of case|initiator|responder modulo N, not
    Python's hash() (salted per process)."""
    for cell in FULL.cells():
        for i in (1, 2, 3, 4):
            assert Shard(i, 4).holds(cell) is _pinned(cell.case, cell.initiator, cell.responder, 4, i)
    assert Shard(3, 4).holds(Cell("esp-tunnel", "strongswan", "libreswan"))  # computed once by hand


def _pinned(case: str, init: str, resp: str, count: int, index: int) -> bool:
    import hashlib

    digest = hashlib.sha256(f"{case}|{init}|{resp}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


# --- results merge -----------------------------------------------------------------------------------


def _write(directory: Path, results, selection=FULL, shard=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_results(results, directory, selection, shard)
    return directory


def _shards(tmp_path: Path, count: int, selection=FULL) -> list[Path]:
    return [_write(tmp_path / f"shard{i}", _results(selection, Shard(i, count)), selection, Shard(i, count))
            for i in range(1, count + 1)]


@pytest.mark.parametrize("count", [2, 3])
def test_merged_shards_are_the_matrix_of_the_full_list_of_cells(tmp_path, capsys, count):
    full = _write(tmp_path / "full", _results(FULL))
    shards = _shards(tmp_path, count)
    rc = main(["results", "merge", *map(str, reversed(shards)), "--out", str(tmp_path / "merged")])
    assert rc == 1  # FAILED and ERROR cells in the matrix, as `interop` would exit
    assert f"merged {count} inputs, {len(FULL.cells())} cells" in capsys.readouterr().out
    for name in ("results.json", "results.md", "results.xml"):
        assert (tmp_path / "merged" / name).read_text() == (full / name).read_text(), name


def test_merge_writes_an_extra_junit_file_and_exits_0_when_nothing_failed(tmp_path, capsys):
    sel = Selection(("esp-tunnel",), (("strongswan", "libreswan"), ("libreswan", "strongswan")))
    dirs = [_write(tmp_path / f"s{i}", [CaseResult(c.case, c.initiator, c.responder, PASSED, "", "/r", 1.0)
                                        for c in sel.cells(Shard(i, 2))], sel, Shard(i, 2)) for i in (1, 2)]
    rc = main(["results", "merge", *map(str, dirs), "--out", str(tmp_path / "m"), "--junit", str(tmp_path / "j.xml")])
    assert rc == 0, capsys.readouterr().err
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "0"


def _doctor(path: Path, change) -> None:
    doc = json.loads((path / "results.json").read_text())
    change(doc)
    (path / "results.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(("setup", "needle"), [
    (lambda t, s: [s[0], s[0]], "are both shard 1/2"),
    (lambda t, s: [s[0]], "shard 2/2 missing"),
    (lambda t, s: [_write(t / "w1", _results(FULL)), _write(t / "w2", _results(FULL))], "is in both"),
    (lambda t, s: [s[0], _write(t / "whole", _results(FULL))], "not one split of the matrix"),
    (lambda t, s: [s[0], _shards(t / "three", 3)[1]], "not one split of the matrix"),
    (lambda t, s: [s[0], _write(t / "other", _results(Selection(CASES[:2], FULL.pairs), Shard(2, 2)),
                                Selection(CASES[:2], FULL.pairs), Shard(2, 2))], "different matrices"),
    (lambda t, s: [s[0], (s[1], _doctor(s[1], lambda d: d["results"].pop()))[0]], "a shard did not finish"),
    (lambda t, s: [s[0], (s[1], _doctor(s[1], lambda d: d["results"].append(d["results"][0])))[0]], "is in both"),
    (lambda t, s: [s[0], (s[1], _doctor(s[1], lambda d: d["results"].append(
        json.loads((s[0] / "results.json").read_text())["results"][0])))[0]], "does not belong to shard 2/2"),
    (lambda t, s: [s[0], (s[1], _doctor(s[1], lambda d: d["results"][0].update(status="passed!")))[0]],
     "status 'passed!'"),
    (lambda t, s: [s[0], (s[1], _doctor(s[1], lambda d: d["results"][0].pop("seconds")))[0]], "exactly the fields"),
    (lambda t, s: [s[0], (s[1], (s[1] / "results.json").write_text("[]"))[0]], "not a results.json of format 1"),
    (lambda t, s: [s[0], (s[1], (s[1] / "results.json").write_text("{"))[0]], "not JSON"),
    (lambda t, s: [s[0], t / "nowhere"], "cannot read"),
])
def test_merge_refuses_inputs_that_are_not_one_matrix_in_one_line(tmp_path, capsys, setup, needle):
    inputs = setup(tmp_path, _shards(tmp_path, 2))
    rc = main(["results", "merge", *map(str, inputs), "--out", str(tmp_path / "merged")])
    _one_line_error(capsys, rc, needle)
    assert not (tmp_path / "merged").exists()


def test_merge_will_not_write_over_an_input(tmp_path, capsys):
    s1, s2 = _shards(tmp_path, 2)
    _one_line_error(capsys, main(["results", "merge", str(s1), str(s2), "--out", str(s1)]), "is one of the inputs")


# --- JUnit XML ---------------------------------------------------------------------------------------


def test_junit_has_one_testcase_per_cell_with_skips_failures_and_the_run_directory(tmp_path):
    run = tmp_path / "esp-tunnel--strongswan-to-libreswan"
    run.mkdir()
    for name in ("l0.pcap", "ikev2_decryption_table", "esp_sa", "charon.log"):
        (run / name).write_text("x")
    results = [
        CaseResult("esp-tunnel", "strongswan", "libreswan", PASSED, "", str(run), 4.2),
        CaseResult("esp-tunnel", "openiked", "libreswan", UNSUPPORTED, "neither gives its IKE keys\nmore", "/n", 0.0),
        CaseResult("esp-transport", "ipseclab", "strongswan", FAILED, "frame 7: tunnel mode\nevidence", "/f", 3.0),
        CaseResult("ah-transport", "libreswan", "ipseclab", ERROR, "guest did not boot", "/e", 9.0),
    ]
    suite = ET.fromstring(junit_xml(results)).find("testsuite")
    assert suite is not None
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["4", "1", "1", "1"]
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "esp-tunnel[strongswan-to-libreswan]", "esp-tunnel[openiked-to-libreswan]",
        "esp-transport[ipseclab-to-strongswan]", "ah-transport[libreswan-to-ipseclab]"]
    props = [(p.get("name"), p.get("value")) for p in cases[0].iter("property")]
    assert props == [("run_dir", str(run)), ("artifact", str(run / "l0.pcap")),
                     ("artifact", str(run / "ikev2_decryption_table")), ("artifact", str(run / "esp_sa"))]
    assert cases[0].find("skipped") is None and cases[0].find("failure") is None
    skipped = cases[1].find("skipped")
    assert skipped is not None and skipped.get("message") == "UNSUPPORTED: neither gives its IKE keys"
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "frame 7: tunnel mode"
    assert failure.text is not None and "evidence" in failure.text and "/f" in failure.text
    error = cases[3].find("error")
    assert error is not None and error.get("message") == "guest did not boot"


# --- running cells: the progress line, --shard and --junit, with run_case replaced -------------------


@pytest.fixture
def fake_cells(monkeypatch):
    """run_case records the cells it is asked for and passes them, booting nothing."""
    from ipseclab.lab import runtimes as runtime

    asked: list[str] = []

    def fake(case, initiator, responder, out_dir, runtime_name="", pool=None):
        asked.append(f"{case.name} {initiator}->{responder}")
        return CaseResult(case.name, initiator, responder, PASSED, "", str(out_dir / "x"), 1.25)

    monkeypatch.setattr(interop, "run_case", fake)
    monkeypatch.setattr(runtime, "choose_runtime", lambda requested=None: runtime.RuntimeChoice("uml", "fake"))
    return asked


def test_progress_line_names_the_cell_its_status_and_time():
    res = CaseResult("esp-tunnel", "strongswan", "libreswan", UNSUPPORTED, "no keys\nmore", "/r", 0.04)
    assert interop.progress_line(3, 12, res) == "[ 3/12] esp-tunnel strongswan->libreswan UNSUPPORTED 0.0s  no keys"


def test_interop_runs_only_its_shard_with_progress_and_junit(tmp_path, capsys, fake_cells):
    junit = tmp_path / "cells.xml"
    argv = ["interop", "--case", "esp-tunnel", "--case", "esp-transport", "--pair", "ipseclab:ipseclab",
            "--pair", "ipseclab:strongswan-libipsec", "--shard", "2/3", "--out", str(tmp_path / "run"),
            "--junit", str(junit)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    pairs = (("ipseclab", "ipseclab"), ("ipseclab", "strongswan-libipsec"))
    sel = Selection(("esp-tunnel", "esp-transport"), pairs)
    cells = sel.cells(Shard(2, 3))
    # run pair by pair (each pair's cells one after another, on the peers a LabPool keeps booted)
    want = [str(c) for c in sorted(cells, key=lambda c: pairs.index((c.initiator, c.responder)))]
    assert fake_cells == want
    n = len(want)
    assert [ln for ln in out.splitlines() if ln.startswith("[")] == [
        f"[{k}/{n}] {cell} PASSED 1.2s" for k, cell in enumerate(want, 1)]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["shard"] == "2/3" and len(doc["results"]) == n
    # the results in matrix order, whatever order they ran in
    assert [f"{r['case']} {r['initiator']}->{r['responder']}" for r in doc["results"]] == [str(c) for c in cells]
    assert len(list(ET.parse(junit).getroot().iter("testcase"))) == n
    assert (tmp_path / "run" / "results.xml").read_text() == junit.read_text()


def test_interop_junit_into_a_missing_directory_is_one_line_before_anything_runs(tmp_path, capsys, fake_cells):
    rc = main(["interop", "--pair", "ipseclab:ipseclab", "--junit", str(tmp_path / "no" / "x.xml")])
    _one_line_error(capsys, rc, "--junit")
    assert fake_cells == []


def test_the_ci_workflow_runs_every_shard_and_merges_them():
    """docs/ci/interop.yml cannot run here; at least its shard list, the --shard it passes and the merge agree."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "ci" / "interop.yml").read_text()
    count = int(re.search(r"\n  SHARDS: (\d+)", text).group(1))  # type: ignore[union-attr]
    listed = re.search(r"\n        shard: \[([\d, ]+)\]", text).group(1)  # type: ignore[union-attr]
    assert [int(x) for x in listed.split(",")] == list(range(1, count + 1))
    assert "ipseclab interop --shard ${{ matrix.shard }}/${{ env.SHARDS }}" in text
    assert 'name: interop-shard-${{ matrix.shard }}\n          path: runs/shard-${{ matrix.shard }}' in text
    assert "ipseclab results merge shards/interop-shard-* --out matrix" in text


def test_an_interrupt_stops_the_matrix_instead_of_becoming_a_cells_error(tmp_path, monkeypatch):
    from ipseclab.interop import run_case
    from ipseclab.lab.lab import LabInterrupted
    from ipseclab.testcases import by_name

    def interrupted(*args, **kwargs):
        raise LabInterrupted("interrupted by SIGINT; tearing the lab down")

    monkeypatch.setattr("ipseclab.interop.Lab", interrupted)
    with pytest.raises(KeyboardInterrupt, match="interrupted by SIGINT"):
        run_case(by_name("esp-tunnel"), "strongswan", "libreswan", tmp_path)

"""Teardown leaves nothing behind: after a peer dies, after SIGINT, and after the whole suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipseclab.errors import LabError
from ipseclab.interop import case_configs
from ipseclab.lab import cleanup
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

pytestmark = pytest.mark.interop
REPO = Path(__file__).resolve().parents[2]


def _spec(case_name: str = "esp-tunnel") -> LabSpec:
    case = by_name(case_name)
    left, right = case_configs(case, make_topology(case.topology, "probe"))
    return LabSpec(left, right, case.topology, "strongswan", "libreswan")


def test_a_peer_killed_mid_run_is_reported_and_everything_is_removed(tmp_path):
    with pytest.raises(LabError, match=r"right peer .* is not running"), Lab(_spec(), run_dir=tmp_path) as lab:
        run_id = lab.run_id
        lab.initiate("left")
        os.killpg(lab.peers["right"].host.proc.pid, signal.SIGKILL)
        lab.peers["right"].host.proc.wait(timeout=10)
        lab.ping("right")
    left = cleanup.sweep(run_id, dry_run=True)
    assert not left, f"left behind after a peer died: {left.describe()}"
    assert (tmp_path / "left-right.pcap").exists(), "the capture of a failed run must be kept"
    assert (tmp_path / "left" / "charon.log").exists()


SIGINT_SCRIPT = """
import sys
from pathlib import Path
from tests.interop.test_teardown import _spec
from ipseclab.lab.lab import Lab
with Lab(_spec("esp-tunnel-nat"), run_dir=Path(sys.argv[1])) as lab:
    print("RUN", lab.run_id, flush=True)
    lab.initiate("left")
    print("UP", flush=True)
    import time
    time.sleep(120)
"""


def test_sigint_tears_the_lab_down(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_id = ""
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RUN "):
            run_id = line.split()[1]
        if line.startswith("UP") or time.monotonic() > deadline:
            break
    assert run_id, "the lab did not come up"
    assert cleanup.lab_namespaces(run_id), "the lab's namespaces should exist while it is up"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "interrupted by SIGINT" in err
    left = cleanup.sweep(run_id, dry_run=True)
    assert not left, f"left behind after SIGINT: {left.describe()}"
    assert list(tmp_path.glob("*.pcap")), "captures of an interrupted run must be kept"


def test_zz_nothing_left_after_the_suite():
    """Runs last in this module (and after the matrix, by file order): no lab namespace, veth, UML or peer process."""
    left = cleanup.sweep(dry_run=True)
    assert not left, f"lab resources left behind: {left.describe()}"
    for name in ("linux.uml", "charon", "pluto", "tcpdump"):
        pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
        assert not pids, f"{name} processes still running: {pids}"


def test_a_peer_that_fails_to_start_names_the_cause_and_leaves_nothing(tmp_path, monkeypatch):
    from ipseclab.lab.impls.libreswan import LibreswanDriver

    def broken(self, cfg, host):
        return "echo 'pluto: cannot load ipsec.conf: line 3: unknown keyword (simulated)'\nexit 3\n"

    monkeypatch.setattr(LibreswanDriver, "start_script", broken)
    lab = Lab(_spec(), run_dir=tmp_path)
    with pytest.raises(LabError) as err, lab:
        pass
    text = str(err.value)
    assert "right" in text and "unknown keyword (simulated)" in text, text
    assert "init.log" in text  # where to look
    left = cleanup.sweep(lab.run_id, dry_run=True)
    assert not left, f"left behind after a failed start: {left.describe()}"


def test_ctrl_c_stops_the_matrix_with_exit_130_and_leaves_nothing(tmp_path):
    """An interrupt is not a cell's result: the matrix stops (the lab torn down), it does not go on."""
    before = set(cleanup.lab_namespaces())
    proc = subprocess.Popen([sys.executable, "-m", "ipseclab.cli", "interop", "--case", "esp-tunnel",
                             "--pair", "strongswan:libreswan", "--pair", "libreswan:strongswan", "--out",
                             str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not set(cleanup.lab_namespaces()) - before and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the matrix ended before its first lab came up"
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err.strip().splitlines()[-1] == "ipseclab interop: interrupted by SIGINT; tearing the lab down"
    assert "libreswan->strongswan" not in out, "the matrix went on to the next cell after the interrupt"
    assert not (set(cleanup.lab_namespaces()) - before)
    assert not cleanup.lab_pids(), "lab processes left after the interrupt"

"""A remote Docker engine: ``ipseclab interop`` with DOCKER_HOST=tcp://... runs the lab on the engine's machine.

The "remote" engine is this machine's, reached only through a TCP proxy (``engine_proxy``), so ipseclab
can use nothing but the API, as with an engine elsewhere; the test can still look at what was left.
Needs root, a Docker engine, and Debian's mirror and PyPI for the first build of the runner image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipseclab.lab.runtimes import docker_images
from ipseclab.lab.runtimes.remote import PARENT_LABEL, REMOTE_ROOT, RUNNER
from ipseclab.matrix import PASSED

from .engine_proxy import EngineProxy

pytestmark = pytest.mark.interop
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def remote_url():
    if not docker_images.engine_answers():
        pytest.skip("no Docker engine answers (the remote runtime's test needs one behind its proxy)")
    with EngineProxy() as url:
        yield url


def test_the_matrix_runs_on_a_remote_engine_and_its_artifacts_come_back(remote_url, tmp_path):
    out = tmp_path / "remote-run"
    env = {**os.environ, "DOCKER_HOST": remote_url}
    proc = subprocess.run(
        [sys.executable, "-m", "ipseclab.cli", "interop", "--runtime", "docker", "--case", "esp-tunnel",
         "--pair", "strongswan:libreswan", "--out", str(out), "--junit", str(tmp_path / "junit.xml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the lab runs there in runner container" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    cells = results["results"] if isinstance(results, dict) else results
    assert [(c["case"], c["initiator"], c["responder"], c["status"]) for c in cells] == [
        ("esp-tunnel", "strongswan", "libreswan", PASSED)]
    run_dir = Path(cells[0]["run_dir"])
    assert run_dir.is_relative_to(out), f"results name {run_dir}, not the local copy under {out}"
    # the artifacts are here, not only over there: pcaps, both key tables, the peers' logs, lab.json
    assert sorted(p.name for p in run_dir.glob("*.pcap")), f"no pcap in {run_dir}"
    for name in ("ikev2_decryption_table", "esp_sa", "lab.json"):
        assert (run_dir / name).stat().st_size > 0, name
    lab = json.loads((run_dir / "lab.json").read_text())
    assert lab["runtime"]["name"] == "docker"
    assert REMOTE_ROOT not in (tmp_path / "junit.xml").read_text()
    # and the remote machine keeps nothing: no runner, no peer, no run directory
    client = docker_images.engine()
    try:
        assert not client.containers.list(all=True, filters={"label": PARENT_LABEL})
        assert not client.containers.list(all=True, filters={"label": f"{docker_images.LABEL}.role={RUNNER}"})
    finally:
        client.close()
    assert not list(Path(REMOTE_ROOT, "runs").glob("*")), "a remote run directory was left"


def test_a_lab_in_this_process_refuses_a_remote_engine_in_one_line(remote_url, tmp_path):
    env = {**os.environ, "DOCKER_HOST": remote_url}
    proc = subprocess.run([sys.executable, "-m", "ipseclab.cli", "lab", "up", "--runtime", "docker",
                           "--out", str(tmp_path / "lab")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "another one" in proc.stderr and "ipseclab interop --runtime docker" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_mid_run_leaves_nothing_on_the_remote_machine(remote_url, tmp_path, sig):
    out = tmp_path / "interrupted"
    # another ipseclab run on the engine's machine (here: this one) that the interrupt must not touch
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)", "ipseclab.cli interop"])
    env = {**os.environ, "DOCKER_HOST": remote_url, "PYTHONUNBUFFERED": "1"}
    # the run as a user at a terminal starts it: SIGINT not ignored (a suite started in the background by a shell
    # without job control inherits SIGINT ignored, and Python then has no KeyboardInterrupt: seen 2026-12-01)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipseclab.cli", "interop", "--runtime", "docker", "--case", "esp-tunnel",
         "--case", "esp-transport", "--pair", "strongswan:libreswan", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # interrupt once the runner has started a peer of its own
        deadline = time.monotonic() + 600
        client = docker_images.engine()
        while time.monotonic() < deadline and proc.poll() is None:
            if client.containers.list(filters={"label": PARENT_LABEL}):
                break
            time.sleep(0.5)
        early = proc.stdout.read() if proc.poll() is not None and proc.stdout else ""
        assert proc.poll() is None, "the run ended before any peer started: " + early
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        bystander_alive = decoy.poll() is None
        decoy.kill()
    assert bystander_alive, "the interrupt reached another process named like an ipseclab run"
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    assert not client.containers.list(all=True, filters={"label": PARENT_LABEL})
    assert not client.containers.list(all=True, filters={"label": f"{docker_images.LABEL}.role={RUNNER}"})
    client.close()
    assert not list(Path(REMOTE_ROOT, "runs").glob("*")), "a remote run directory was left"

"""The docker runtime: images through the Docker SDK, peers as containers that boot their kernel under UML.

Needs root and a Docker engine (the engine's own images: nothing is pulled).  Every test ends by
checking that nothing of ipseclab's is left: no container, no network, no namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipseclab.errors import LabError
from ipseclab.interop import case_configs, run_case
from ipseclab.lab import cleanup
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.runtimes import docker as docker_host
from ipseclab.lab.runtimes import docker_images
from ipseclab.lab.topology import make_topology
from ipseclab.matrix import PASSED
from ipseclab.testcases import by_name

pytestmark = pytest.mark.interop
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client():
    if not docker_images.engine_answers():
        pytest.skip("no Docker engine answers (the docker runtime's tests need one)")
    c = docker_images.engine()
    for impl in docker_images.image_names():
        docker_images.build(impl, client=c)
    yield c
    c.close()


def _spec(case_name: str = "esp-tunnel", left: str = "strongswan", right: str = "libreswan") -> LabSpec:
    case = by_name(case_name)
    lcfg, rcfg = case_configs(case, make_topology(case.topology, "probe"))
    return LabSpec(lcfg, rcfg, case.topology, left, right, "docker")


def assert_nothing_left(client, run_id: str | None = None) -> None:
    left = cleanup.sweep(run_id, dry_run=True)
    assert not left, f"left behind: {left.describe()}"
    label = f"{docker_images.LABEL}.run={run_id}" if run_id else f"{docker_images.LABEL}=1"
    assert not client.containers.list(all=True, filters={"label": label})
    assert not client.networks.list(filters={"label": docker_images.LABEL})


def test_a_second_build_builds_nothing(client):
    for impl in docker_images.image_names():
        again = docker_images.build(impl, client=client)
        assert again.built_in == 0.0 and again.tag == docker_images.image_tag(impl)
        image = client.images.get(again.tag)
        assert image.labels[docker_images.LABEL] == "1" and image.labels[f"{docker_images.LABEL}.impl"] == impl
    current = {r["tag"] for r in docker_images.listed(client) if r["current"]}
    assert {docker_images.image_tag(i) for i in docker_images.image_names()} | {docker_images.base_tag()} <= current


@pytest.mark.parametrize(("case", "pair"), [
    ("esp-tunnel-nat", ("strongswan", "libreswan")),
    ("ah-transport", ("libreswan", "strongswan")),
    ("esp-tunnel", ("ipseclab", "libreswan")),  # the endpoint on the host kernel beside a container peer
], ids=lambda v: v if isinstance(v, str) else f"{v[0]}-to-{v[1]}")
def test_cells_pass_with_peers_in_containers(client, tmp_path, case, pair):
    res = run_case(by_name(case), pair[0], pair[1], tmp_path, runtime="docker")
    assert res.status == PASSED, f"{res.status}: {res.reason}\nrun directory: {res.run_dir}"
    state = json.loads((Path(res.run_dir) / "lab.json").read_text())
    assert state["runtime"]["name"] == "docker" and "User-Mode Linux" in state["runtime"]["reason"]
    assert state["kernel"]["version"], "expected the kernel in lab.json"
    container_peers = [s for s, impl in zip(("left", "right"), pair, strict=True) if impl != "ipseclab"]
    for side in container_peers:
        assert (Path(res.run_dir) / side / "console.log").read_text().count("Linux version"), \
            f"expected the {side} container's UML console in console.log"
    assert_nothing_left(client)


def test_a_container_killed_from_outside_is_reported_and_everything_is_removed(client, tmp_path):
    with pytest.raises(LabError, match=r"right peer .* is not running"), \
            Lab(_spec(), run_dir=tmp_path) as lab:
        run_id = lab.run_id
        lab.initiate("left")
        client.containers.get(f"ipl-{run_id}-right").kill()
        deadline = time.monotonic() + 10
        while lab.peers["right"].host.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        lab.ping("right")
    assert_nothing_left(client, run_id)
    assert (tmp_path / "left-right.pcap").exists(), "the capture of a failed run must be kept"
    assert (tmp_path / "left" / "charon.log").exists()


def test_a_container_that_exits_during_start_names_it_and_leaves_nothing(client, tmp_path, monkeypatch):
    monkeypatch.setattr(docker_host, "LAUNCH", "echo 'ipseclab: simulated start failure' ; exit 3\n{ifname}{command}")
    lab = Lab(_spec(), run_dir=tmp_path)
    # it exits before or while its network namespace is attached: either way the message names the status
    with pytest.raises(LabError, match=r"(container exited during start|exited during boot) \(status 3\)"), lab:
        pass
    assert_nothing_left(client, lab.run_id)


def test_a_foreign_container_with_our_name_is_refused_and_left_alone(client, tmp_path):
    run_id = "f0e1d2"
    foreign = client.containers.create(docker_images.base_tag(), ["sleep", "60"], name=f"ipl-{run_id}-left")
    try:
        with pytest.raises(LabError, match="a container of that name exists"), \
                Lab(_spec(), run_dir=tmp_path, run_id=run_id):
            pass
        foreign.reload()  # still there: it is not ipseclab's (no label), so no sweep touched it
        assert foreign.name == f"ipl-{run_id}-left"
    finally:
        foreign.remove(force=True)
    assert_nothing_left(client, run_id)


SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
from tests.interop.test_docker_runtime import _spec
from ipseclab.lab.lab import Lab
with Lab(_spec("esp-tunnel-nat"), run_dir=Path(sys.argv[1])) as lab:
    print("RUN", lab.run_id, flush=True)
    lab.initiate("left")
    print("UP", flush=True)
    time.sleep(120)
"""


def test_sigterm_mid_run_removes_the_containers(client, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_id = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RUN "):
            run_id = line.split()[1]
        if line.startswith("UP"):
            break
    assert run_id, "the lab did not come up"
    assert client.containers.list(filters={"label": f"{docker_images.LABEL}.run={run_id}"}), \
        "the run's containers should exist while it is up"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted by SIGTERM" in err, err[-2000:]
    assert_nothing_left(client, run_id)
    assert list(tmp_path.glob("*.pcap")), "captures of an interrupted run must be kept"


def test_an_image_that_fails_to_build_is_one_error_with_the_log_and_leaves_nothing(client, tmp_path, monkeypatch):
    import shutil

    containers = tmp_path / "containers"
    shutil.copytree(docker_images.CONTAINERS, containers)
    dockerfile = containers / "strongswan" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("RUN apt-get update", "RUN echo simulated-failure && false "
                                                                              "&& apt-get update"))
    monkeypatch.setattr(docker_images, "CONTAINERS", containers)
    before = {c.id for c in client.containers.list(all=True)}
    with pytest.raises(LabError, match="building the strongswan docker image failed") as err:
        docker_images.build("strongswan", log_dir=tmp_path / "logs", client=client)
    assert "simulated-failure" in str(err.value), "expected the build's own output in the error"
    assert "simulated-failure" in (tmp_path / "logs" / "docker-image-strongswan.log").read_text()
    assert {c.id for c in client.containers.list(all=True)} <= before, "the failed build left a container"
    assert not client.images.list(name=docker_images.image_tag("strongswan")), "no image under the broken inputs' tag"


def test_images_cli_lists_and_builds_nothing_twice(client, capsys):
    from ipseclab.cli import main

    assert main(["images", "build", "strongswan"]) == 0
    assert "cached: nothing to build" in capsys.readouterr().out
    assert main(["images", "list"]) == 0
    out = capsys.readouterr().out
    for name in docker_images.image_names():
        line = next((ln for ln in out.splitlines() if ln.startswith(docker_images.image_tag(name))), "")
        assert line.endswith("current"), f"expected {docker_images.image_tag(name)} listed as current, got {out!r}"

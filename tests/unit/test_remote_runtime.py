"""The remote engine's pieces that need no engine: which DOCKER_HOST is remote, what the runner is given,
what the local copy of the results names.  The real run is tests/interop/test_remote_engine.py."""

from __future__ import annotations

import argparse
import io
import json
import tarfile

import pytest

from ipseclab.cli_interop import _forwarded
from ipseclab.lab.runtimes import docker as docker_runtime
from ipseclab.lab.runtimes import docker_images, remote


@pytest.mark.parametrize(("value", "expected"), [
    ("", None), ("unix:///var/run/docker.sock", None), ("npipe:////./pipe/docker_engine", None),
    ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376"), ("ssh://user@lab-box", "ssh://user@lab-box"),
])
def test_which_docker_host_is_remote(value, expected):
    assert remote.remote_engine(value) == expected


def test_the_runner_is_not_a_peer_image():
    assert "runner" not in docker_images.image_names()
    assert {"strongswan", "libreswan"} <= set(docker_images.image_names())


def test_the_remote_run_gets_the_same_selection_and_chooses_its_own_out():
    args = argparse.Namespace(case=["esp-tunnel", "ah-transport"], pair=["strongswan:libreswan"], shard="2/3",
                              kernel_ipsec="uml", out="/somewhere/here", jobs="auto")
    assert _forwarded(args) == ["--case", "esp-tunnel", "--case", "ah-transport", "--pair", "strongswan:libreswan",
                                "--shard", "2/3", "--kernel-ipsec", "uml", "--jobs", "auto"]
    none = argparse.Namespace(case=None, pair=None, shard=None, kernel_ipsec=None, out=None, jobs="1")
    assert _forwarded(none) == []


def test_peers_a_runner_starts_carry_its_run_id(monkeypatch):
    monkeypatch.delenv(remote.PARENT_ENV, raising=False)
    assert remote.PARENT_LABEL not in docker_runtime.run_labels("r1", "left")
    monkeypatch.setenv(remote.PARENT_ENV, "remote-7")
    assert docker_runtime.run_labels("r1", "left")[remote.PARENT_LABEL] == "remote-7"


def test_requirements_are_pinned_to_what_is_installed_here():
    from importlib.metadata import version

    reqs = remote._requirements()
    assert f"scapy=={version('scapy')}" in reqs and f"cryptography=={version('cryptography')}" in reqs
    assert all("==" in r for r in reqs)


def test_the_runner_context_ships_source_cases_containers_and_wheels(tmp_path):
    (tmp_path / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    context, tag = remote.runner_context(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        names = tar.getnames()
    assert "runner/Dockerfile" in names and "wheels/x-1.0-py3-none-any.whl" in names
    assert "src/ipseclab/cli.py" in names and "src/containers/strongswan/Dockerfile" in names
    assert any(n.startswith("src/") and n.endswith("testcases/base.py") for n in names)
    assert not any("__pycache__" in n for n in names)
    again, same = remote.runner_context(tmp_path)
    assert same == tag and again == context  # mtimes are zeroed: the tag is a function of the contents
    (tmp_path / "y-1.0-py3-none-any.whl").write_bytes(b"another")
    assert remote.runner_context(tmp_path)[1] != tag


def test_local_results_name_the_local_copies(tmp_path):
    far = "/var/lib/ipseclab-remote/runs/r1/out"
    (tmp_path / "results.json").write_text(json.dumps({"results": [{"run_dir": f"{far}/esp-tunnel--a-to-b"}]}))
    (tmp_path / "results.xml").write_text(f'<property name="run_dir" value="{far}/esp-tunnel--a-to-b"/>')
    remote._relocate(tmp_path, far, str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["run_dir"] == \
        f"{tmp_path}/esp-tunnel--a-to-b"
    assert far not in (tmp_path / "results.xml").read_text()


def test_a_lab_in_this_process_refuses_a_remote_engine(monkeypatch):
    from ipseclab.errors import LabError
    from ipseclab.lab.runtimes import choose_runtime

    monkeypatch.setenv("DOCKER_HOST", "tcp://203.0.113.9:2376")
    with pytest.raises(LabError) as exc:
        choose_runtime("docker")
    assert "another one" in str(exc.value) and "ipseclab interop --runtime docker" in exc.value.hint


def test_an_engine_on_another_architecture_is_refused():
    class Client:
        def info(self):
            return {"Architecture": "aarch64"}

    from ipseclab.errors import LabError

    with pytest.raises(LabError) as exc:
        remote._check_arch(Client())  # type: ignore[arg-type]
    assert "aarch64" in str(exc.value)




def test_a_kernel_copied_elsewhere_runs_there_after_relocation(tmp_path):
    """What a remote runner does with the shipped kernel: the copy's binary must run from its new place."""
    import os
    import shutil

    from ipseclab.lab.runtimes.uml_kernel import binary_version, installed_kernels, relocate_kernel

    kernels = installed_kernels()
    if not kernels or kernels[0].install_dir is None:
        pytest.skip("no UML kernel in ipseclab's cache (ipseclab kernel install, as root)")
    source = kernels[0].install_dir
    copy = tmp_path / source.name
    # hard links for the modules and the C library, a real copy of the binary that relocation rewrites
    shutil.copytree(source, copy, copy_function=os.link)
    binary = copy / "usr/bin/linux.uml"
    for name in ("usr/bin/linux.uml", "kernel.json"):  # what relocation rewrites: real copies
        (copy / name).unlink()
        shutil.copy2(source / name, copy / name)
    original_manifest = (source / "kernel.json").read_text()
    moved = relocate_kernel(copy)
    assert moved.binary == binary and moved.install_dir == copy and str(source) not in moved.origin
    assert binary_version(moved.binary) == kernels[0].version
    assert relocate_kernel(copy) == moved  # again: nothing to change
    assert binary_version(kernels[0].binary) == kernels[0].version  # the original is untouched
    assert (source / "kernel.json").read_text() == original_manifest

"""The docker runtime's pieces that need no engine: image tags from inputs, runtime choice, engine errors."""

from __future__ import annotations

import shutil

import pytest

from ipseclab.cli import main
from ipseclab.errors import LabError
from ipseclab.lab import images
from ipseclab.lab.runtimes import choose_runtime, docker_images


def test_an_image_tag_is_a_hash_of_its_inputs(tmp_path, monkeypatch):
    copy = tmp_path / "containers"
    shutil.copytree(images.CONTAINERS, copy)
    monkeypatch.setattr(docker_images, "CONTAINERS", copy)
    monkeypatch.setattr(images, "CONTAINERS", copy)
    before = {impl: docker_images.image_tag(impl) for impl in docker_images.image_names()}
    assert before == {impl: docker_images.image_tag(impl) for impl in docker_images.image_names()}
    assert all(tag.startswith(f"ipseclab/{impl}:") for impl, tag in before.items())
    with (copy / "strongswan" / "packages.txt").open("a") as fh:
        fh.write("strace\n")
    assert docker_images.image_tag("strongswan") != before["strongswan"]
    assert docker_images.image_tag("libreswan") == before["libreswan"]
    (copy / "common" / "entrypoint.sh").write_text("#!/bin/sh\nexec sh /ipl/init.sh\n")
    assert docker_images.image_tag("libreswan") != before["libreswan"], "shared files are inputs of every image"


def test_an_unknown_implementation_names_the_known_ones():
    with pytest.raises(LabError, match="known implementations: libreswan, openiked, strongswan"):
        docker_images.image_tag("racoon")


def test_no_engine_is_one_line_naming_docker_host(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(LabError, match=r"no Docker engine answers at unix:///nonexistent/docker\.sock"):
        choose_runtime("docker")
    assert choose_runtime("auto").name == "uml", "auto must fall back to uml when no engine answers"
    assert main(["images", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ipseclab images: error: no Docker engine answers at unix:///nonexistent/docker.sock")
    assert "Traceback" not in err


def test_an_unknown_runtime_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("IPSECLAB_RUNTIME", "podman")
    with pytest.raises(LabError, match=r"(?s)unknown runtime 'podman'.*auto, uml, docker"):
        choose_runtime()


def test_a_remote_engine_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://198.51.100.7:2376")
    with pytest.raises(LabError, match=r"needs the Docker engine on this machine; DOCKER_HOST=tcp://"):
        choose_runtime("docker")

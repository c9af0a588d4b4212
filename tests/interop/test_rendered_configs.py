"""Rendered configurations against the daemons' own parsers: ``iked -n`` in the OpenIKED image reads every
``iked.conf`` the renderer accepts, and ``addconn --checkconfig`` in the Libreswan image every SA lifecycle
setting of ``ipsec.conf`` (the renderer's promises are the daemon's, not ours)."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from ipseclab.interop import case_configs
from ipseclab.lab.images import build_image
from ipseclab.lab.impls.libreswan import write_libreswan_config
from ipseclab.lab.impls.openiked import write_iked_conf
from ipseclab.lab.runtimes.uml_kernel import select_kernel
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def openiked_root():
    return build_image("openiked", select_kernel()).path


def _variants():
    """Every renderer feature at least once: both roles, both modes, IKE suites, Child SA suites, ESN, hex PSK."""
    case = by_name("aes-cbc-sha1-ecp256")
    left, right = case_configs(case, make_topology(case.topology, "render"))
    yield "initiator", left
    yield "responder", right
    yield "transport", replace(left, mode="transport", local_ts=(), remote_ts=())
    for ike in ("aes256gcm16-prfsha384-ecp384", "aes128-sha512-curve25519", "aes192-sha1-modp3072",
                "aes256gcm12-prfsha256-ecp256bp", "aes128-md5-modp2048"):
        yield ike, replace(left, ike_proposals=(ike,))
    for child in ("aes128-md5", "aes256-sha1-modp2048", "aes192-md5"):
        yield child, replace(left, esp_proposals=(child,))
    yield "esn", replace(left, esn=True)
    yield "two-ike-proposals", replace(left, ike_proposals=("aes128-sha256-ecp256", "aes256-sha384-modp4096"))
    yield "binary-psk", replace(left, psk=bytes(range(32)))


@pytest.mark.parametrize(("name", "cfg"), list(_variants()), ids=[n for n, _ in _variants()])
def test_iked_parses_every_rendered_config(openiked_root, name, cfg):
    path = write_iked_conf(cfg, openiked_root / "tmp" / f"ipseclab-render-{name}")
    inside = "/" + str(path.relative_to(openiked_root))
    proc = subprocess.run(["chroot", str(openiked_root), "iked", "-n", "-f", inside], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and "configuration OK" in proc.stdout + proc.stderr, (
        f"iked -n refused the rendered config ({name}):\n{proc.stdout}{proc.stderr}\n{path.read_text()}")


def _lifecycle_variants():
    """Every SA lifecycle setting the Libreswan renderer writes, and an additional Child SA's conn."""
    case = by_name("child-rekey-initiator")
    left, _ = case_configs(case, make_topology(case.topology, "render"))
    yield "lifetimes", left
    yield "no-rekey-reauth-fuzz", replace(left, rekey=False, reauth=True, rekey_jitter=2)
    yield "volume-dpd-retransmit", replace(left, child_life_bytes=60_000, dpd_delay=2, dpd_action="restart",
                                           retransmit_timeout=0.5, retransmit_tries=2)
    yield "extra-child", replace(left, extra_children=(("203.0.113.192/27", "203.0.113.224/27"),))


@pytest.fixture(scope="module")
def libreswan_root():
    return build_image("libreswan", select_kernel()).path


@pytest.mark.parametrize(("name", "cfg"), list(_lifecycle_variants()), ids=[n for n, _ in _lifecycle_variants()])
def test_libreswan_parses_every_lifecycle_setting(libreswan_root, name, cfg):
    directory = libreswan_root / "tmp" / f"ipseclab-render-{name}"
    files = write_libreswan_config(cfg, directory, log_path="/tmp/pluto.log")
    inside = "/" + str(files.ipsec_conf.relative_to(libreswan_root))
    proc = subprocess.run(["chroot", str(libreswan_root), "/usr/libexec/ipsec/addconn", "--config", inside,
                           "--checkconfig"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (f"addconn --checkconfig refused the rendered config ({name}):\n"
                                  f"{proc.stdout}{proc.stderr}\n{files.ipsec_conf.read_text()}")

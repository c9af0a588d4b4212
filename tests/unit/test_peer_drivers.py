"""The adapter contract: the registry of implementations, and strongSwan's kernel-libipsec built through it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ipseclab.errors import ConfigError
from ipseclab.interop import case_configs
from ipseclab.lab import impls
from ipseclab.lab.impls.strongswan import StrongswanDriver, render_strongswan_conf
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name


def configs(case: str):
    c = by_name(case)
    return case_configs(c, make_topology(c.topology, "unit"))


def test_every_registered_implementation_keeps_the_contract():
    assert {"strongswan", "libreswan", "ipseclab", "strongswan-libipsec"} <= set(impls.implementations())
    for name in impls.implementations():
        drv = impls.driver(name)
        assert drv.placement in ("kernel", "container", "process")
        assert drv.placement == "process" or drv.image, f"{name} runs from an image but names none"


def test_register_refuses_a_driver_that_breaks_the_contract():
    class NoImage(StrongswanDriver):
        impl, image, placement = "vendor-ikev2", None, "container"

    with pytest.raises(ConfigError, match="needs an image"):
        impls.register(NoImage())
    assert "vendor-ikev2" not in impls.implementations()


def test_libipsec_loads_its_plugin_before_kernel_netlink_with_more_threads():
    left, _ = configs("esp-tunnel-udp")
    conf = render_strongswan_conf(left, vici_socket="/v", log_path="/l", libipsec=True)
    load = next(ln for ln in conf.splitlines() if ln.strip().startswith("load =") and "charon" not in ln)
    plugins = load.split("=", 1)[1].split()
    assert plugins.index("kernel-libipsec") < plugins.index("kernel-netlink")
    assert "threads = 16" in conf
    assert "kernel-libipsec" not in render_strongswan_conf(left, vici_socket="/v", log_path="/l")


@pytest.mark.parametrize(("case", "topology", "why"), [
    ("esp-tunnel", "direct", "plain ESP between the hosts"),
    ("esp-transport", "direct", "transport mode"),
    ("ah-transport", "direct", "AH"),
])
def test_libipsec_refuses_what_it_cannot_do_with_the_reason(case, topology, why):
    left, _ = configs(case)
    with pytest.raises(ConfigError, match=f"kernel-libipsec does not do .*{why}"):
        impls.driver("strongswan-libipsec").check_supported(left, topology)


def test_libipsec_takes_udp_encapsulated_tunnels_and_nat():
    drv = impls.driver("strongswan-libipsec")
    drv.check_supported(configs("esp-tunnel-udp")[0], "direct")
    drv.check_supported(configs("esp-tunnel-nat")[1], "nat")
    with pytest.raises(ConfigError, match="ESN"):
        drv.check_supported(replace(configs("esp-tunnel-udp")[0], esn=True), "direct")


def test_openiked_renders_one_policy_per_side():
    from ipseclab.lab.impls.openiked import render_iked_conf

    left, right = configs("aes-cbc-sha1-ecp256")
    conf = render_iked_conf(left)
    assert 'ikev2 "lab" active esp \\' in conf
    assert "from 203.0.113.0/26 to 203.0.113.64/26" in conf and "local 198.51.100.10 peer 198.51.100.20" in conf
    assert "ikesa enc aes-128 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256" in conf
    assert "childsa enc aes-128 auth hmac-sha1 noesn" in conf
    assert "srcid left.ipseclab.test dstid right.ipseclab.test" in conf
    assert 'ikev2 "lab" passive esp' in render_iked_conf(right)


@pytest.mark.parametrize(("case", "why"), [
    ("esp-tunnel", "cannot install a HMAC_SHA2_256_128 Child SA through PF_KEY"),
    ("aes-gcm-curve25519", "cannot install a AES_GCM_16 Child SA through PF_KEY"),
    ("ah-transport", "AH"),
    ("esp-tunnel-udp", "forces NAT-T only for every policy at once"),
])
def test_openiked_refuses_what_it_cannot_install_with_the_reason(case, why):
    left, _ = configs(case)
    with pytest.raises(ConfigError, match=why):
        impls.driver("openiked").check_supported(left, by_name(case).topology)


def test_a_cell_where_neither_peer_gives_ike_keys_is_unsupported_not_failed(tmp_path):
    from ipseclab.interop import run_case
    from ipseclab.matrix import UNSUPPORTED

    res = run_case(by_name("aes-cbc-sha1-ecp256"), "openiked", "libreswan", tmp_path)
    assert res.status == UNSUPPORTED and "neither openiked nor libreswan gives its IKE keys" in res.reason


def test_libreswan_in_transport_mode_behind_a_nat_is_told_the_initiators_address_or_refused():
    """Seen in runs of tcp-transport-nat: pluto 4.10 as the responder answers TS_UNACCEPTABLE unless rightsubnet=
    names the initiator's own address (the lab's remote_ts: then strongSwan and ipseclab initiators pass); as the
    initiator it rejects strongSwan's NAT-narrowed TSi, which the cell says before booting."""
    from ipseclab.interop import unsupported_reason
    from ipseclab.lab.impls.libreswan import LibreswanDriver, render_ipsec_conf

    case = by_name("tcp-transport-nat")
    _, resp = case_configs(case, make_topology("nat", "probe"))
    assert "\trightsubnet=198.51.100.10/32\n" in render_ipsec_conf(resp, log_path="/x")
    for pair in (("strongswan", "libreswan"), ("ipseclab", "libreswan"), ("libreswan", "ipseclab")):
        assert unsupported_reason(case, *pair, host=False) is None, pair
    why = unsupported_reason(case, "libreswan", "strongswan", host=False) or ""
    assert "TS_UNACCEPTABLE" in why and "initiator rejected Child SA response" in why
    with pytest.raises(ConfigError, match="unless rightsubnet names the initiator's own address"):
        LibreswanDriver().check_supported(replace(resp, remote_ts=()), "nat")
    assert unsupported_reason(by_name("esp-tunnel-nat"), "strongswan", "libreswan", host=False) is None

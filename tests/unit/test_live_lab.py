"""The REPL lab without booting anything: what it makes of kernel output, its frames, and its one-line refusals.

What it does against live peers is checked by tests/interop/test_live_lab.py and the README's sessions
(tests/interop/test_readme_sessions.py); here, the parts that need no root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from ipseclab.errors import ConfigError, LabError, UnsupportedError
from ipseclab.esp import AhSA, EspSA
from ipseclab.interop import case_configs
from ipseclab.lab.keys import parse_xfrm_stat, parse_xfrm_state
from ipseclab.lab.live import LiveLab, Mark, PeerCounters, _frame, sa_from_xfrm
from ipseclab.lab.topology import make_topology
from ipseclab.repl import lab_spec
from ipseclab.testcases import by_name

XFRM = (Path(__file__).resolve().parents[1] / "vectors" / "xfrm_state_sample.txt").read_text()
# /proc/net/xfrm_stat as a Linux 6.x guest prints it (abridged)
XFRM_STAT = "XfrmInError              \t0\nXfrmInNoStates           \t3\nXfrmInStateSeqError      \t1\n"


def test_kernel_sas_become_esp_and_ah_sas_with_the_kernels_keys_and_settings():
    cbc, gcm, ah = (sa_from_xfrm(s) for s in parse_xfrm_state(XFRM))
    assert isinstance(cbc, EspSA) and isinstance(gcm, EspSA) and isinstance(ah, AhSA)
    assert cbc.spi == 0xCAEA56F0 and cbc.key == bytes.fromhex("9ad5a89b0c09c889491d5114712cb035")
    assert cbc.integ is not None and cbc.integ.name == "AUTH_HMAC_SHA2_256_128"
    assert cbc.tunnel == ("198.51.100.10", "198.51.100.20") and cbc.esn and cbc.window.size == 128
    assert gcm.udp == (4500, 4500) and len(gcm.key) == 36 and gcm.integ is None
    assert ah.spi == 0xABCD and ah.tunnel is None


def test_an_sa_continues_from_the_kernels_last_sequence_number_sent():
    state = parse_xfrm_state(XFRM)[0]
    state.counters["oseq"] = 41
    sa = sa_from_xfrm(state)
    packet = sa.protect(bytes(IP(src="203.0.113.1", dst="203.0.113.65") / ICMP()))
    assert int.from_bytes(packet[24:28], "big") == 42  # outer IPv4 header, SPI, then the sequence number


def test_xfrm_stat_keeps_every_counter_zeros_too():
    assert parse_xfrm_stat(XFRM_STAT) == {"XfrmInError": 0, "XfrmInNoStates": 3, "XfrmInStateSeqError": 1}


def test_counters_name_the_sas_they_have_when_asked_for_another():
    counters = PeerCounters({0x1234: {"replay": 2}})
    assert counters.replay(0x1234) == 2
    with pytest.raises(LabError, match=r"no SA with SPI 0x00005678 on this peer \(its SAs: 0x00001234\)"):
        counters.replay(0x5678)


def test_ip_packets_go_out_in_ethernet_frames_with_the_hosts_addresses():
    frame = Ether(_frame(IP(src="198.51.100.10", dst="198.51.100.20") / ICMP(), "02:00:00:00:00:01",
                         "02:00:00:00:00:02"))
    assert (frame.src, frame.dst, frame.type) == ("02:00:00:00:00:01", "02:00:00:00:00:02", 0x0800)
    assert frame[IP].dst == "198.51.100.20"
    own = Ether(src="02:00:00:00:00:09", dst="ff:ff:ff:ff:ff:ff") / IP()
    assert _frame(own, "02:00:00:00:00:01", "02:00:00:00:00:02") == bytes(own)  # an Ether frame goes as it is
    with pytest.raises(LabError, match="send takes IP packets"):
        _frame(b"\x00\x01", "02:00:00:00:00:01", "02:00:00:00:00:02")


@pytest.fixture
def down_lab() -> LiveLab:
    return LiveLab(lab_spec("esp-tunnel-nat", "strongswan", "libreswan"), run_dir=Path("/nonexistent"))


@pytest.mark.parametrize("call", [
    lambda lab: lab.send(IP() / ICMP(), side="left"),
    lambda lab: lab.sniff("esp"),
    lambda lab: lab.mark(),
    lambda lab: lab.sas("right"),
    lambda lab: lab.counters("right"),
    lambda lab: lab.ike_sas(),
])
def test_a_lab_that_is_down_says_so_in_one_line(down_lab, call):
    with pytest.raises(LabError, match=r"^the lab is down\nhint: start one with ipseclab.repl.start"):
        call(down_lab)


def test_links_and_sides_that_do_not_exist_are_named_with_the_ones_that_do(down_lab):
    assert down_lab.links == ["left-nat", "nat-right"]
    assert down_lab.link("nat-right").capture_if == "nr0"
    with pytest.raises(LabError, match=r"^no link 'left-right' in this lab; its links: left-nat, nat-right$"):
        down_lab.link("left-right")
    with pytest.raises(LabError, match=r"^this lab has links left-nat, nat-right: name one"):
        down_lab.link()
    with pytest.raises(LabError, match=r"^no side 'middle' in this lab; its sides: left, right$"):
        down_lab.address("middle")
    assert down_lab.address("left") == "198.51.100.10"
    assert down_lab.public_address("left") == "203.0.113.129"  # as the right side sees it: behind the NAT
    assert Mark().frames == {}


def test_lab_spec_from_a_case_or_two_peer_configs():
    spec = lab_spec("esp-tunnel", "ipseclab", "strongswan")
    assert (spec.left, spec.right, spec.topology) == ("ipseclab", "strongswan", "direct")
    left, right = case_configs(by_name("esp-transport"), make_topology("direct", "probe"))
    spec = lab_spec((left, right), "strongswan", "libreswan")
    assert spec.left_config is left and spec.right_config is right


@pytest.mark.parametrize(("args", "error", "message"), [
    (("bogus",), ConfigError, "no test case 'bogus'"),
    (("esp-tunnel", "strongswan", "nobody"), ConfigError, "unknown implementation 'nobody'"),
    ((42,), ConfigError, "give a test case, its name, or a pair of PeerConfig"),
    (("esp-tunnel-udp", "openiked", "strongswan"), UnsupportedError, "OpenIKED forces NAT-T only for every policy"),
])
def test_lab_spec_refuses_in_one_line(args, error, message):
    with pytest.raises(error, match=message):
        lab_spec(*args)


def test_a_lab_at_the_repl_needs_no_ike_keys_but_a_trace_check_does():
    spec = lab_spec("esp-tunnel", "libreswan", "libreswan")  # neither gives IKE keys: fine for crafting
    assert spec.left == spec.right == "libreswan"
    with pytest.raises(UnsupportedError, match="gives its IKE keys"):
        lab_spec("esp-tunnel", "libreswan", "libreswan", need_ike_keys=True)


def test_packets_from_a_side_go_to_the_next_hop_and_a_named_link_sends_from_its_near_end(down_lab, monkeypatch):
    from ipseclab.lab import live

    monkeypatch.setattr(LiveLab, "mac", lambda self, side: f"mac-of-{side}")
    monkeypatch.setattr(live, "_interface_mac", lambda ns, ifname: f"mac-of-{ifname}")
    ns = {h: f"ipl-{down_lab.run_id}-{h}" for h in ("left", "nat", "right")}
    link, out_ns, out_if, dst = down_lab._hop("left", None)
    assert (link.name, out_ns, out_if, dst) == ("left-nat", ns["left"], "l0", "mac-of-nl0")  # to the router
    link, out_ns, out_if, dst = down_lab._hop("left", "nat-right")  # from the router's outside to right
    assert (link.name, out_ns, out_if, dst) == ("nat-right", ns["nat"], "nr0", "mac-of-right")
    link, out_ns, out_if, dst = down_lab._hop("right", None)
    assert (link.name, out_ns, out_if, dst) == ("nat-right", ns["right"], "r0", "mac-of-nr0")


def test_a_filter_tcpdump_cannot_compile_is_one_line():
    from ipseclab.lab.live import check_filter

    check_filter("udp port 500 and src host 198.51.100.20")
    with pytest.raises(LabError, match=r"^bad capture filter 'esp and': Failed to compile filter expression"):
        check_filter("esp and")

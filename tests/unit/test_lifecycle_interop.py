"""The lifecycle interop cases' parts that run without root: settings rendered for each daemon, the
step/driver contract, every SA's keys from a real run, and the checks against that run's capture.

The vectors in ``tests/vectors/lifecycle_child_rekey/`` come from one lab run (strongSwan 5.9.8
initiator, Libreswan 4.10 responder, both in UML; the Child SA rekeyed twice by strongSwan): the
capture, both guests' ``ip xfrm monitor`` output, and the key tables and steps record the lab wrote.
The oracle for the checks is Wireshark decrypting that capture, not our own code.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from ipseclab.errors import ConfigError
from ipseclab.interop import case_configs, unsupported_reason
from ipseclab.lab.esp_keys import write_run_esp_sa
from ipseclab.lab.impls import driver
from ipseclab.lab.impls import libreswan as lsw
from ipseclab.lab.impls import openiked as iked
from ipseclab.lab.impls import strongswan as ssw
from ipseclab.lab.impls.contract import LIFECYCLE_ACTIONS, route_batch
from ipseclab.lab.keys import parse_xfrm_monitor
from ipseclab.lab.topology import make_topology
from ipseclab.pcap.esp_keyfiles import read_esp_sa
from ipseclab.testcases import by_name
from ipseclab.testcases.lifecycle import CASES, CHILD_REKEY_INITIATOR, ChildRekeyCase
from ipseclab.testcases.lifecycle_checks import child_rekeys, view
from ipseclab.testcases.steps import Rekey, Wait

from .test_peerconfig import conn, ipsec_conf, make, swan_tree, swanctl

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "lifecycle_child_rekey"


# --- settings rendered for each daemon ----------------------------------------------------------


def test_strongswan_renders_lifetimes_volume_dpd_and_retransmission():
    cfg = make(child_lifetime=20, child_rekey_margin=14, ike_lifetime=30, ike_rekey_margin=14, rekey_jitter=2,
               child_rekey_bytes=30_000, child_life_bytes=60_000, dpd_delay=2, dpd_action="hold",
               retransmit_timeout=1.0, retransmit_tries=2)
    c = swanctl(cfg)["connections"]["lab"]
    assert (c["rekey_time"], c["over_time"], c["rand_time"], c["reauth_time"]) == ("16s", "14s", "2s", "0s")
    ch = c["children"]["lab"]
    assert (ch["rekey_time"], ch["life_time"], ch["rand_time"]) == ("6s", "20s", "2s")
    assert (ch["rekey_bytes"], ch["rand_bytes"], ch["life_bytes"]) == ("30000", "0", "60000")
    assert ch["dpd_action"] == "trap"  # strongSwan 5.9's name for hold
    conf = swan_tree(ssw.render_strongswan_conf(cfg, vici_socket="/run/v", log_path="/ipl/c.log"))["charon"]
    assert (conf["retransmit_timeout"], conf["retransmit_base"], conf["retransmit_tries"]) == ("1", "2", "2")


def test_strongswan_defaults_leave_the_daemon_defaults_alone():
    cfg = make()
    ch = swanctl(cfg)["connections"]["lab"]["children"]["lab"]
    assert not {"rekey_bytes", "life_bytes", "dpd_action"} & ch.keys()
    conf = swan_tree(ssw.render_strongswan_conf(cfg, vici_socket="/run/v", log_path="/ipl/c.log"))["charon"]
    assert not {"retransmit_timeout", "retransmit_tries"} & conf.keys()


def test_strongswan_no_rekey_and_reauth():
    c = swanctl(make(rekey=False))["connections"]["lab"]
    assert (c["rekey_time"], c["reauth_time"], c["children"]["lab"]["rekey_time"]) == ("0s", "0s", "0s")
    c = swanctl(make(reauth=True, ike_lifetime=100, ike_rekey_margin=40))["connections"]["lab"]
    assert (c["rekey_time"], c["reauth_time"]) == ("0s", "60s")


def test_libreswan_renders_lifetimes_volume_dpd_and_retransmission():
    c = conn(make(child_lifetime=20, child_rekey_margin=14, ike_rekey_margin=14, rekey_jitter=7,
                  child_life_bytes=60_000, dpd_delay=2, dpd_action="restart", retransmit_timeout=0.5,
                  retransmit_tries=2, rekey=False, reauth=True))
    assert (c["salifetime"], c["rekeymargin"], c["rekeyfuzz"]) == ("20s", "14s", "50%")
    assert (c["ipsec-max-bytes"], c["dpddelay"], c["dpdaction"]) == ("60000", "2s", "restart")
    # the first retransmission after 500 ms, then 1 s, 2 s: given up after 3.5 s, rounded up
    assert (c["retransmit-interval"], c["retransmit-timeout"]) == ("500", "4s")
    assert (c["rekey"], c["reauth"]) == ("no", "yes")
    defaults = conn(make())
    assert not {"ipsec-max-bytes", "dpdaction", "retransmit-interval", "rekey", "reauth"} & defaults.keys()


def test_libreswan_refuses_a_soft_volume_limit():
    with pytest.raises(ConfigError, match=r"libreswan: peer 'lab': child_rekey_bytes: .*its own soft"):
        lsw.render_ipsec_conf(make(child_rekey_bytes=1000, child_life_bytes=2000), log_path="/l")


def test_additional_children_in_both_daemons_and_their_routes():
    extra = (("203.0.113.192/27", "203.0.113.224/27"),)
    cfg = make(extra_children=extra)
    children = swanctl(cfg)["connections"]["lab"]["children"]
    assert children["lab-2"]["local_ts"] == "203.0.113.192/27"
    assert children["lab-2"]["remote_ts"] == "203.0.113.224/27"
    assert children["lab-2"]["esp_proposals"] == children["lab"]["esp_proposals"]
    sections = ipsec_conf(lsw.render_ipsec_conf(cfg, log_path="/l"))
    assert sections["conn lab-2"]["leftsubnet"] == "203.0.113.192/27"
    assert sections["conn lab-2"]["rightsubnet"] == "203.0.113.224/27"
    assert sections["conn lab-2"]["ike"] == sections["conn lab"]["ike"]
    assert cfg.mirrored().extra_children == tuple((r, loc) for loc, r in cfg.extra_children)
    host = make_topology("direct", "t").hosts["left"]
    lines = route_batch(cfg, host)
    assert "addr add 203.0.113.193/32 dev lo" in lines
    assert "route add 203.0.113.224/27 dev vec0 src 203.0.113.193" in lines
    # pluto adds both conns itself as it starts (auto=add); a reload's addconn names both
    assert sections["conn lab"]["auto"] == sections["conn lab-2"]["auto"] == "add"
    start = driver("libreswan").start_script(cfg, host)
    assert "addconn" not in start and "*'Total IPsec connections: loaded 2,'*) break;;" in start  # waits for both
    assert lsw.add_conns(cfg).endswith("--config /ipl/ipsec.conf lab lab-2 || exit 1\n")


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"dpd_action": "drop"}, r"dpd_action: must be 'clear', 'hold' or 'restart'"),
    ({"rekey_jitter": 600}, r"rekey_jitter: must be 0 or more and less than the rekey margins"),
    ({"child_rekey_bytes": 10, "child_life_bytes": 10}, r"child_rekey_bytes: must be less than child_life_bytes"),
    ({"child_life_bytes": -1}, r"child_life_bytes: must be 0"),
    ({"retransmit_timeout": 0}, r"retransmit_timeout: must be a positive"),
    ({"retransmit_tries": -1}, r"retransmit_tries: must be 0 or more"),
    ({"extra_children": [("203.0.113.192/27",)]}, r"extra_children\[0\]: must be a \(local, remote\) pair"),
    ({"extra_children": [("nope", "203.0.113.224/27")]}, r"extra_children\[0\]: 'nope' is not a network"),
    ({"extra_children": [("203.0.113.192/27", "203.0.113.224/27")], "mode": "transport", "local_ts": [],
      "remote_ts": []}, r"extra_children: additional Child SAs .* need tunnel mode"),
])
def test_lifecycle_settings_checked_when_made(kw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make(**kw)


def test_openiked_refuses_lifecycle_settings_it_does_not_render():
    with pytest.raises(ConfigError, match=r"openiked: peer 'lab': dpd_action: dpd_action, dpd_delay not rendered"):
        iked.render_iked_conf(make(dpd_delay=5, dpd_action="hold", esp_proposals=["aes128-sha1"]))
    iked.render_iked_conf(make(esp_proposals=["aes128-sha1"]))  # the defaults render as before


# --- cases, steps and drivers ---------------------------------------------------------------------


def test_every_lifecycle_case_is_registered_and_renders_for_the_daemons():
    for case in CASES:
        assert by_name(case.name) is case
        left, right = case_configs(case, make_topology(case.topology, "probe"))
        for cfg in (left, right):
            ssw.render_swanctl_conf(cfg)
    # the case's per-side settings land on the side it names
    left, right = case_configs(CHILD_REKEY_INITIATOR, make_topology("direct", "probe"))
    assert (left.child_lifetime, right.child_lifetime) == (dict(CHILD_REKEY_INITIATOR.left_settings)["child_lifetime"],
                                                           3600)
    assert left.child_lifetime < 3600


def test_unsupported_names_the_missing_action_or_setting(monkeypatch):
    assert unsupported_reason(CHILD_REKEY_INITIATOR, "strongswan", "libreswan", host=False) is None
    monkeypatch.setattr(type(driver("ipseclab")), "actions", frozenset({"kill", "shell"}))
    why = unsupported_reason(by_name("ike-rekey-responder"), "ipseclab", "strongswan", host=False)
    assert why == "ipseclab cannot be driven through Rekey (it needs the 'rekey' action; ipseclab offers kill, shell)"
    monkeypatch.undo()
    # the endpoint takes every lifecycle case's settings now; reauthentication it names
    for case in CASES:
        assert unsupported_reason(case, "ipseclab", "strongswan", host=False) is None, case.name
    reauth = dataclasses.replace(CHILD_REKEY_INITIATOR, left_settings=(("reauth", True),))
    why = unsupported_reason(reauth, "ipseclab", "strongswan", host=False)
    assert why is not None and "reauthentication (reauth)" in why and "ike/reauth.py" in why
    why = unsupported_reason(by_name("lifetime-bytes"), "libreswan", "strongswan", host=False)
    assert why is not None and "child_rekey_bytes" in why
    # the endpoint as the peer that only answers a rekey is supported: nothing of its own to configure
    assert unsupported_reason(by_name("child-rekey-responder"), "ipseclab", "strongswan", host=False) is None


def test_a_bad_case_setting_is_a_config_error():
    case = dataclasses.replace(CHILD_REKEY_INITIATOR, left_settings=(("child_lifetme", 5),))
    with pytest.raises(ConfigError, match="not a PeerConfig field"):
        case_configs(case, make_topology("direct", "probe"))


def test_every_driver_declares_its_actions():
    for impl in ("strongswan", "libreswan", "openiked", "ipseclab", "strongswan-libipsec"):
        assert set(driver(impl).actions) <= set(LIFECYCLE_ACTIONS)
    assert Rekey("left").needs() == {"left": "rekey"} and Wait(1).needs() == {}


# --- every SA's keys, and the checks, on a real run -----------------------------------------------


def test_xfrm_monitor_holds_the_keys_of_every_sa_of_the_run():
    """The run's final ``ip xfrm state`` had one pair; the monitor has all three pairs the two rekeys made,
    and the esp_sa rows written from it are the ones the lab wrote (which Wireshark decrypts below)."""
    states = parse_xfrm_monitor((VECTORS / "libreswan-xfrm-monitor.txt").read_text())
    assert len({s.spi for s in states}) == 6
    assert all(s.proto == "esp" and s.enc and s.auth for s in states)
    same = {s.spi for s in parse_xfrm_monitor((VECTORS / "strongswan-xfrm-monitor.txt").read_text())}
    assert same == {s.spi for s in states}


def test_esp_rows_from_the_monitor_match_the_run(tmp_path: Path):
    states = parse_xfrm_monitor((VECTORS / "libreswan-xfrm-monitor.txt").read_text())
    rows = write_run_esp_sa(tmp_path / "esp_sa", states)
    lab = read_esp_sa(VECTORS / "esp_sa")
    assert {(r.spi, r.encr_key, r.auth_key) for r in rows} == {(r.spi, r.encr_key, r.auth_key) for r in lab}


def _run_dir(tmp_path: Path) -> Path:
    for name in ("left-right.pcap", "esp_sa", "ikev2_decryption_table", "steps.json"):
        shutil.copy(VECTORS / name, tmp_path / name)
    return tmp_path


@pytest.mark.tshark
def test_child_rekey_case_passes_on_the_run_wireshark_decrypts(tmp_path: Path):
    from ipseclab.pcap.trace import Trace

    trace = Trace.load(_run_dir(tmp_path))
    v = view(trace)
    rekeys = child_rekeys(v)
    assert len(rekeys) == 2 and all(v.side(r.src) == "left" for r in rekeys)
    deletes = [r for r in v.ike if r.exchange == 37 and r.deletes]
    assert deletes and all(proto == 3 for r in deletes for proto, _ in r.deletes)
    CHILD_REKEY_INITIATOR.check(trace)


@pytest.mark.tshark
def test_the_checks_fail_when_the_run_does_not_show_it(tmp_path: Path):
    from ipseclab.pcap.trace import Trace

    trace = Trace.load(_run_dir(tmp_path))
    responder = ChildRekeyCase(name="x", description="x", rekeyer="right")
    with pytest.raises(AssertionError, match="the right peer started no Child SA rekey"):
        responder.check(trace)
    with pytest.raises(AssertionError, match="the right peer started no Child SA rekey"):
        ChildRekeyCase(name="x", description="x", collision=True).check(trace)  # a collision needs both
    # without the monitor's rows the rekeyed SAs' ESP cannot be decrypted, and the check names their SPIs
    rows = (tmp_path / "esp_sa").read_text().splitlines()
    (tmp_path / "esp_sa").write_text("\n".join(rows[-2:]) + "\n")
    with pytest.raises(AssertionError, match="no esp_sa row for ESP SPI"):
        CHILD_REKEY_INITIATOR.check(Trace.load(tmp_path))



def test_charon_log_gives_one_key_set_per_ike_sa_and_they_match_the_capture():
    """strongSwan derives a rekeyed IKE SA's keys in the old SA's log context (``<lab|1>`` twice): each set
    is its own, and each matches the SPIs of the IKE SA whose messages it authenticates in the capture."""
    from ipseclab.analysis.ike import ike_datagrams
    from ipseclab.lab.impls.strongswan import parse_charon_log
    from ipseclab.lab.keys import match_ike_keys
    from ipseclab.pcap.keyfiles import read_ikev2_decryption_table
    from ipseclab.pcap.reader import UdpDatagram

    base = VECTORS.parent / "lifecycle_ike_rekey"
    keysets = parse_charon_log((base / "strongswan-charon.log").read_text())
    assert [k.sa for k in keysets] == ["lab|1", "lab|1", "lab|2"]  # the IKE SA, its rekey, the rekey's rekey
    assert len({k.secrets["sk_ei"] for k in keysets}) == 3 and all(k.proposal for k in keysets)
    messages = [d.payload for d in ike_datagrams(base / "left-right.pcap") if isinstance(d, UdpDatagram)]
    rows = match_ike_keys(keysets, messages)
    assert rows == read_ikev2_decryption_table(base / "ikev2_decryption_table")
    assert len(rows) == 2  # the third IKE SA carried no message before the run ended

"""The endpoint's pieces that need no root: its spec file, event JSON, ESP SAs from events, forced
encapsulation, and the lab driver's translation of a PeerConfig (the endpoint against real peers:
tests/interop/test_matrix.py; its data plane: test_endpoint_dataplane.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP

from ipseclab.endpoint.children import esp_sas
from ipseclab.endpoint.runner import EndpointSpec, jsonable
from ipseclab.endpoint.tun import parse_rp_filter_drops
from ipseclab.errors import ConfigError
from ipseclab.ike import ChildSaEstablished, IkeConfig, IkeConnection, IkeSaEstablished
from ipseclab.ike.events import NatDetected
from ipseclab.ike.loopback import Side, handshake
from ipseclab.lab.impls.ipseclab import IpseclabDriver
from ipseclab.lab.peerconfig import PeerConfig


def _established_pair(**kw) -> tuple[ChildSaEstablished, ChildSaEstablished, IkeSaEstablished]:
    i, r = handshake(IkeConfig("left.lab", "right.lab", b"psk", **kw), IkeConfig("right.lab", "left.lab", b"psk", **kw))
    (child_i,), (child_r,), (ike,) = i.of(ChildSaEstablished), r.of(ChildSaEstablished), i.of(IkeSaEstablished)
    return child_i, child_r, ike  # type: ignore[return-value]


@pytest.mark.parametrize(("mode", "protocol"), [("tunnel", "esp"), ("transport", "esp"), ("transport", "ah"),
                                                ("tunnel", "ah")])
def test_esp_sas_from_both_sides_events_talk_to_each_other(mode, protocol):
    child_i, child_r, _ = _established_pair(mode=mode, protocol=protocol, esp_proposals=("aes128-sha256-esn",),
                                            ah_proposals=("sha384-esn",))
    i_out, i_in = esp_sas(child_i, "198.51.100.10", "198.51.100.20")
    r_out, r_in = esp_sas(child_r, "198.51.100.20", "198.51.100.10")
    if mode == "tunnel":
        ping = bytes(IP(src="203.0.113.1", dst="203.0.113.65", id=1) / ICMP(id=1, seq=1))
        assert i_out.tunnel == ("198.51.100.10", "198.51.100.20") and i_out.esn
    else:
        ping = bytes(IP(src="198.51.100.10", dst="198.51.100.20", id=1) / ICMP(id=1, seq=1))
    assert type(i_out).__name__ == ("AhSA" if protocol == "ah" else "EspSA")
    assert r_in.unprotect(i_out.protect(ping)) == ping
    reply = bytes(IP(ping)[IP].__class__(src=IP(ping).dst, dst=IP(ping).src, id=2) / ICMP(type=0, id=1, seq=1))
    assert i_in.unprotect(r_out.protect(reply)) == reply


def test_spec_round_trips_through_json_and_events_leave_keys_out(tmp_path: Path):
    spec = EndpointSpec(IkeConfig("left.lab", "right.lab", b"psk", local_ts=("203.0.113.0/26",)),
                        "198.51.100.10", "198.51.100.20", True, tmp_path, encap=True, tun="ipl0", replay_window=32)
    again = EndpointSpec.from_json(spec.to_json())
    assert again == spec
    child, _, ike = _established_pair()
    text = json.dumps(jsonable(ike)) + json.dumps(jsonable(child))
    for secret in (ike.keys.sk_d, ike.keys.sk_ei, child.encr_key_in, child.encr_key_out):
        assert secret.hex() not in text
    assert jsonable(child)["local_ts"][0]["start_addr"] == "0.0.0.0"
    assert "rekeyed" in jsonable(child) and not {"keys", "encr_key_in", "integ_key_out"} & set(jsonable(child))


def test_forced_encapsulation_makes_both_engines_see_a_nat_in_front_of_the_endpoint(tmp_path: Path):
    """RFC 7296 2.23 as strongSwan's encap=yes uses it: a NAT_DETECTION_SOURCE_IP hash of a port not in use."""
    base = dict(local_ts=("198.51.100.10/32",), remote_ts=("198.51.100.20/32",))
    left = EndpointSpec(IkeConfig("left.lab", "right.lab", b"psk", local_endpoint=("198.51.100.10", 500),
                                  remote_endpoint=("198.51.100.20", 500), **base),  # type: ignore[arg-type]
                        "198.51.100.10", "198.51.100.20", True, tmp_path, encap=True)
    assert left.engine_config().local_endpoint == ("198.51.100.10", 0)
    right = IkeConfig("right.lab", "left.lab", b"psk", local_endpoint=("198.51.100.20", 500),
                      local_ts=base["remote_ts"], remote_ts=base["local_ts"])
    i, r = Side(IkeConnection(left.engine_config(), initiator=True)), Side(IkeConnection(right, initiator=False))
    i.conn.initiate(0.0)
    for _ in range(10):  # the loopback with addresses: each datagram from where a socket would send it
        for src, dst, addr in ((i, r, "198.51.100.10"), (r, i, "198.51.100.20")):
            for d in src.conn.datagrams_to_send(0.0):
                dst.conn.receive_datagram(d.data, 0.0, source=(addr, 4500 if d.natt else 500), natt=d.natt)
        for side in (i, r):
            side.events.extend(iter(side.conn.next_event, None))
    (nat_i,), (nat_r,) = i.of(NatDetected), r.of(NatDetected)
    assert (nat_i.local, nat_r.remote) == (True, True)  # type: ignore[attr-defined]
    (child_i,), (child_r,) = i.of(ChildSaEstablished), r.of(ChildSaEstablished)
    assert child_i.udp_encap and child_r.udp_encap  # type: ignore[attr-defined]
    plain = EndpointSpec(left.ike, "198.51.100.10", "198.51.100.20", True, tmp_path)
    assert plain.engine_config() is plain.ike


def test_the_lab_driver_writes_a_spec_the_endpoint_reads(tmp_path: Path):
    cfg = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "the psk", local_id="left.ipseclab.test",
                     remote_id="right.ipseclab.test", ike_proposals=("aes256-sha256-modp2048",),
                     esp_proposals=("aes128-sha256",), local_ts=("203.0.113.0/26",),
                     remote_ts=("203.0.113.64/26",), esn=True, encap=True)
    IpseclabDriver().write_config(cfg, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert spec.initiator and spec.local == "198.51.100.10" and spec.remote == "198.51.100.20"
    assert spec.ike.psk == b"the psk" and spec.ike.esp_proposals == ("aes128-sha256-esn",)
    assert spec.ike.local_ts == ("203.0.113.0/26",) and spec.ike.remote_id == "right.ipseclab.test"
    assert spec.encap and spec.replay_window == 32 and spec.tfc_padding == 0
    padded = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "k", replay_window=0, tfc_padding=1200)
    IpseclabDriver().write_config(padded, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert (spec.replay_window, spec.tfc_padding) == (0, 1200)
    assert EndpointSpec.from_json(spec.to_json()).tfc_padding == 1200
    transport = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "k", mode="transport")
    IpseclabDriver().write_config(transport, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert spec.ike.local_ts == ("198.51.100.10/32",) and spec.ike.mode == "transport" and not spec.encap
    six = PeerConfig("lab", "2001:db8:1::10", None, "k", remote_id="left.lab", mode="transport", protocol="ah",
                     role="responder")
    IpseclabDriver().write_config(six, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert spec.ike.local_ts == ("2001:db8:1::10/128",) and spec.ike.remote_ts == ("::/0",)


def test_the_lab_driver_passes_lifetimes_volume_dpd_retransmissions_and_additional_children(tmp_path: Path):
    """PeerConfig's lifecycle settings in the engine's terms (strongSwan's shape: rekey at lifetime - margin;
    PeerConfig's retransmissions double, its tries count after the first send) and each additional Child SA by
    the name the lab's StartChild uses (``<conn>-2``); the IkeConfig the endpoint builds accepts all of it."""
    cfg = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "k", local_ts=("203.0.113.0/26",),
                     remote_ts=("203.0.113.64/26",), ike_lifetime=20, ike_rekey_margin=14, child_lifetime=30,
                     child_rekey_margin=10, rekey_jitter=2, child_rekey_bytes=30_000, child_life_bytes=60_000,
                     dpd_delay=2, retransmit_timeout=1.0, retransmit_tries=2,
                     extra_children=(("203.0.113.192/27", "203.0.113.224/27"),))
    IpseclabDriver().write_config(cfg, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    ike = spec.ike
    assert (ike.ike_rekey_time, ike.ike_life_time, ike.child_rekey_time, ike.child_life_time) == (6, 20, 20, 30)
    assert (ike.rekey_jitter, ike.child_rekey_bytes, ike.child_life_bytes, ike.dpd_delay) == (2, 30_000, 60_000, 2)
    # 1 + 2 + 4 s: the total PeerConfig computes for the daemons
    assert (ike.retransmit_timeout, ike.retransmit_base, ike.retransmit_tries) == (1.0, 2.0, 3)
    assert sum(1.0 * 2.0 ** n for n in range(ike.retransmit_tries)) == cfg.retransmit_total()
    assert spec.children == (("lab-2", ("203.0.113.192/27",), ("203.0.113.224/27",)),)
    assert IpseclabDriver().start_script(cfg, None) == "ip addr add 203.0.113.193/32 dev lo\n"  # type: ignore[arg-type]
    passive = dataclasses.replace(cfg, rekey=False)
    IpseclabDriver().write_config(passive, tmp_path)
    ike = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text()).ike
    assert ike.ike_rekey_time is ike.child_rekey_time is None and ike.child_life_time == 30


@pytest.mark.parametrize(("kw", "why"), [
    (dict(reauth=True), "reauthentication (reauth)"),
    (dict(dpd_delay=5, dpd_action="hold"), "dpd_action='hold'"),
])
def test_the_lab_driver_names_the_lifecycle_settings_the_endpoint_cannot_do(kw, why):
    cfg = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "k", **kw)
    with pytest.raises(ConfigError, match=re.escape(why)):
        IpseclabDriver().check_supported(cfg)


@pytest.mark.parametrize("kw", [
    dict(encap=True),
    dict(local_address="2001:db8:1::10", remote_address="2001:db8:1::20", mode="transport"),
    dict(local_address="2001:db8:1::10", remote_address="2001:db8:1::20", mode="transport", protocol="ah"),
])
def test_the_lab_driver_takes_encapsulation_and_ipv6_transport_and_ah(kw):
    base = dict(name="lab", local_address="198.51.100.10", remote_address="198.51.100.20", psk="k")
    IpseclabDriver().check_supported(PeerConfig(**{**base, **kw}))


def test_clear_drops_are_read_from_the_kernels_netstat_table():
    """The layout of /proc/net/netstat (Linux 6.1, net/ipv4/proc.c): a header line, then a values line."""
    text = ("TcpExt: SyncookiesSent SyncookiesRecv IPReversePathFilter TCPTimeouts\n"
            "TcpExt: 0 0 7 3\n"
            "IpExt: InNoRoutes InTruncatedPkts\n"
            "IpExt: 0 0\n")
    assert parse_rp_filter_drops(text) == 7
    assert parse_rp_filter_drops("IpExt: A\nIpExt: 1\n") == 0


def test_an_event_with_a_kind_field_is_reported_not_fatal():
    """DatagramDropped carries ``kind``: reporting it once crashed the endpoint (``say() got multiple values for
    argument 'kind'``) when Libreswan answered a retransmitted IKE_AUTH request twice."""
    import io
    from types import SimpleNamespace

    from ipseclab.endpoint.runner import Endpoint
    from ipseclab.ike import DatagramDropped

    fake = SimpleNamespace(out=io.StringIO())
    record = {"type": "DatagramDropped", **jsonable(DatagramDropped("IKE_AUTH response #1: not awaited", "unexpected"))}
    Endpoint.say(fake, "event", **record)  # type: ignore[arg-type]
    line = json.loads(fake.out.getvalue())
    assert line["kind"] == "event" and line["event_kind"] == "unexpected" and line["type"] == "DatagramDropped"


def test_a_status_answer_says_what_a_probe_needs_of_each_child_sa():
    """What ``ip -s xfrm state`` shows of a kernel SA, the endpoint's status shows of its pairs (probes.py)."""
    from ipseclab.endpoint.dataplane import DataPlane
    from ipseclab.endpoint.runner import _sa_facts

    child_i, _, _ = _established_pair(esp_proposals=("aes256gcm16-esn",))
    dp = DataPlane("198.51.100.10", replay_window=128)
    pair = dp.install(child_i, "198.51.100.20")
    pair.inn.window.update(7)
    pair.out.protect(bytes(IP(src="203.0.113.1", dst="203.0.113.65") / ICMP()))
    assert _sa_facts(pair) == {"protocol": "esp", "mode": "tunnel", "tunnel": ["198.51.100.20", "198.51.100.10"],
                               "udp_encap": False, "esn": True, "replay_window": 128, "top": 7, "seq_out": 1}

"""The endpoint's pieces that need no root: its spec file, event JSON, ICMP, ESP SAs from events, and the
lab driver's translation of a PeerConfig (the endpoint against real peers: tests/interop/test_matrix.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP

from ipseclab.endpoint.children import esp_sas
from ipseclab.endpoint.icmp import echo_reply_of, echo_reply_to, echo_request
from ipseclab.endpoint.runner import EndpointSpec, jsonable
from ipseclab.errors import ConfigError
from ipseclab.ike import ChildSaEstablished, IkeConfig, IkeSaEstablished
from ipseclab.ike.loopback import handshake
from ipseclab.lab.impls.ipseclab import IpseclabDriver
from ipseclab.lab.peerconfig import PeerConfig


def _established_pair(**kw) -> tuple[ChildSaEstablished, ChildSaEstablished, IkeSaEstablished]:
    i, r = handshake(IkeConfig("left.lab", "right.lab", b"psk", **kw), IkeConfig("right.lab", "left.lab", b"psk", **kw))
    (child_i,), (child_r,), (ike,) = i.of(ChildSaEstablished), r.of(ChildSaEstablished), i.of(IkeSaEstablished)
    return child_i, child_r, ike  # type: ignore[return-value]


def test_echo_request_and_reply_are_what_scapy_parses():
    req = echo_request("203.0.113.1", "203.0.113.65", 0x15EC, 7)
    p = IP(req)
    assert p[ICMP].type == 8 and p[ICMP].id == 0x15EC and p[ICMP].seq == 7
    del p.chksum, p[ICMP].chksum  # Scapy recomputes both checksums: they must be the ones we wrote
    assert bytes(p) == req
    reply = echo_reply_to(req)
    assert reply is not None
    q = IP(reply)
    assert (q.src, q.dst, q[ICMP].type, q[ICMP].seq) == ("203.0.113.65", "203.0.113.1", 0, 7)
    del q.chksum, q[ICMP].chksum
    assert bytes(q) == reply
    assert echo_reply_of(reply, 0x15EC) == 7 and echo_reply_of(reply, 1) is None and echo_reply_of(req, 0x15EC) is None
    assert echo_reply_to(reply) is None and echo_reply_to(b"\x45" + bytes(10)) is None


@pytest.mark.parametrize(("mode", "protocol"), [("tunnel", "esp"), ("transport", "esp"), ("transport", "ah"),
                                                ("tunnel", "ah")])
def test_esp_sas_from_both_sides_events_talk_to_each_other(mode, protocol):
    child_i, child_r, _ = _established_pair(mode=mode, protocol=protocol, esp_proposals=("aes128-sha256-esn",),
                                            ah_proposals=("sha384-esn",))
    i_out, i_in = esp_sas(child_i, "198.51.100.10", "198.51.100.20")
    r_out, r_in = esp_sas(child_r, "198.51.100.20", "198.51.100.10")
    if mode == "tunnel":
        ping = echo_request("203.0.113.1", "203.0.113.65", 1, 1)
        assert i_out.tunnel == ("198.51.100.10", "198.51.100.20") and i_out.esn
    else:
        ping = echo_request("198.51.100.10", "198.51.100.20", 1, 1)
    assert type(i_out).__name__ == ("AhSA" if protocol == "ah" else "EspSA")
    assert r_in.unprotect(i_out.protect(ping)) == ping
    reply = echo_reply_to(ping)
    assert reply is not None and i_in.unprotect(r_out.protect(reply)) == reply


def test_spec_round_trips_through_json_and_events_leave_keys_out(tmp_path: Path):
    spec = EndpointSpec(IkeConfig("left.lab", "right.lab", b"psk", local_ts=("203.0.113.0/26",)),
                        "198.51.100.10", "198.51.100.20", True, tmp_path)
    again = EndpointSpec.from_json(spec.to_json())
    assert again == spec
    child, _, ike = _established_pair()
    text = json.dumps(jsonable(ike)) + json.dumps(jsonable(child))
    for secret in (ike.keys.sk_d, ike.keys.sk_ei, child.encr_key_in, child.encr_key_out):
        assert secret.hex() not in text
    assert jsonable(child)["local_ts"][0]["start_addr"] == "0.0.0.0"


def test_the_lab_driver_writes_a_spec_the_endpoint_reads(tmp_path: Path):
    cfg = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "the psk", local_id="left.ipseclab.test",
                     remote_id="right.ipseclab.test", ike_proposals=("aes256-sha256-modp2048",),
                     esp_proposals=("aes128-sha256",), local_ts=("203.0.113.0/26",),
                     remote_ts=("203.0.113.64/26",), esn=True)
    IpseclabDriver().write_config(cfg, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert spec.initiator and spec.local == "198.51.100.10" and spec.remote == "198.51.100.20"
    assert spec.ike.psk == b"the psk" and spec.ike.esp_proposals == ("aes128-sha256-esn",)
    assert spec.ike.local_ts == ("203.0.113.0/26",) and spec.ike.remote_id == "right.ipseclab.test"
    transport = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "k", mode="transport")
    IpseclabDriver().write_config(transport, tmp_path)
    spec = EndpointSpec.from_json((tmp_path / "endpoint.json").read_text())
    assert spec.ike.local_ts == ("198.51.100.10/32",) and spec.ike.mode == "transport"


@pytest.mark.parametrize(("kw", "why"), [
    (dict(encap=True), "forced UDP encapsulation"),
    (dict(local_address="2001:db8:1::10", remote_address="2001:db8:1::20", mode="transport"), "over IPv6 transit"),
])
def test_the_lab_driver_names_what_the_endpoint_cannot_do(kw, why):
    base = dict(name="lab", local_address="198.51.100.10", remote_address="198.51.100.20", psk="k")
    cfg = PeerConfig(**{**base, **kw})
    with pytest.raises(ConfigError, match=why):
        IpseclabDriver().check_supported(cfg)


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

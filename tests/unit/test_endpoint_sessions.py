"""The endpoint's IKE side (``endpoint/sessions.py``) without sockets: an initiator's and a responder's Sessions
wired together in memory, each with its own DataPlane installed from its own events as the runner does.  The oracle
for every command is the other side: its engine must take the exchange, and ESP from one data plane must decrypt
in the other's (issue 11's lifecycle commands of the endpoint's line protocol)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scapy.layers.inet import ICMP, IP

from ipseclab.endpoint.dataplane import DataPlane
from ipseclab.endpoint.runner import EndpointSpec
from ipseclab.endpoint.sessions import Sessions
from ipseclab.errors import IpsecLabError
from ipseclab.ike import ChildSaDeleted, ChildSaEstablished, IkeConfig, IkeConnection
from ipseclab.ike.events import ChildSaOutbound, DeadPeer, IkeSaDeleted, IkeSaFailed, IkeSaRekeyed
from ipseclab.ike.responder import Responder

LEFT, RIGHT = "198.51.100.10", "198.51.100.20"
EXTRA = ("left-2", ("203.0.113.192/27",), ("203.0.113.224/27",))


def _config(local: str, remote: str, lts: str, rts: str) -> IkeConfig:
    return IkeConfig(local, remote, b"psk", local_ts=(lts,), remote_ts=(rts,), local_endpoint=(local, 500),
                     remote_endpoint=(remote, 500))


class Side:
    def __init__(self, sessions: Sessions, address: str) -> None:
        self.s, self.address, self.dp = sessions, address, DataPlane(address)
        self.events: list[object] = []

    def drain(self) -> None:
        for conn, event in self.s.events():
            self.events.append(event)
            if isinstance(event, ChildSaEstablished):
                self.dp.install(event, LEFT if self.address == RIGHT else RIGHT)
                self.s.adopt(event.spi_in, conn)
            elif isinstance(event, ChildSaOutbound):
                self.dp.carry(event.spi_in, event.replaced)
            elif isinstance(event, ChildSaDeleted):
                self.dp.remove(event.spi_in)
                self.s.owner.pop(event.spi_in, None)
            elif isinstance(event, IkeSaDeleted | IkeSaFailed):
                self.s.release(conn, self.dp)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def pump(a: Side, b: Side, now: float = 1.0) -> None:
    for _ in range(20):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for d in src.s.datagrams(now):
                moved = True
                dst.s.receive(d.data, now, (src.address, 500), False)
        a.drain()
        b.drain()
        if not moved:
            return


def ping(src: Side, dst: Side, s: str, d: str) -> None:
    """A packet from src's TUN through its data plane must come out of dst's (the other engine's keys)."""
    packet = bytes(IP(src=s, dst=d, id=7) / ICMP(id=1, seq=1))
    out = src.dp.outbound(packet)
    assert out is not None
    got = dst.dp.inbound(out.data)
    assert got is not None and got[1] == packet


@pytest.fixture
def pair() -> tuple[Side, Side]:
    left = Side(Sessions(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), True, (EXTRA,)), LEFT)
    right = Side(Sessions(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), False,
                          (("right-2", EXTRA[2], EXTRA[1]),)), RIGHT)
    assert isinstance(left.s.engine, IkeConnection) and isinstance(right.s.engine, Responder)
    left.s.engine.initiate(0.0)
    pump(left, right)
    assert len(left.dp.pairs) == len(right.dp.pairs) == 1
    return left, right


def test_the_responder_is_a_listener_and_the_spec_carries_its_children_and_cookie_settings(tmp_path):
    spec = EndpointSpec(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), RIGHT, None, False, tmp_path,
                        children=(("right-2", ("203.0.113.224/27",), ("203.0.113.192/27",)),), cookie_threshold=3,
                        half_open_limit=50)
    again = EndpointSpec.from_json(spec.to_json())
    assert again == spec
    s = Sessions(again.engine_config(), False, again.children, again.cookie_threshold, again.half_open_limit)
    assert isinstance(s.engine, Responder) and (s.engine.cookie_threshold, s.engine.half_open_limit) == (3, 50)
    assert s.engine.config.extra_ts == ((("203.0.113.224/27",), ("203.0.113.192/27",)),)
    assert s.current is None and str(s.state) == str(IkeConnection(again.ike, initiator=False).state)


@pytest.mark.parametrize("who", ["left", "right"])
def test_a_child_rekey_command_replaces_the_pair_on_both_sides(pair, who):
    left, right = pair
    a = left if who == "left" else right
    old = next(iter(a.dp.pairs))
    answer = a.s.rekey("child", a.dp, 2.0)
    assert answer["old_spi_in"] == old
    pump(left, right, 2.0)
    (new,) = [e for e in a.of(ChildSaEstablished) if e.rekeyed == old]
    assert new.spi_in == answer["spi_in"] and list(a.dp.pairs) == [new.spi_in]
    assert len(left.dp.pairs) == len(right.dp.pairs) == 1
    ping(left, right, "203.0.113.1", "203.0.113.65")
    ping(right, left, "203.0.113.65", "203.0.113.1")


@pytest.mark.parametrize("who", ["left", "right"])
def test_an_ike_rekey_command_keeps_the_child_sas(pair, who):
    left, right = pair
    a = left if who == "left" else right
    a.s.rekey("ike", a.dp, 2.0)
    pump(left, right, 2.0)
    (rekeyed,) = a.of(IkeSaRekeyed)
    assert not rekeyed.by_peer and len(left.dp.pairs) == len(right.dp.pairs) == 1
    assert len(right.s.connections()) == 1  # the rekeyed IKE SA stays one connection of the listener
    a.s.rekey("child", a.dp, 3.0)  # and the next exchange runs on the new IKE SA
    pump(left, right, 3.0)
    ping(left, right, "203.0.113.1", "203.0.113.65")


def test_the_additional_child_by_name_is_taken_by_the_responders_extra_pair(pair):
    left, right = pair
    with pytest.raises(IpsecLabError, match="no additional Child SA named 'nope'"):
        left.s.start_child("nope", 2.0)
    answer = left.s.start_child("left-2", 2.0)
    pump(left, right, 2.0)
    assert answer["spi_in"] in left.dp.pairs and len(right.dp.pairs) == 2
    ping(left, right, "203.0.113.193", "203.0.113.225")
    ping(right, left, "203.0.113.225", "203.0.113.193")
    # the rekey of the additional Child SA is found by its name, the first one's without
    assert left.s.rekey("child", left.dp, 3.0, "left-2")["old_spi_in"] == answer["spi_in"]
    pump(left, right, 3.0)
    assert left.s.delete("child", left.dp, 4.0)["spi_in"] != answer["spi_in"]
    pump(left, right, 4.0)
    (only,) = left.dp.pairs.values()
    assert left.s.index_of(only) == 1 and len(right.dp.pairs) == 1


def test_a_second_ike_sa_at_the_responder_is_its_own_and_its_delete_leaves_the_first(pair):
    left, right = pair
    second = Side(Sessions(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), True), LEFT)
    assert isinstance(second.s.engine, IkeConnection)
    second.s.engine.initiate(5.0)
    pump(second, right, 5.0)
    assert len(right.s.connections()) == 2 and len(right.dp.pairs) == 2
    assert right.s.current is not None and right.s.current.spi_i == second.s.engine.spi_i  # the newest
    second.s.delete("ike", second.dp, 6.0)
    pump(second, right, 6.0)
    assert len(right.s.connections()) == 1 and len(right.dp.pairs) == 1
    ping(left, right, "203.0.113.1", "203.0.113.65")  # the first IKE SA's pair still works


def test_commands_without_an_established_ike_sa_are_refused_in_one_line():
    s = Sessions(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), True)
    with pytest.raises(IpsecLabError, match="no IKE SA is established"):
        s.rekey("child", DataPlane(LEFT), 0.0)
    with pytest.raises(IpsecLabError, match="no IKE SA is established"):
        s.delete("ike", DataPlane(LEFT), 0.0)


def test_the_data_planes_counters_reach_the_engine_and_its_volume_limit_rekeys():
    cfg = replace(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), child_rekey_bytes=500,
                  child_life_bytes=100_000)
    left = Side(Sessions(cfg, True), LEFT)
    right = Side(Sessions(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), False), RIGHT)
    assert isinstance(left.s.engine, IkeConnection)
    left.s.engine.initiate(0.0)
    pump(left, right)
    (old,) = left.dp.pairs
    left.s.report_usage(left.dp, 1.0)
    assert not left.s.datagrams(1.0)  # nothing carried yet: no rekey
    for _ in range(10):  # 28-byte packets: 280 bytes each way, not 500 in either
        ping(left, right, "203.0.113.1", "203.0.113.65")
        ping(right, left, "203.0.113.65", "203.0.113.1")
    left.s.report_usage(left.dp, 1.5)
    assert not left.s.datagrams(1.5)  # the directions are not added up (a kernel counts each SA alone)
    for _ in range(10):  # 560 bytes out
        ping(left, right, "203.0.113.1", "203.0.113.65")
    left.s.report_usage(left.dp, 2.0)
    pump(left, right, 2.0)
    assert [e.rekeyed for e in left.of(ChildSaEstablished)] == [None, old] and old not in left.dp.pairs


def test_the_responder_asks_for_a_cookie_above_its_half_open_threshold_and_the_initiator_echoes_it():
    """RFC 7296 2.6 through the endpoint's own spec setting: threshold 0 makes every IKE_SA_INIT need a cookie."""
    left = Side(Sessions(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), True), LEFT)
    right = Side(Sessions(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), False, cookie_threshold=0), RIGHT)
    assert isinstance(left.s.engine, IkeConnection) and isinstance(right.s.engine, Responder)
    left.s.engine.initiate(0.0)
    pump(left, right)
    counters = right.s.engine.counters
    assert (counters.cookies_sent, counters.cookies_accepted) == (1, 1)
    assert len(left.dp.pairs) == len(right.dp.pairs) == 1
    ping(left, right, "203.0.113.1", "203.0.113.65")


def _run_timers(left: Side, right: Side, start: float, end: float, step: float = 0.25) -> None:
    """Time passes: each side's due timers, and what they send delivered, every ``step`` seconds."""
    now = start
    while now <= end:
        for side in (left, right):
            side.s.handle_timer(now)
        pump(left, right, now)
        left.s.restart_dead(now)
        pump(left, right, now)
        now += step


@pytest.mark.parametrize("action", ["restart", "clear"])
def test_a_dead_peer_is_restarted_with_a_new_ike_sa_only_when_dpd_action_says_so(action):
    """The responder crashes (a fresh one, which knows no IKE SA, takes its place): the initiator's liveness checks
    go unanswered, it reports the peer dead, and with dpd_action "restart" a new IKE SA and Child SA carry traffic
    with the new responder's keys; with "clear" it stays down."""
    cfg = replace(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), dpd_delay=1.0, retransmit_timeout=0.5,
                  retransmit_base=2.0, retransmit_tries=3)
    left = Side(Sessions(cfg, True, dpd_action=action), LEFT)
    right = Side(Sessions(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), False), RIGHT)
    assert isinstance(left.s.engine, IkeConnection)
    first = left.s.engine
    first.initiate(0.0)
    pump(left, right, 0.0)
    old_pairs = set(left.dp.pairs)
    assert len(old_pairs) == 1
    right = Side(Sessions(_config(RIGHT, LEFT, "203.0.113.64/26", "203.0.113.0/26"), False), RIGHT)  # the crash
    _run_timers(left, right, 0.5, 12.0)
    assert left.of(DeadPeer) and left.of(IkeSaFailed) and str(first.state) == "failed"
    assert not old_pairs & set(left.dp.pairs)  # the dead IKE SA's pair went with it
    if action == "clear":
        assert left.s.engine is first and not left.dp.pairs and not right.dp.pairs
        return
    assert left.s.engine is not first and str(left.s.state) == "established"
    assert len(left.dp.pairs) == len(right.dp.pairs) == 1
    ping(left, right, "203.0.113.1", "203.0.113.65")
    ping(right, left, "203.0.113.65", "203.0.113.1")


def test_the_spec_carries_dpd_action_and_refuses_an_unknown_one(tmp_path):
    spec = EndpointSpec(_config(LEFT, RIGHT, "203.0.113.0/26", "203.0.113.64/26"), LEFT, RIGHT, True, tmp_path,
                        dpd_action="restart")
    assert EndpointSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="dpd_action must be 'clear' or 'restart', not 'hold'"):
        EndpointSpec.from_json(spec.to_json().replace('"restart"', '"hold"'))

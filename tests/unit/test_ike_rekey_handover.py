"""Deleting the old SA once the new one is in use (RFC 7296 2.8, 2.8.1, 2.8.2, 2.18), both roles (issue 11).

A model data plane follows each side's events the way the endpoint is to: ``ChildSaEstablished`` adds its
inbound SA and, when ``outbound``, moves outbound traffic to it; ``ChildSaOutbound`` moves outbound traffic;
``ChildSaDeleted`` removes the inbound SA.  Datagrams go one at a time, and after every one a packet each way
must decrypt on the other side (real ESP SAs built from the events' keys): that is the oracle for "no packet is
lost", independent of the engine's own bookkeeping.  RFC 7296 2.8 says who deletes what: the rekey's initiator
deletes the old pair, and in a collision the side whose exchange holds the lowest nonce deletes its redundant pair.
"""

from __future__ import annotations

import pytest

from ipseclab.esp import EspSA
from ipseclab.ike import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaOutbound,
    Event,
    IkeSaRekeyed,
    IkeState,
    OldIkeSaDeleted,
)

from .ike_wire import Wire, configs, handshake
from .test_ike_engine import PING, esp_pair
from .test_ike_lifecycle import _rigged, conn, other

SIDES = ("i", "r")


class DataPlane:
    """One side's SAs as a driver keeps them from the engine's events."""

    def __init__(self) -> None:
        self.inbound: dict[int, EspSA] = {}
        self.outbound: tuple[int, EspSA] | None = None
        self.pending_out: dict[int, tuple[int, EspSA]] = {}  # installed inbound-only, by inbound SPI

    def take(self, event: Event) -> None:
        if isinstance(event, ChildSaEstablished):
            out, inn = esp_pair(event)
            self.inbound[event.spi_in] = inn
            if event.outbound:
                self.outbound = (event.spi_out, out)
            else:
                self.pending_out[event.spi_in] = (event.spi_out, out)
        elif isinstance(event, ChildSaOutbound):
            self.outbound = self.pending_out.pop(event.spi_in)
        elif isinstance(event, ChildSaDeleted):
            self.inbound.pop(event.spi_in, None)
            self.pending_out.pop(event.spi_in, None)
            if self.outbound is not None and self.outbound[0] == event.spi_out:
                self.outbound = None  # the pair we send on is gone: a packet now would be lost

    def send_to(self, peer: DataPlane) -> bool:
        """Whether a packet sent now on our outbound SA decrypts on the peer."""
        if self.outbound is None:
            return False
        spi, sa = self.outbound
        inn = peer.inbound.get(spi)
        return inn is not None and inn.unprotect(sa.protect(PING)) == PING


class Stepper:
    """Delivers one datagram at a time, feeding each side's events to its data plane, checking traffic."""

    def __init__(self, w: Wire) -> None:
        self.w = w
        self.planes = {"i": DataPlane(), "r": DataPlane()}
        self.events: dict[str, list[Event]] = {"i": [], "r": []}
        self.feed()

    def feed(self) -> None:
        for side in SIDES:
            for e in self.w.events[side][len(self.events[side]):]:
                self.planes[side].take(e)
                self.events[side].append(e)

    def traffic_flows(self) -> bool:
        i, r = self.planes["i"], self.planes["r"]
        return i.send_to(r) and r.send_to(i)

    def run(self) -> int:
        """Deliver everything one datagram at a time; returns how many went, checking traffic after each."""
        w, steps = self.w, 0
        queues: dict[str, list[bytes]] = {"i": [], "r": []}
        while True:
            for side in SIDES:
                queues[side] += [d.data for d in conn(w, side).datagrams_to_send(w.now)]
            side = next((s for s in SIDES if queues[s]), None)
            if side is None:
                return steps
            data = queues[side].pop(0)
            conn(w, other(side)).receive_datagram(data, w.now)
            w.collect()
            self.feed()
            steps += 1
            assert self.traffic_flows(), f"a packet would be lost after datagram {steps}: {self.events}"


def setup() -> tuple[Wire, Stepper]:
    w = handshake(*configs())
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    s = Stepper(w)
    assert s.traffic_flows()
    return w, s


@pytest.mark.parametrize("side", SIDES)
def test_a_child_rekey_moves_traffic_without_a_gap_and_the_initiator_deletes_the_old_pair(side):
    w, s = setup()
    peer = other(side)
    old_a, old_b = w.of(side, ChildSaEstablished)[0], w.of(peer, ChildSaEstablished)[0]
    conn(w, side).rekey_child(old_a.spi_in, w.now)
    assert s.run() == 4  # CREATE_CHILD_SA request, response, Delete, its answer
    new_a, new_b = w.of(side, ChildSaEstablished)[-1], w.of(peer, ChildSaEstablished)[-1]
    # the rekey's initiator sends on the new pair at once; its responder once the old pair is deleted
    assert new_a.outbound and not new_b.outbound
    tail_b = s.events[peer][-3:]
    assert tail_b == [new_b, ChildSaOutbound(new_b.spi_in, new_b.spi_out, old_b.spi_in),
                      ChildSaDeleted(old_b.spi_in, old_b.spi_out, by_peer=True)]
    assert s.events[side][-1] == ChildSaDeleted(old_a.spi_in, old_a.spi_out, by_peer=False)
    assert not [e for e in s.events[side] if isinstance(e, ChildSaOutbound)]
    # both data planes end with the new pair alone
    assert set(s.planes[side].inbound) == {new_a.spi_in} and set(s.planes[peer].inbound) == {new_b.spi_in}
    assert conn(w, peer).children[new_b.spi_in].outbound


@pytest.mark.parametrize("side", SIDES)
def test_the_responder_keeps_the_old_inbound_sa_until_the_delete_comes(side):
    w, s = setup()
    peer = other(side)
    old_b = w.of(peer, ChildSaEstablished)[0]
    conn(w, side).rekey_child(w.of(side, ChildSaEstablished)[0].spi_in, w.now)
    request = conn(w, side).datagrams_to_send(w.now)
    conn(w, peer).receive_datagram(request[0].data, w.now)  # the response is lost on the way back
    conn(w, peer).datagrams_to_send(w.now)
    w.collect()
    s.feed()
    b = conn(w, peer)
    assert old_b.spi_in in s.planes[peer].inbound and s.planes[peer].outbound[0] == old_b.spi_out
    assert old_b.spi_in in [c.key for c in b.child_sas()]
    assert s.traffic_flows()  # the rekey's initiator has nothing new yet: the old pair carries both ways
    w.now = 1.0
    conn(w, side).handle_timer(w.now)  # its retransmission gets the cached answer; then the Delete
    assert s.run() == 4
    assert [c.key for c in b.child_sas()] == [w.of(peer, ChildSaEstablished)[-1].spi_in]


@pytest.mark.parametrize("expected_loser", SIDES)
def test_a_child_rekey_collision_moves_traffic_to_the_survivor_without_a_gap(expected_loser):
    w, s = setup()
    _rigged(w, expected_loser)
    winner = other(expected_loser)
    w.i.rekey_child(w.of("i", ChildSaEstablished)[0].spi_in, w.now)
    w.r.rekey_child(w.of("r", ChildSaEstablished)[0].spi_in, w.now)
    s.run()
    (survivor_i,), (survivor_r,) = w.i.child_sas(), w.r.child_sas()
    assert survivor_i.outbound and survivor_r.outbound
    assert set(s.planes["i"].inbound) == {survivor_i.key} and set(s.planes["r"].inbound) == {survivor_r.key}
    assert s.planes["i"].outbound[0] == int.from_bytes(survivor_i.spi_out, "big")
    # only the loser took its traffic over on an Outbound event (as the responder of the winner's rekey)
    moved = {side: [e for e in s.events[side] if isinstance(e, ChildSaOutbound)] for side in SIDES}
    assert len(moved[expected_loser]) == 1 and moved[winner] == []
    # the redundant pair never carried outbound traffic on either side
    redundant = {side: [e for e in s.events[side] if isinstance(e, ChildSaEstablished) and e.rekeyed
                        and e.spi_in != conn(w, side).child_sas()[0].key] for side in SIDES}
    assert all(len(v) == 1 and not v[0].outbound for v in redundant.values())


@pytest.mark.parametrize("side", SIDES)
def test_an_ike_rekey_deletes_the_old_ike_sa_and_says_so_on_both_sides(side):
    w, s = setup()
    old = (w.i.spi_i, w.i.spi_r)
    conn(w, side).rekey_ike(w.now)
    s.run()
    (rekeyed,) = w.of(side, IkeSaRekeyed)
    assert w.of(side, OldIkeSaDeleted) == [OldIkeSaDeleted(*old, by_peer=False)]
    assert w.of(other(side), OldIkeSaDeleted) == [OldIkeSaDeleted(*old, by_peer=True)]
    assert w.i.retired == w.r.retired == [] and (w.i.spi_i, w.i.spi_r) == (rekeyed.spi_i, rekeyed.spi_r)
    assert len(s.planes["i"].inbound) == len(s.planes["r"].inbound) == 1  # the Child SAs moved, untouched


@pytest.mark.parametrize("expected_loser", SIDES)
def test_an_ike_rekey_collision_deletes_the_redundant_and_the_old_ike_sa(expected_loser):
    w, s = setup()
    _rigged(w, expected_loser)
    old = (w.i.spi_i, w.i.spi_r)
    w.i.rekey_ike(w.now)
    w.r.rekey_ike(w.now)
    s.run()
    winner = other(expected_loser)
    # the winner deletes the old IKE SA, the loser its redundant new one; each side hears of both
    by_winner = [e for e in w.of(winner, OldIkeSaDeleted) if not e.by_peer]
    by_loser = [e for e in w.of(expected_loser, OldIkeSaDeleted) if not e.by_peer]
    assert [(e.spi_i, e.spi_r) for e in by_winner] == [old]
    assert len(by_loser) == 1 and (by_loser[0].spi_i, by_loser[0].spi_r) not in (old, (w.i.spi_i, w.i.spi_r))
    assert len(w.of("i", OldIkeSaDeleted)) == len(w.of("r", OldIkeSaDeleted)) == 2
    assert w.i.retired == w.r.retired == []

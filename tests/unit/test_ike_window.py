"""The RFC 7296 2.3 window in memory, both roles: SET_WINDOW_SIZE announced in IKE_AUTH and honoured, requests
through the queue, answers and requests out of order, a peer that exceeds our window, a rekeyed IKE SA starting
at 1 again (issue 11).

The oracle is RFC 7296 itself, read off the wire: the notify's type (16385, IANA "IKEv2 Notify Message Types -
Status Types") and its data (4 octets, big endian), the message ids of the requests in flight, and what the
responder answers or drops.
"""

from __future__ import annotations

import pytest

from ipseclab.ike import ChildSaEstablished, ChildSaFailed, DatagramDropped, IkeSaRekeyed, IkeState
from ipseclab.ike.connection import MAX_QUEUED_REQUESTS
from ipseclab.packets.enums import ExchangeType
from ipseclab.packets.message import Message, decode, decode_header
from ipseclab.packets.payloads import NotifyPayload

from .ike_wire import Wire, configs, handshake

SIDES = ("i", "r")
SET_WINDOW_SIZE = 16385  # RFC 7296 3.10.1, IANA registry


def conn(w: Wire, side: str):
    return w.i if side == "i" else w.r


def peer_of(w: Wire, side: str):
    return w.r if side == "i" else w.i


def announced(msg: Message) -> list[bytes]:
    return [p.data for p in msg.all_payloads() if isinstance(p, NotifyPayload) and p.notify_type == SET_WINDOW_SIZE]


def auth_messages(w: Wire) -> dict[str, Message]:
    """The IKE_AUTH request and response as they went on the wire, decrypted with the IKE SA's keys."""
    crypto = w.i.neg.crypto
    out = {}
    for d, data in w.log:
        if data[18] == ExchangeType.IKE_AUTH:
            out[d] = decode(data, crypto)
    return out


def mids(datagrams: list[bytes]) -> list[int]:
    return [decode_header(d)[6] for d in datagrams]


def setup(i_window: int = 1, r_window: int = 1) -> Wire:
    w = handshake(*configs(window_size=i_window, r_window_size=r_window))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED, w.events
    return w


def test_set_window_size_is_announced_in_ike_auth_as_four_octets_big_endian():
    w = setup(3, 5)
    auth = auth_messages(w)
    assert announced(auth["i>r"]) == [bytes([0, 0, 0, 3])]
    assert announced(auth["r>i"]) == [bytes([0, 0, 0, 5])]
    # each side may now have as many requests in flight as the other announced; each takes what it announced
    assert (w.i.ike.peer_window, w.i.ike.window) == (5, 3)
    assert (w.r.ike.peer_window, w.r.ike.window) == (3, 5)


def test_the_default_window_is_one_and_nothing_is_announced():
    w = setup()
    assert all(announced(m) == [] for m in auth_messages(w).values())
    w.i.create_child(w.now)
    w.i.create_child(w.now)
    assert len(w.i.datagrams_to_send(w.now)) == 1  # the second waits for the first's answer


@pytest.mark.parametrize("side", SIDES)
def test_requests_fill_the_peers_window_and_answers_may_come_out_of_order(side):
    w = setup(3, 3)
    a, b = conn(w, side), peer_of(w, side)
    first_mid = a.ike.next_mid
    for _ in range(MAX_QUEUED_REQUESTS):
        a.create_child(w.now)
    out = [d.data for d in a.datagrams_to_send(w.now)]
    assert mids(out) == [first_mid, first_mid + 1, first_mid + 2]  # three in flight, the fourth waits
    assert len(a.ike.requests) == 1
    # the peer gets them last first; it takes all three (they are inside its window) and answers each
    for d in reversed(out):
        b.receive_datagram(d, w.now)
    answers = [d.data for d in b.datagrams_to_send(w.now)]
    assert sorted(mids(answers)) == mids(out) and b.counters.total_dropped() == 0
    # the answers come back out of order too; the fourth request waits until every request up through
    # fourth - 3 is answered (2.3), not merely for any answer
    by_mid = dict(zip(mids(answers), answers, strict=True))
    a.receive_datagram(by_mid[first_mid + 2], w.now)
    assert a.datagrams_to_send(w.now) == []
    a.receive_datagram(by_mid[first_mid], w.now)
    (fourth,) = [d.data for d in a.datagrams_to_send(w.now)]
    assert mids([fourth]) == [first_mid + 3]
    a.receive_datagram(by_mid[first_mid + 1], w.now)
    w.log.clear()
    b.receive_datagram(fourth, w.now)
    w.pump()
    assert a.counters.total_dropped() == b.counters.total_dropped() == 0
    assert len(a.child_sas()) == len(b.child_sas()) == 5
    assert not w.of("i", ChildSaFailed) and not w.of("r", ChildSaFailed)
    assert a.get_timer() is None


@pytest.mark.parametrize("side", SIDES)
def test_a_retransmitted_request_inside_the_window_gets_its_cached_answer(side):
    w = setup(2, 2)
    a, b = conn(w, side), peer_of(w, side)
    a.create_child(w.now)
    a.create_child(w.now)
    first, second = [d.data for d in a.datagrams_to_send(w.now)]
    b.receive_datagram(first, w.now)
    b.receive_datagram(second, w.now)
    answers = [d.data for d in b.datagrams_to_send(w.now)]
    children = len(b.child_sas())
    b.receive_datagram(first, w.now)  # the answer to the first was lost: its retransmission
    (again,) = [d.data for d in b.datagrams_to_send(w.now)]
    assert again == answers[0] and b.counters.duplicate_requests == 1 and len(b.child_sas()) == children


@pytest.mark.parametrize("side", SIDES)
def test_a_peer_exceeding_our_window_is_dropped_and_not_answered(side):
    """RFC 7296 2.3: an endpoint keeps state for the window it announced; a request beyond it is not taken."""
    w = setup(1, 1)
    a, b = conn(w, side), peer_of(w, side)
    beyond = b.ike.peer_mid + 1  # our window is 1: only peer_mid is taken

    def skip_ahead(msg: Message) -> Message:
        msg.message_id = beyond
        return msg

    a.on_send = skip_ahead
    a.check_liveness(w.now)
    (req,) = [d.data for d in a.datagrams_to_send(w.now)]
    b.receive_datagram(req, w.now)
    assert b.datagrams_to_send(w.now) == [] and b.counters.dropped_unexpected == 1
    (drop,) = [e for e in iter(b.next_event, None) if isinstance(e, DatagramDropped)]
    assert "outside our window" in drop.reason


@pytest.mark.parametrize("side", SIDES)
def test_a_rekeyed_ike_sa_starts_at_window_one_and_is_announced_again(side):
    w = setup(4, 4)
    a, b = conn(w, side), peer_of(w, side)
    a.rekey_ike(w.now)
    w.pump()
    assert w.of("i", IkeSaRekeyed) and w.i.retired == w.r.retired == []
    assert (a.ike.peer_window, b.ike.peer_window) == (4, 4)  # re-announced in an INFORMATIONAL on the new SA
    a.create_child(w.now)
    a.create_child(w.now)
    out = a.datagrams_to_send(w.now)
    assert len(out) == 2
    for d in out:
        b.receive_datagram(d.data, w.now)
    w.pump()
    assert len(w.of(side, ChildSaEstablished)) == 3 and a.get_timer() is None


def test_an_unequal_window_is_used_per_direction():
    w = setup(1, 3)  # the responder takes three at once; the initiator one
    w.i.check_liveness(w.now)
    w.i.create_child(w.now)
    assert len(w.i.datagrams_to_send(w.now)) == 2
    w.pump()
    w.r.check_liveness(w.now)
    w.r.create_child(w.now)
    assert len(w.r.datagrams_to_send(w.now)) == 1

"""Tester hooks, both roles: ``on_send`` alters any outgoing message before it is protected (drop, insert or
alter a payload or a transform, change a message id, drop the message), ``on_receive`` observes every message
taken, decoded (issue 11).  No engine code is patched.

The oracle is the peer: an unmodified engine that must refuse what RFC 7296 says it refuses (a request without
TSi is INVALID_SYNTAX, 1.3.1 and 2.21.3; a transform that was not offered is not accepted, 2.7; transport mode
asked for where tunnel is configured is refused, 1.3.1; a message id outside the window is ignored, 2.3).
"""

from __future__ import annotations

import pytest

from ipseclab.crypto.registry import EncrId, TransformType
from ipseclab.ike import ChildSaFailed, DatagramDropped, DeadPeer, IkeState
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import Message
from ipseclab.packets.payloads import NotifyPayload, Payload, SaPayload, TsiPayload

from .ike_wire import Wire, configs, handshake

SIDES = ("i", "r")


def conn(w: Wire, side: str):
    return w.i if side == "i" else w.r


def other(side: str) -> str:
    return "r" if side == "i" else "i"


def setup() -> Wire:
    w = handshake(*configs())
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    return w


def inner(msg: Message) -> list[Payload]:
    assert msg.encrypted is not None and msg.encrypted.payloads is not None
    return msg.encrypted.payloads


def only(exchange: int, response: bool, change):
    """A hook that changes only messages of one exchange and direction, and passes the rest."""

    def hook(msg: Message) -> Message | None:
        if msg.exchange == exchange and msg.response == response:
            return change(msg)
        return msg

    return hook


@pytest.mark.parametrize("side", SIDES)
def test_dropping_a_payload_gets_the_peers_refusal(side):
    w = setup()

    def drop_tsi(msg: Message) -> Message:
        inner(msg)[:] = [p for p in inner(msg) if not isinstance(p, TsiPayload)]
        return msg

    conn(w, side).on_send = only(ExchangeType.CREATE_CHILD_SA, False, drop_tsi)
    conn(w, side).create_child(w.now)
    w.pump()
    (failed,) = w.of(side, ChildSaFailed)
    assert failed.notify == NotifyType.INVALID_SYNTAX and failed.remote
    (refused,) = w.of(other(side), ChildSaFailed)
    assert refused.notify == NotifyType.INVALID_SYNTAX and not refused.remote
    assert w.i.state == w.r.state == IkeState.ESTABLISHED and len(w.i.child_sas()) == 1


@pytest.mark.parametrize("side", SIDES)
def test_changing_a_transform_in_the_answer_is_refused_by_the_initiator(side):
    """The responder (``other(side)``) says it chose AES-CBC where only AES-GCM was offered (RFC 7296 2.7)."""
    w = setup()

    def swap_encr(msg: Message) -> Message:
        for p in inner(msg):
            if isinstance(p, SaPayload):
                for t in p.proposals[0].transforms:
                    if t.type == TransformType.ENCR:
                        t.id = EncrId.AES_CBC
        return msg

    conn(w, other(side)).on_send = only(ExchangeType.CREATE_CHILD_SA, True, swap_encr)
    conn(w, side).create_child(w.now)
    w.pump()
    (failed,) = w.of(side, ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN and not failed.remote
    assert len(conn(w, side).child_sas()) == 1


@pytest.mark.parametrize("side", SIDES)
def test_inserting_a_payload_gets_the_peers_refusal(side):
    w = setup()  # tunnel mode on both sides

    def ask_transport(msg: Message) -> Message:
        inner(msg).insert(0, NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        return msg

    conn(w, side).on_send = only(ExchangeType.CREATE_CHILD_SA, False, ask_transport)
    conn(w, side).create_child(w.now)
    w.pump()
    (failed,) = w.of(side, ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN and failed.remote


@pytest.mark.parametrize("side", SIDES)
def test_a_changed_message_id_is_ignored_by_the_peer_and_the_request_times_out(side):
    w = setup()

    def far_ahead(msg: Message) -> Message:
        msg.message_id += 1000
        return msg

    conn(w, side).on_send = only(ExchangeType.INFORMATIONAL, False, far_ahead)
    conn(w, side).check_liveness(w.now)
    w.pump()
    peer = conn(w, other(side))
    assert peer.counters.dropped_unexpected == 1 and peer.counters.received == 2  # IKE_SA_INIT, IKE_AUTH only
    assert any("outside our window" in e.reason for e in w.of(other(side), DatagramDropped))
    w.run_timers(until=100.0)  # the retransmissions carry the same altered id: the peer is declared dead
    assert w.of(side, DeadPeer) and conn(w, side).state == IkeState.FAILED
    assert peer.counters.dropped_unexpected == conn(w, side).config.retransmit_tries


@pytest.mark.parametrize("side", SIDES)
def test_dropping_a_whole_message_sends_nothing(side):
    w = setup()
    conn(w, side).on_send = only(ExchangeType.CREATE_CHILD_SA, False, lambda msg: None)
    conn(w, side).create_child(w.now)
    assert conn(w, side).datagrams_to_send(w.now) == []
    assert conn(w, side).get_timer() == w.now + conn(w, side).config.retransmit_timeout  # still waiting


def test_every_message_in_and_out_is_observed_decoded():
    ci, cr = configs()
    sent: dict[str, list[str]] = {"i": [], "r": []}
    taken: dict[str, list[str]] = {"i": [], "r": []}

    def sender(side: str):
        def hook(msg: Message) -> Message:
            sent[side].append(msg.summary())
            return msg
        return hook

    w = Wire(ci, cr)
    for side in SIDES:
        conn(w, side).on_send = sender(side)
        conn(w, side).on_receive = lambda msg, side=side: taken[side].append(msg.summary())
    w.i.initiate(w.now)
    w.pump()
    w.r.rekey_child(w.r.child_sas()[0].key, w.now)
    w.pump()
    w.i.close(w.now)
    w.pump()
    assert sent["i"] == taken["r"] and sent["r"] == taken["i"]
    assert sent["i"][:2] == ["IKE_SA_INIT request #0 [SA KE No N(IKEV2_FRAGMENTATION_SUPPORTED)]",
                             "IKE_AUTH request #1 [SK{IDi IDr AUTH SA TSi TSr}]"]
    assert taken["i"][-1] == "INFORMATIONAL response #2 [SK{}]"  # the inner payloads, decrypted
    assert any(s.startswith("CREATE_CHILD_SA request #0 [SK{N(REKEY_SA)") for s in taken["i"])


def test_dropping_the_ike_sa_init_request_sends_nothing_and_it_is_retransmitted_as_nothing():
    ci, cr = configs()
    w = Wire(ci, cr)
    w.i.on_send = only(ExchangeType.IKE_SA_INIT, False, lambda msg: None)
    w.i.initiate(w.now)
    assert w.i.datagrams_to_send(w.now) == []
    w.run_timers(until=100.0)
    assert w.r.counters.received == 0 and w.i.state == IkeState.FAILED

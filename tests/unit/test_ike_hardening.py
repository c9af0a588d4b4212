"""Forged and malformed input against the IKEv2 engine (issue 9, items 1-7).

The rule under test (RFC 7296 2.21 and 5): before an IKE SA is authenticated, and for anything that fails
integrity afterwards, a datagram is dropped and counted, never acted on.  Each test forges what an attacker on
the path could send (right SPIs, right message ids, no keys) and checks that the engine's state, timer and
queued datagrams are as before, that the drop was counted, and that the genuine peer still gets through.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import pytest

from ipseclab import ike
from ipseclab.ike import (
    DatagramDropped,
    IkeConfig,
    IkeConnection,
    IkeSaDeleted,
    IkeSaFailed,
    IkeState,
)
from ipseclab.packets.enums import ExchangeType, NotifyType, ProtocolId
from ipseclab.packets.message import HEADER, EncryptedFragment, Message, decode, encode
from ipseclab.packets.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    KePayload,
    NotifyPayload,
    Payload,
    SaPayload,
)

from .ike_wire import Wire, configs, handshake, sent


def todo(item: int) -> pytest.MarkDecorator:
    """Issue 9's item ``item`` is not fixed yet: the test must fail (strict), until the fix removes the mark."""
    return pytest.mark.xfail(strict=True, reason=f"issue 9 item {item} is not fixed yet")


INFORMATIONAL, IKE_AUTH, IKE_SA_INIT = ExchangeType.INFORMATIONAL, ExchangeType.IKE_AUTH, ExchangeType.IKE_SA_INIT


def forge(w: Wire, exchange: int, mid: int, payloads: list[Payload], *, response: bool, by_initiator: bool,
          spi_r: bytes | None = None) -> bytes:
    """A cleartext message with this IKE SA's SPIs, as anyone on the path can make one."""
    return encode(Message(w.i.spi_i, w.r.spi_r if spi_r is None else spi_r, exchange, mid, payloads,
                          initiator=by_initiator, response=response))


def after_init() -> tuple[Wire, bytes]:
    """IKE_SA_INIT done both ways; returns the wire and the initiator's IKE_AUTH request, not yet delivered."""
    w = Wire(*configs())
    w.i.initiate(w.now)
    w.pump(rounds=1)
    (auth_req,) = sent(w.i, w.now)
    assert (w.i.state, w.r.state) == (IkeState.AUTH_SENT, IkeState.INIT_DONE)
    return w, auth_req


def established() -> Wire:
    w = handshake(*configs())
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    return w


def drops(w: Wire, side: str) -> list[DatagramDropped]:
    w.collect()
    return w.of(side, DatagramDropped)


# -- 1: once keys exist, a message without an SK payload is dropped --------------------------------------------


def test_cleartext_delete_does_not_close_an_established_sa():
    w = established()
    for conn, by_initiator, mid in ((w.r, True, 2), (w.i, False, 0)):  # the next request id each side expects
        conn.receive_datagram(forge(w, INFORMATIONAL, mid, [DeletePayload(ProtocolId.IKE)], response=False,
                                    by_initiator=by_initiator), w.now)
        assert conn.state == IkeState.ESTABLISHED and sent(conn, w.now) == []
    w.collect()
    assert not w.of("i", IkeSaDeleted) and not w.of("r", IkeSaDeleted)
    assert w.i.counters.dropped_unprotected == w.r.counters.dropped_unprotected == 1
    assert "SK" in drops(w, "r")[0].reason
    w.i.close(w.now)  # the genuine Delete still works
    w.pump()
    assert w.i.state == w.r.state == IkeState.CLOSED


def test_cleartext_response_neither_answers_a_liveness_check_nor_finishes_a_delete():
    w = established()
    w.r.check_liveness(w.now)
    (liveness,) = sent(w.r, w.now)
    timer = w.r.get_timer()
    w.r.receive_datagram(forge(w, INFORMATIONAL, 0, [], response=True, by_initiator=True), w.now)
    assert w.r.get_timer() == timer and w.r.counters.dropped_unprotected == 1
    w.i.receive_datagram(liveness, w.now)  # the genuine answer is still taken
    w.pump()
    assert w.r.get_timer() is None and w.r.counters.total_dropped() == 1
    w.i.close(w.now)
    sent(w.i, w.now)  # the Delete is lost
    w.i.receive_datagram(forge(w, INFORMATIONAL, 2, [], response=True, by_initiator=False), w.now)
    assert w.i.state == IkeState.DELETING and w.i.get_timer() is not None
    assert w.i.counters.dropped_unprotected == 1


# -- 2: cleartext IKE_AUTH fails neither side ------------------------------------------------------------------


def test_cleartext_junk_ike_auth_fails_neither_side():
    w, auth_req = after_init()
    junk = [IdiPayload(2, b"moon.strongswan.org"), AuthPayload(2, bytes(32))]
    w.r.receive_datagram(forge(w, IKE_AUTH, 1, junk, response=False, by_initiator=True), w.now)
    assert w.r.state == IkeState.INIT_DONE and sent(w.r, w.now) == []
    timer = w.i.get_timer()
    refusal = [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
    w.i.receive_datagram(forge(w, IKE_AUTH, 1, refusal, response=True, by_initiator=False), w.now)
    assert w.i.state == IkeState.AUTH_SENT and w.i.get_timer() == timer
    w.collect()
    assert not w.of("i", IkeSaFailed) and not w.of("r", IkeSaFailed)
    assert w.i.counters.dropped_unprotected == w.r.counters.dropped_unprotected == 1
    w.r.receive_datagram(auth_req, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


# -- 3: a stray response does not clear the outstanding request ------------------------------------------------


@pytest.mark.parametrize("exchange", [IKE_SA_INIT, IKE_AUTH, INFORMATIONAL, ExchangeType.CREATE_CHILD_SA, 0])
def test_a_stray_28_byte_response_leaves_the_ike_sa_init_request_outstanding(exchange):
    w = Wire(*configs())
    w.i.initiate(w.now)
    (init_req,) = sent(w.i, w.now)
    timer = w.i.get_timer()
    stray = HEADER.pack(w.i.spi_i, bytes(8), 0, 0x20, exchange, 0x20, 0, 28)
    w.i.receive_datagram(stray, w.now)
    assert w.i.state == IkeState.INIT_SENT and w.i.get_timer() == timer
    assert w.i.counters.total_dropped() == 1 and len(drops(w, "i")) == 1
    w.r.receive_datagram(init_req, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_stray_28_byte_response_does_not_answer_a_liveness_check():
    w = established()
    w.r.check_liveness(w.now)
    (liveness,) = sent(w.r, w.now)
    timer = w.r.get_timer()
    w.r.receive_datagram(HEADER.pack(w.i.spi_i, w.r.spi_r, 0, 0x20, INFORMATIONAL, 0x28, 0, 28), w.now)
    assert w.r.get_timer() == timer and w.r.counters.total_dropped() == 1
    w.i.receive_datagram(liveness, w.now)
    w.pump()
    assert w.r.get_timer() is None and w.r.counters.total_dropped() == 1  # the genuine answer was taken


# -- 4: a forged IKE_SA_INIT response does not fail the initiator ----------------------------------------------


def _replace(msg: Message, cls: type, new: Payload) -> bytes:
    msg.payloads = [new if isinstance(p, cls) else p for p in msg.payloads]
    return encode(msg)


def _forged_init_responses(genuine: bytes) -> dict[str, bytes]:
    ke = decode(genuine).find(KePayload)[0]
    sa = decode(genuine).find(SaPayload)[0]
    assert isinstance(ke, KePayload) and isinstance(sa, SaPayload)
    return {
        "off-curve KE": _replace(decode(genuine), KePayload, KePayload(ke.group, b"\x01" * len(ke.data))),
        "short KE": _replace(decode(genuine), KePayload, KePayload(ke.group, ke.data[:-1])),
        "two proposals": _replace(decode(genuine), SaPayload, SaPayload(sa.proposals * 2)),
        "no KE": encode(dataclasses.replace(decode(genuine), payloads=[p for p in decode(genuine).payloads
                                                                      if not isinstance(p, KePayload)])),
        "NO_PROPOSAL_CHOSEN": forge_init_error(genuine, NotifyType.NO_PROPOSAL_CHOSEN),
    }


def forge_init_error(genuine: bytes, notify: int) -> bytes:
    msg = decode(genuine)
    return encode(Message(msg.spi_i, bytes(8), IKE_SA_INIT, 0, [NotifyPayload(notify)], initiator=False,
                          response=True))


@pytest.mark.parametrize("kind", ["off-curve KE", "short KE", "two proposals", "no KE", "NO_PROPOSAL_CHOSEN"])
def test_a_forged_ike_sa_init_response_does_not_fail_the_initiator(kind):
    w = Wire(*configs())
    w.i.initiate(w.now)
    w.r.receive_datagram(sent(w.i, w.now)[0], w.now)
    (genuine,) = sent(w.r, w.now)
    timer = w.i.get_timer()
    w.i.receive_datagram(_forged_init_responses(genuine)[kind], w.now)
    assert w.i.state == IkeState.INIT_SENT and w.i.get_timer() == timer and sent(w.i, w.now) == []
    w.collect()
    assert not w.of("i", IkeSaFailed)
    assert w.i.counters.total_dropped() == 1 and len(w.of("i", DatagramDropped)) == 1
    # the drop names the refusal notify it carried (what the lab watches for), acted on or not
    (dropped,) = w.of("i", DatagramDropped)
    assert dropped.notify == (NotifyType.NO_PROPOSAL_CHOSEN if kind == "NO_PROPOSAL_CHOSEN" else 0)
    w.i.receive_datagram(genuine, w.now)  # RFC 7296 2.21.1: keep waiting for a valid response
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_an_unanswered_refusal_fails_the_initiator_when_the_retransmissions_give_up():
    """Only when no valid response comes before the timer gives up does the (unauthenticated) notify count."""
    w = Wire(*configs(retransmit_tries=3))
    w.i.initiate(w.now)
    (init_req,) = sent(w.i, w.now)
    w.i.receive_datagram(forge_init_error(init_req, NotifyType.NO_PROPOSAL_CHOSEN), w.now)
    while (t := w.i.get_timer()) is not None:
        w.now = t
        w.i.handle_timer(t)
        sent(w.i, t)
    w.collect()
    (failed,) = w.of("i", IkeSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN and failed.remote and "NO_PROPOSAL_CHOSEN" in failed.reason
    assert "after 3 transmissions" in failed.reason


# -- 5: an IKE_SA_INIT request with an invalid KE value ----------------------------------------------------------


@pytest.mark.parametrize("ke_data", [b"\x01" * 64, b"\x01" * 63, bytes(64)])
def test_an_ike_sa_init_request_with_an_invalid_ke_value_gets_invalid_syntax_and_leaves_no_state(ke_data):
    w = Wire(*configs())
    w.i.initiate(w.now)
    (genuine,) = sent(w.i, w.now)
    ke = decode(genuine).find(KePayload)[0]
    assert isinstance(ke, KePayload)
    w.r.receive_datagram(_replace(decode(genuine), KePayload, KePayload(ke.group, ke_data)), w.now)
    assert w.r.state == IkeState.INITIAL
    (answer,) = sent(w.r, w.now)
    reply = decode(answer)
    assert reply.response and reply.exchange == IKE_SA_INIT and reply.spi_r == bytes(8)
    assert [type(p) for p in reply.payloads] == [NotifyPayload]
    assert reply.payloads[0].notify_type == NotifyType.INVALID_SYNTAX  # type: ignore[attr-defined]
    w.collect()
    assert not w.of("r", IkeSaFailed) and w.r.counters.dropped_unacceptable == 1
    w.r.receive_datagram(genuine, w.now)  # the genuine initiator still gets its IKE SA
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_an_ike_sa_init_request_in_another_group_gets_invalid_ke_payload_and_leaves_no_state():
    w = Wire(*configs(ike_proposals=("aes256gcm16-prfsha256-ecp256", "aes256gcm16-prfsha256-modp2048"),
                      r_ike_proposals=("aes256gcm16-prfsha256-modp2048",)))
    w.i.initiate(w.now)
    w.r.receive_datagram(sent(w.i, w.now)[0], w.now)
    (answer,) = sent(w.r, w.now)
    assert decode(answer).payloads == [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, data=(14).to_bytes(2, "big"))]
    assert w.r.state == IkeState.INITIAL and w.r.counters.dropped_unacceptable == 1
    w.i.receive_datagram(answer, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_refused_ike_sa_init_request_does_not_claim_the_responder():
    """A request the responder cannot take (no common proposal) is answered and forgotten: the next one works."""
    w = Wire(*configs())
    stranger = IkeConnection(IkeConfig("mallory", "sun.strongswan.org", b"x", ike_proposals=("aes128-sha1-modp2048",)),
                             initiator=True)
    stranger.initiate(0)
    w.r.receive_datagram(sent(stranger, 0)[0], w.now)
    (answer,) = sent(w.r, w.now)
    assert decode(answer).payloads == [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)]
    assert decode(answer).spi_i == stranger.spi_i and w.r.state == IkeState.INITIAL
    w.collect()
    assert not w.of("r", IkeSaFailed) and w.r.counters.dropped_unacceptable == 1
    w.i.initiate(w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


# -- 6: forged fragments are neither stored nor answered from the cache ----------------------------------------


def _forged_fragment(w: Wire, mid: int, number: int, size: int = 400) -> bytes:
    frag = EncryptedFragment(number, 64, 35 if number == 1 else 0, ciphertext=bytes([number % 251]) * size)
    return encode(Message(w.i.spi_i, w.r.spi_r, IKE_AUTH, mid, [frag], initiator=True, response=False))


def test_forged_fragments_with_the_expected_message_id_are_not_kept():
    w, auth_req = after_init()
    count = 4000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):  # made one at a time: the test itself keeps none of them
            w.r.receive_datagram(_forged_fragment(w, 1, 1 + n % 64, 400 + n % 7), w.now)
            w.r.next_event()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept for {count} forged fragments"
    assert w.r.counters.dropped_integrity == count and w.r.state == IkeState.INIT_DONE
    assert w.r.stored_fragment_bytes == 0
    w.r.receive_datagram(auth_req, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_forged_copy_of_an_answered_request_gets_no_cached_response():
    w, auth_req = after_init()
    forged = _forged_fragment(w, 1, 1)
    w.r.receive_datagram(forged, w.now)
    w.r.receive_datagram(auth_req, w.now)
    w.pump()
    assert w.r.state == IkeState.ESTABLISHED and w.r.counters.dropped_integrity == 1
    w.r.receive_datagram(forged, w.now)
    assert sent(w.r, w.now) == [] and w.r.counters.duplicate_requests == 0
    assert w.r.counters.dropped_integrity == 2
    w.r.receive_datagram(auth_req, w.now)  # a genuine retransmission is still answered from the cache
    assert len(sent(w.r, w.now)) == 1 and w.r.counters.duplicate_requests == 1


def _authentic_fragments(w: Wire, mid: int, total: int, size: int) -> list[bytes]:
    """SKF fragments the initiator's keys protect: a hostile but authenticated peer (or a buggy one)."""
    crypto = w.i.neg.crypto
    assert crypto is not None
    return [encode(Message(w.i.spi_i, w.r.spi_r, IKE_AUTH, mid,
                           [EncryptedFragment(n, total, 35 if n == 1 else 0, plaintext=bytes(size))],
                           initiator=True, response=False), crypto) for n in range(1, total)]


def test_authenticated_fragments_are_stored_up_to_the_per_sa_bound():
    budget = ike.MemoryBudget()
    w, auth_req = after_init()
    flood = _authentic_fragments(w, 1, 64, 1400)  # 63 parts of 1400 bytes: more than the 64 KiB per SA
    for d in flood:
        w.r.receive_datagram(d, w.now)
        assert w.r.stored_fragment_bytes <= budget.fragment_bytes_per_sa
    assert w.r.counters.dropped_over_limit >= 1 and w.r.state == IkeState.INIT_DONE
    w.r.receive_datagram(auth_req, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED and w.r.stored_fragment_bytes == 0


def test_a_shared_budget_bounds_fragments_over_all_its_connections():
    budget = ike.MemoryBudget(fragment_bytes_per_sa=16_000, fragment_bytes_total=20_000)
    wires = [Wire(*configs(), budget=budget) for _ in range(3)]
    for w in wires:
        w.i.initiate(w.now)
        w.pump(rounds=1)
        sent(w.i, w.now)
        for d in _authentic_fragments(w, 1, 20, 1000):
            w.r.receive_datagram(d, w.now)
        assert w.r.stored_fragment_bytes <= 16_000
    assert sum(w.r.stored_fragment_bytes for w in wires) <= 20_000 == budget.fragment_bytes_total
    assert budget.stored_fragment_bytes == sum(w.r.stored_fragment_bytes for w in wires)
    assert wires[-1].r.counters.dropped_over_limit > 0


def test_a_response_over_the_per_sa_bound_is_sent_but_not_cached():
    w = handshake(*configs(), budget=ike.MemoryBudget(response_bytes_per_sa=100))
    assert w.r.state == IkeState.ESTABLISHED and w.r.cached_response_bytes == 0
    w2 = handshake(*configs())
    assert 0 < w2.r.cached_response_bytes <= ike.MemoryBudget().response_bytes_per_sa


# -- 7: window size 1 ------------------------------------------------------------------------------------------


def test_liveness_then_close_keeps_one_request_in_flight():
    w = established()
    w.i.check_liveness(w.now)
    w.i.close(w.now)
    (in_flight,) = sent(w.i, w.now)  # RFC 7296 2.3: the Delete waits for the liveness answer
    w.r.receive_datagram(in_flight, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.CLOSED
    assert w.i.counters.total_dropped() == w.r.counters.total_dropped() == 0
    assert w.of("i", IkeSaDeleted) == [IkeSaDeleted(by_peer=False)]


def test_a_lost_liveness_request_is_retransmitted_before_the_delete_goes_out():
    lost: list[bytes] = []

    def deliver(direction: str, d: bytes) -> bool:
        if direction == "i>r" and decode(d).exchange == INFORMATIONAL and not lost:
            lost.append(d)
            return False
        return True

    w = handshake(*configs(), deliver=deliver)
    w.i.check_liveness(w.now)
    w.i.close(w.now)
    w.pump()
    assert w.i.state == IkeState.ESTABLISHED and lost  # the Delete is queued behind the lost request
    w.run_timers(until=30)
    assert w.i.state == w.r.state == IkeState.CLOSED and w.i.counters.retransmits == 1
    assert not w.of("i", IkeSaFailed) and w.r.counters.total_dropped() == 0


# -- beyond the list: our own messages reflected back ----------------------------------------------------------


def test_our_own_request_reflected_back_is_not_taken_as_the_peers():
    """The I flag says which side sent a message (RFC 7296 3.1); a reflected one decrypts with our own keys."""
    w = established()
    for _ in range(2):  # the responder's request ids reach 2, the id it expects next from the initiator
        w.r.check_liveness(w.now)
        w.pump()
    w.r.close(w.now)
    (delete,) = sent(w.r, w.now)
    assert decode(delete).message_id == 2
    w.r.receive_datagram(delete, w.now)
    w.collect()
    assert w.r.state == IkeState.DELETING and not w.of("r", IkeSaDeleted)
    assert w.r.counters.dropped_unexpected == 1


def test_a_cookie_retry_resends_the_same_payloads_behind_the_cookie():
    """RFC 7296 2.6: the retry carries the COOKIE first and all other payloads unchanged (the same KE value)."""
    w = Wire(*configs())
    w.i.initiate(w.now)
    (first,) = sent(w.i, w.now)
    cookie = NotifyPayload(NotifyType.COOKIE, data=b"c" * 16)
    w.i.receive_datagram(encode(Message(w.i.spi_i, bytes(8), IKE_SA_INIT, 0, [cookie], initiator=False,
                                        response=True)), w.now)
    (retry,) = sent(w.i, w.now)
    assert decode(retry).payloads == [cookie, *decode(first).payloads]
    w.r.receive_datagram(retry, w.now)
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_retransmitted_delete_is_answered_after_the_sa_closed():
    """If our answer to the peer's Delete is lost, its retransmission (authentic) still gets the cached answer."""
    lost: list[bytes] = []

    def deliver(direction: str, d: bytes) -> bool:
        if direction == "r>i" and decode(d).exchange == INFORMATIONAL and not lost:
            lost.append(d)
            return False
        return True

    w = handshake(*configs(), deliver=deliver)
    w.i.close(w.now)
    w.pump()
    assert w.r.state == IkeState.CLOSED and w.i.state == IkeState.DELETING and lost
    w.run_timers(until=30)
    assert w.i.state == IkeState.CLOSED and w.r.counters.duplicate_requests == 1
    assert w.r.counters.total_dropped() == 0

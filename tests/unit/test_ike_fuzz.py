"""Hypothesis fuzzing of the IKE engine in both roles and every state it reaches (issue 9), bounded for CI.

Targets, generators and properties are shared with the long run (``python -m tests.fuzz.engine``) and
described in ``tests/fuzz/targets.py``: random bytes, mutated genuine datagrams and forged messages with this
SA's SPIs and expected message ids; nothing escapes ``receive_datagram``/``handle_timer``; input that is not
authentic changes no state, timer or counter but a drop counter; the genuine next datagram still gets through;
memory stays under the budget.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.ike import IkeState, MemoryBudget
from ipseclab.packets.enums import ExchangeType
from ipseclab.packets.message import EncryptedPayload, Message, encode
from tests.fuzz.targets import TARGETS, attack, authentic_fragments, build, check_bounds, finish, pick

from .strategies import clear_payload

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
target = st.sampled_from(TARGETS)


@settings(FUZZ, max_examples=250)
@given(target, st.randoms(use_true_random=False), st.integers(1, 40), st.booleans())
def test_hostile_datagrams_in_every_state_are_dropped_and_the_genuine_peer_still_gets_through(
        where, rnd: random.Random, count, retransmit):
    t = build(*where)
    attack(t, (pick(rnd)[1](rnd, t) for _ in range(count)))
    finish(t, retransmit=retransmit)


@settings(FUZZ, max_examples=150)
@given(target, st.lists(clear_payload, max_size=5), st.sampled_from([34, 35, 36, 37, 0, 255]),
       st.sampled_from([0, 1, 2, 3, 0xFFFFFFFF]), st.booleans(), st.booleans(), st.booleans())
def test_well_formed_cleartext_messages_with_this_sas_header_are_never_acted_on(
        where, payloads, exchange, mid, response, peer_flag, garbled_sk):
    """Any typed payloads the codec knows, under this SA's SPIs and a plausible message id."""
    t = build(*where)
    i_flag = (not t.conn.initiator) if peer_flag else t.conn.initiator
    if garbled_sk:
        payloads = [*payloads, EncryptedPayload(first_payload=41, ciphertext=bytes(range(64)))]
    msg = Message(t.wire.i.spi_i, t.wire.r.spi_r, exchange, mid, payloads, initiator=i_flag, response=response)
    attack(t, [encode(msg)])
    finish(t)


KEYED = [w for w in TARGETS if w[0] != "init"]


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(KEYED), st.randoms(use_true_random=False), st.integers(1, 120))
def test_authentic_fragment_floods_stay_within_the_budget(where, rnd: random.Random, count):
    """A peer with the keys (hostile or broken) cannot make the engine hold more than the budget allows."""
    budget = MemoryBudget(fragment_bytes_per_sa=6000, fragment_bytes_total=9000, response_bytes_per_sa=3000)
    t = build(*where, budget=budget)
    other = build(*where, budget=budget)  # a second SA on the same budget, for the total
    for conn, d in [(t.conn, d) for d in authentic_fragments(rnd, t, count)] + \
                   [(other.conn, d) for d in authentic_fragments(rnd, other, count // 2)]:
        conn.receive_datagram(d, 0.0)
        check_bounds(t)
        check_bounds(other)
    assert budget.stored_fragment_bytes == t.conn.stored_fragment_bytes + other.conn.stored_fragment_bytes


def test_the_targets_reach_every_state_in_both_roles():
    """The fuzzers above are only as good as the states they reach: check the targets are what they say."""
    reached = {(w[1], build(*w).conn.state) for w in TARGETS if w[2] == "gcm"}
    want = {IkeState.INIT_SENT, IkeState.AUTH_SENT, IkeState.ESTABLISHED, IkeState.DELETING, IkeState.CLOSED}
    assert {s for side, s in reached if side == "i"} == want
    assert {s for side, s in reached if side == "r"} == (want - {IkeState.INIT_SENT, IkeState.AUTH_SENT}) | {
        IkeState.INITIAL, IkeState.INIT_DONE}
    frag = build("auth", "r", "frag")
    assert len(frag.held) > 1 and all(d[18] == ExchangeType.IKE_AUTH for d in frag.held)  # a fragmented IKE_AUTH


@pytest.mark.parametrize("seed", range(3))
def test_a_seeded_batch_like_the_long_run(seed):
    """The long run's loop, a few hundred inputs: the same code path as ``python -m tests.fuzz.engine``."""
    from tests.fuzz.engine import run

    stats = run(seconds=0, max_batches=len(TARGETS), seed=seed)
    assert stats.escapes == 0 and stats.violations == 0 and stats.inputs > 0

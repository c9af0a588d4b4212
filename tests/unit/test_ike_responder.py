"""The listener (``ike.responder.Responder``) in memory: demultiplexing many IKE SAs by SPI, responder cookies
(RFC 7296 2.6) above a half-open threshold, the half-open limit and expiry, and a flood (issue 11).

Oracles outside the code under test: RFC 7296 2.6's wire rules (the cookie answer has a zero responder SPI and
one COOKIE notify; the initiator's retry carries it as its first payload; nothing is kept for an initiator that
has not echoed one), whether a real initiator (``IkeConnection``, the side that does not know the cookie
secret) gets through, and tracemalloc's count of the memory a 10,000-request flood leaves behind, as a bound.
"""

from __future__ import annotations

import ipaddress
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.ike import ChildSaEstablished, IkeConnection, IkeSaEstablished, IkeState
from ipseclab.ike.responder import Responder
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import decode, encode
from ipseclab.packets.payloads import NoncePayload, NotifyPayload

from .ike_wire import configs

ADDR = ("192.0.2.10", 500)


class Peer:
    """A real initiator talking to the listener from ``addr``."""

    def __init__(self, listener: Responder, addr: tuple[str, int] = ADDR, **kw: object) -> None:
        ci, _ = configs(**kw)
        self.conn = IkeConnection(ci, initiator=True)
        self.listener, self.addr = listener, addr
        self.events: list[object] = []
        self.seen: list[bytes] = []  # what the listener sent back

    def start(self, now: float = 0.0) -> None:
        self.conn.initiate(now)

    def pump(self, now: float = 0.0, rounds: int = 10) -> None:
        for _ in range(rounds):
            out = self.conn.datagrams_to_send(now)
            for d in out:
                self.listener.receive_datagram(d.data, now, self.addr)
            back = [d for d in self.listener.datagrams_to_send(now) if d.addr == self.addr]
            for d in back:
                self.seen.append(d.data)
                self.conn.receive_datagram(d.data, now, d.addr)
            self.events.extend(iter(self.conn.next_event, None))
            if not out and not back:
                return


def listener(**kw: object) -> Responder:
    _, cr = configs()
    return Responder(cr, **kw)  # type: ignore[arg-type]


def drain(r: Responder) -> None:
    r.datagrams_to_send(0.0)
    while r.next_event() is not None:
        pass


def cookie_of(data: bytes) -> bytes | None:
    msg = decode(data)
    if msg.exchange != ExchangeType.IKE_SA_INIT or not msg.response:
        return None
    notes = [p for p in msg.payloads if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.COOKIE]
    return notes[0].data if notes else None


def template_init() -> bytes:
    c = IkeConnection(configs()[0], initiator=True)
    c.initiate(0.0)
    return c.datagrams_to_send(0.0)[0].data


def fill(r: Responder, n: int, now: float = 0.0) -> None:
    """``n`` half-open IKE SAs from distinct addresses (real IKE_SA_INIT requests, never followed up)."""
    for k in range(n):
        r.receive_datagram(template_init(), now, (f"198.51.100.{k + 1}", 500))
    drain(r)


def test_below_the_threshold_an_initiator_gets_through_without_a_cookie():
    r = listener()
    p = Peer(r)
    p.start()
    p.pump()
    assert p.conn.state == IkeState.ESTABLISHED and r.counters.cookies_sent == 0
    (conn,) = r.ike_connections()
    assert conn.state == IkeState.ESTABLISHED and r.half_open == 0
    assert [type(e).__name__ for c, e in iter(r.next_event, None) if c is conn] == [
        "IkeSaKeysDerived", "IkeSaEstablished", "ChildSaEstablished"]


def test_many_initiators_are_demultiplexed_by_spi_and_keep_working_after_ike_rekeys():
    r = listener()
    peers = [Peer(r, (f"192.0.2.{k}", 500)) for k in range(1, 6)]
    for p in peers:
        p.start()
    for p in peers:
        p.pump()
    assert all(p.conn.state == IkeState.ESTABLISHED for p in peers) and len(r.ike_connections()) == 5
    drain(r)
    peers[0].conn.rekey_ike(0.0)  # the initiator's new SPI
    peers[0].pump()
    (theirs,) = [c for c in r.ike_connections() if c.peer_id and c.spi_i == peers[0].conn.spi_i]
    theirs.rekey_ike(0.0)  # ours: the listener now finds this IKE SA by its initiator SPI
    for d in r.datagrams_to_send(0.0):
        peers[0].conn.receive_datagram(d.data, 0.0, d.addr)
    peers[0].pump()
    assert theirs.ike.initiator and r.connections[theirs.spi_i] is theirs
    for p in peers:
        p.conn.create_child(0.0)
        p.pump()
        assert len(p.conn.child_sas()) == 2
    assert {len(c.child_sas()) for c in r.ike_connections()} == {2}
    assert r.counters.dropped_unknown_spi == 0
    stray = bytearray(p.seen[-1])
    stray[0:8] = bytes(8 * [0xAB])
    r.receive_datagram(bytes(stray), 0.0, ADDR)
    assert r.counters.dropped_unknown_spi == 1


def test_above_the_threshold_ike_sa_init_gets_a_stateless_cookie_and_the_echo_gets_through():
    r = listener(cookie_threshold=3)
    fill(r, 3)
    assert r.half_open == 3
    p = Peer(r)
    p.start()
    first = p.conn.datagrams_to_send(0.0)[0].data
    r.receive_datagram(first, 0.0, ADDR)
    (answer,) = r.datagrams_to_send(0.0)
    msg = decode(answer.data)
    # RFC 7296 2.6: the answer names the initiator's SPI, a zero responder SPI, and carries the COOKIE alone
    assert msg.spi_i == decode(first).spi_i and msg.spi_r == bytes(8) and msg.response
    assert [type(x) for x in msg.payloads] == [NotifyPayload] and 1 <= len(cookie_of(answer.data) or b"") <= 64
    assert r.half_open == 3 and len(r.ike_connections()) == 3  # nothing kept
    p.conn.receive_datagram(answer.data, 0.0, ADDR)
    (retry,) = p.conn.datagrams_to_send(0.0)
    first_payload = decode(retry.data).payloads[0]
    assert isinstance(first_payload, NotifyPayload) and first_payload.notify_type == NotifyType.COOKIE
    r.receive_datagram(retry.data, 0.0, ADDR)
    for d in r.datagrams_to_send(0.0):
        p.conn.receive_datagram(d.data, 0.0, d.addr)
    p.pump()
    assert p.conn.state == IkeState.ESTABLISHED and r.counters.cookies_accepted == 1
    assert any(isinstance(e, ChildSaEstablished) for e in p.events)


@pytest.mark.parametrize("change", ["address", "spi", "nonce"])
def test_a_cookie_is_bound_to_the_address_spi_and_nonce_it_was_made_for(change):
    r = listener(cookie_threshold=0)
    p = Peer(r)
    p.start()
    r.receive_datagram(p.conn.datagrams_to_send(0.0)[0].data, 0.0, ADDR)
    (answer,) = r.datagrams_to_send(0.0)
    p.conn.receive_datagram(answer.data, 0.0, ADDR)
    retry = bytearray(p.conn.datagrams_to_send(0.0)[0].data)
    source = ADDR
    if change == "address":
        source = ("192.0.2.99", 500)
    elif change == "spi":
        retry[7] ^= 1
    else:
        msg = decode(bytes(retry))
        (nonce,) = [x for x in msg.payloads if isinstance(x, NoncePayload)]
        nonce.data = bytes(len(nonce.data))
        retry = bytearray(encode(msg))
    r.receive_datagram(bytes(retry), 0.0, source)
    (again,) = r.datagrams_to_send(0.0)
    assert cookie_of(again.data) is not None and r.ike_connections() == []
    assert r.counters.dropped_bad_cookie == 1 and r.counters.cookies_accepted == 0


@pytest.mark.parametrize(("delay", "admitted"), [(50.0, True), (150.0, True), (250.0, False)])
def test_a_cookie_of_the_previous_secret_still_verifies_for_one_rotation(delay, admitted):
    r = listener(cookie_threshold=0, cookie_rotation=100.0)
    p = Peer(r)
    p.start()
    r.receive_datagram(p.conn.datagrams_to_send(0.0)[0].data, 10.0, ADDR)  # the secret starts at 10 s
    (answer,) = r.datagrams_to_send(10.0)
    p.conn.receive_datagram(answer.data, 10.0, ADDR)
    (retry,) = p.conn.datagrams_to_send(10.0)
    r.receive_datagram(retry.data, 10.0 + delay, ADDR)  # 50 s: same secret; 150: previous; 250: too old
    assert (len(r.ike_connections()) == 1) is admitted
    if not admitted:
        (fresh,) = r.datagrams_to_send(0.0)
        assert cookie_of(fresh.data) not in (None, cookie_of(answer.data))


def test_the_half_open_limit_drops_new_ike_sa_inits_until_half_open_sas_expire():
    r = listener(cookie_threshold=None, half_open_limit=4)
    fill(r, 4)
    r.receive_datagram(template_init(), 1.0, ("203.0.113.1", 500))
    assert r.counters.dropped_half_open_limit == 1 and r.half_open == 4
    assert r.get_timer() == 30.0  # strongSwan's half_open_timeout, the config had none
    r.handle_timer(30.0)
    assert r.half_open == 0 and r.ike_connections() == [] and r.connections == {}
    p = Peer(r)
    p.start(31.0)
    p.pump(31.0)
    assert p.conn.state == IkeState.ESTABLISHED


def test_a_flood_of_ten_thousand_ike_sa_inits_keeps_memory_bounded_and_a_genuine_initiator_gets_through():
    threshold = 10
    r = listener(cookie_threshold=threshold)
    template = template_init()
    r.receive_datagram(template, 0.0, ("198.18.0.1", 500))  # warm-up: imports, caches, the cookie secret
    drain(r)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k in range(10_000):
            flood = bytearray(template)
            flood[0:8] = (k + 1).to_bytes(8, "big")  # distinct SPIs from distinct addresses
            r.receive_datagram(bytes(flood), 0.0, (str(ipaddress.IPv4Address(0xC6120000 + k + 2)), 500))
            drain(r)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    held = r.ike_connections()
    assert len(held) == r.half_open == threshold and r.counters.cookies_sent == 10_000 - threshold + 1
    # the bound: the threshold's half-open IKE SAs (each well under 64 KiB with its cached IKE_SA_INIT answer)
    # and nothing per cookie answered; 10,000 kept states would be tens of megabytes
    assert grown < threshold * 64 * 1024, f"{grown} bytes kept after the flood"
    p = Peer(r, ("192.0.2.200", 4500))
    p.start()
    p.pump()
    assert p.conn.state == IkeState.ESTABLISHED and p.conn.neg.cookie == b""  # forgotten once established
    assert any(isinstance(e, IkeSaEstablished) for e in p.events) and r.counters.cookies_accepted == 1


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(st.randoms(use_true_random=False), st.sampled_from([None, 0, 2]), st.integers(1, 30))
def test_hostile_datagrams_never_escape_the_listener_and_a_genuine_initiator_still_gets_through(
        rnd, threshold, count):
    """Random bytes, truncated and bit-flipped genuine IKE_SA_INITs, stray headers: dropped, answered with a
    cookie or a refusal, or (when they still parse as a request) a half-open SA within the limit; never raised."""
    r = listener(cookie_threshold=threshold, half_open_limit=5)
    genuine = template_init()
    for _ in range(count):
        kind = rnd.randrange(4)
        if kind == 0:
            data = rnd.randbytes(rnd.randrange(0, 300))
        elif kind == 1:
            data = genuine[: rnd.randrange(0, len(genuine))]
        else:
            flipped = bytearray(genuine)
            for _ in range(rnd.randrange(1, 8)):
                flipped[rnd.randrange(len(flipped))] ^= 1 << rnd.randrange(8)
            data = bytes(flipped)
        r.receive_datagram(data, 0.0, (f"203.0.113.{rnd.randrange(1, 255)}", 500))
        drain(r)
    assert r.half_open <= 5
    r.handle_timer(31.0)  # the half-open ones expire
    p = Peer(r, ("192.0.2.77", 500))
    p.start(31.0)
    p.pump(31.0)
    assert p.conn.state == IkeState.ESTABLISHED

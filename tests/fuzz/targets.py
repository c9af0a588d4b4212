"""IKE engines in every state they reach, hostile input for them, and what must hold afterwards.

A *target* is a fresh initiator/responder pair (``tests.unit.ike_wire.Wire``) brought to one state, one side
under attack, and the genuine datagrams that would move it on held back.  A *generator* makes one hostile
datagram from a ``random.Random`` and the target, so Hypothesis drives the same code through
``st.randoms()`` (shrinking included) and the long run through one seeded Random without per-example cost.

``attack`` feeds a batch and checks, raising ``PropertyViolation`` (an escape from the engine propagates):

* where the attacked side has keys, every forged datagram is dropped and counted in a drop counter, and the
  state, ``get_timer()``, every other counter, the SPIs and what is queued for the peer stay as they were;
* before keys exist (IKE_SA_INIT is not authenticated) a datagram is dropped and counted, or taken as a
  genuine IKE_SA_INIT message would be; a responder's only answers to what it drops are one-notify refusals;
* memory stays under the budget (stored fragments, cached responses; per SA and in total);

and ``finish`` delivers the held genuine datagrams: the handshake completes, the liveness check is answered,
the Delete closes both sides, a Child SA rekey (ours or the peer's) and an IKE rekey complete.  Only what
RFC 7296 says an initiator must act on, unauthenticated (a valid IKE_SA_INIT response, COOKIE,
INVALID_KE_PAYLOAD; 2.21.1) and a responder must take (a valid IKE_SA_INIT request) may divert a target
from that; ``Target.diverted`` says so and ``finish`` then checks nothing.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ipseclab.ike import ChildSaEstablished, DatagramDropped, IkeConnection, IkeSaRekeyed, IkeState, MemoryBudget
from ipseclab.packets.enums import ExchangeType, NotifyType, ProtocolId
from ipseclab.packets.message import HEADER, EncryptedFragment, EncryptedPayload, IkeSaCrypto, Message, decode, encode
from ipseclab.packets.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    TrafficSelector,
    TsiPayload,
    UnknownPayload,
    VendorPayload,
)
from tests.unit.ike_wire import Wire, configs, sent


class PropertyViolation(AssertionError):
    """A property of the engine did not hold; ``data`` is the datagram that showed it (if one did)."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(f"{message}" + (f" (datagram {data.hex()})" if data else ""))
        self.data = data


def require(ok: bool, message: str, data: bytes = b"") -> None:
    if not ok:
        raise PropertyViolation(message, data)


# -- targets ---------------------------------------------------------------------------------------------------

SUITES: dict[str, dict[str, object]] = {
    "gcm": {},
    "cbc": {"ike_proposals": ("aes128-sha256-ecp256",), "esp_proposals": ("aes128-sha256",)},
    "frag": {"fragment_size": 576, "local_ts": tuple(f"10.{n}.0.0/16" for n in range(60)),
             "r_remote_ts": ("10.0.0.0/8",)},
}


@dataclass
class Target:
    """One side of a Wire under attack in one state; ``held`` waits to go to ``held_to`` ("conn" or "peer")."""

    name: str
    wire: Wire
    side: str
    keyed: bool
    held: list[bytes]
    held_to: str
    expect: str  # what finish() checks: established, answered, idle, closed, still-closed, child-rekeyed,
    # ike-rekeyed
    genuine: list[bytes] = field(default_factory=list)
    genuine_set: frozenset[bytes] = field(default_factory=frozenset)
    diverted: bool = False
    last_input: bytes = b""
    now: float = 0.0

    @property
    def conn(self) -> IkeConnection:
        return self.wire.i if self.side == "i" else self.wire.r

    @property
    def peer(self) -> IkeConnection:
        return self.wire.r if self.side == "i" else self.wire.i

    def __post_init__(self) -> None:
        self.genuine = [d for _, d in self.wire.log] + self.held
        self.genuine_set = frozenset(self.genuine)
        for side, conn in (("i", self.wire.i), ("r", self.wire.r)):  # what the genuine exchanges so far emitted
            self.wire.events[side] += list(iter(conn.next_event, None))  # (IkeSaKeysDerived), not the attack


def _send(w: Wire, src: IkeConnection, direction: str) -> list[bytes]:
    out = sent(src, w.now)
    w.log += [(direction, d) for d in out]
    return out


def _deliver(w: Wire, dst: IkeConnection, datagrams: list[bytes]) -> None:
    for d in datagrams:
        dst.receive_datagram(d, w.now)


def build(state: str, side: str, suite: str = "gcm", budget: MemoryBudget | None = None) -> Target:
    """A fresh pair with ``side`` ("i"/"r") in ``state``, the genuine next datagrams held back."""
    w = Wire(*configs(**SUITES[suite]), budget=budget or MemoryBudget())
    w.i.initiate(w.now)
    conn = w.i if side == "i" else w.r
    name = f"{'initiator' if side == 'i' else 'responder'}/{state}/{suite}"
    if state == "init":  # the initiator waits for the IKE_SA_INIT response, the responder for the request
        req = _send(w, w.i, "i>r")
        if side == "r":
            return Target(name, w, side, False, req, "conn", "established")
        _deliver(w, w.r, req)
        return Target(name, w, side, False, _send(w, w.r, "r>i"), "conn", "established")
    if state == "auth":  # keys on both sides; the IKE_AUTH request (or its response) held
        _deliver(w, w.r, _send(w, w.i, "i>r"))
        _deliver(w, w.i, _send(w, w.r, "r>i"))
        auth = _send(w, w.i, "i>r")
        if side == "r":
            return Target(name, w, side, True, auth, "conn", "established")
        _deliver(w, w.r, auth)
        return Target(name, w, side, True, _send(w, w.r, "r>i"), "conn", "established")
    w.pump()
    if w.i.state != IkeState.ESTABLISHED or w.r.state != IkeState.ESTABLISHED:
        raise RuntimeError(f"the handshake for {name} did not complete: {w.events}")
    if state == "established":
        return Target(name, w, side, True, [], "peer", "idle")
    if state == "liveness":  # the attacked side waits for the answer to its liveness check
        conn.check_liveness(w.now)
        return Target(name, w, side, True, _send(w, conn, "i>r" if side == "i" else "r>i"), "peer", "answered")
    if state == "deleting":
        conn.close(w.now)
        return Target(name, w, side, True, _send(w, conn, "i>r" if side == "i" else "r>i"), "peer", "closed")
    if state == "closed":
        conn.close(w.now)
        w.pump()
        return Target(name, w, side, True, [], "peer", "still-closed")
    first = next(iter(conn.children))
    if state == "child-rekey":  # the attacked side waits for the answer to its CREATE_CHILD_SA (REKEY_SA)
        conn.rekey_child(first, w.now)
        return Target(name, w, side, True, _send(w, conn, "i>r" if side == "i" else "r>i"), "peer", "child-rekeyed")
    if state == "child-request":  # the attacked side is about to get the peer's CREATE_CHILD_SA request
        peer = w.r if side == "i" else w.i
        peer.rekey_child(next(iter(peer.children)), w.now)
        return Target(name, w, side, True, _send(w, peer, "r>i" if side == "i" else "i>r"), "conn", "child-rekeyed")
    if state == "ike-rekey":  # the attacked side waits for the answer to its IKE rekey
        conn.rekey_ike(w.now)
        return Target(name, w, side, True, _send(w, conn, "i>r" if side == "i" else "r>i"), "peer", "ike-rekeyed")
    if state == "ike-retiring":  # rekeyed: the attacked side holds the new IKE SA and the old one's Delete is out
        out, back = ("i>r", "r>i") if side == "i" else ("r>i", "i>r")
        conn.rekey_ike(w.now)
        peer = w.r if side == "i" else w.i
        _deliver(w, peer, _send(w, conn, out))
        _deliver(w, conn, _send(w, peer, back))
        w.collect()
        if len(conn.retired) != 1:
            raise RuntimeError(f"{name}: the IKE rekey did not leave the old IKE SA retiring: {w.events}")
        return Target(name, w, side, True, _send(w, conn, out), "peer", "ike-rekeyed")
    raise ValueError(f"unknown state {state!r}")


STATES = ("init", "auth", "established", "liveness", "deleting", "closed", "child-rekey", "child-request",
          "ike-rekey", "ike-retiring")
TARGETS: tuple[tuple[str, str, str], ...] = tuple(
    (state, side, suite) for suite in SUITES for state in STATES for side in "ir"
    if not (suite == "frag" and state in ("init", "closed"))
)


# -- generators ------------------------------------------------------------------------------------------------

Generator = Callable[[random.Random, Target], bytes]
_EXCHANGES = (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA,
              ExchangeType.INFORMATIONAL)


def _expected(rnd: random.Random, t: Target) -> tuple[int, int, bool] | None:
    """(exchange, message id, response) of a message the attacked side expects or just saw, to get past the
    header checks: a held datagram for it, or the answer to one of its own requests."""
    own = "i>r" if t.side == "i" else "r>i"
    candidates = [(d, False) for d in t.held if t.held_to == "conn"]
    candidates += [(d, True) for direction, d in t.wire.log[-3:] if direction == own]  # answer ours
    candidates += [(d, True) for d in t.held if t.held_to == "peer"]
    candidates += [(d, False) for direction, d in t.wire.log[-3:] if direction != own]
    candidates = [(d, flip) for d, flip in candidates if len(d) >= 28]
    if not candidates:
        return None
    data, flip = rnd.choice(candidates)
    response = bool(data[19] & 0x20) != flip
    return data[18], int.from_bytes(data[20:24], "big"), response


def _mid(rnd: random.Random, t: Target) -> int:
    """A message id that matters: those of the genuine exchange so far, or anything."""
    r = rnd.random()
    if r < 0.85:
        return rnd.choice((0, 1, 2, 3))
    return rnd.choice((rnd.getrandbits(32), 0xFFFFFFFF, 4, 5))


def _flags(rnd: random.Random, t: Target, response: bool) -> int:
    peer_is_initiator = not t.conn.initiator
    i_flag = peer_is_initiator if rnd.random() < 0.9 else not peer_is_initiator
    flags = (0x08 if i_flag else 0) | (0x20 if response else 0)
    return flags | (0x10 if rnd.random() < 0.05 else 0)


def _spis(rnd: random.Random, t: Target) -> tuple[bytes, bytes]:
    spi_i, spi_r = t.wire.i.spi_i, t.wire.r.spi_r
    r = rnd.random()
    if r < 0.05:
        return rnd.randbytes(8), spi_r
    if r < 0.1:
        return spi_i, rnd.randbytes(8)
    if r < 0.25:
        return spi_i, bytes(8)
    return spi_i, spi_r


def random_bytes(rnd: random.Random, t: Target) -> bytes:
    return rnd.randbytes(rnd.choice((0, 1, 27, 28, 29, rnd.randint(0, 64), rnd.randint(0, 1500))))


def header_and_junk(rnd: random.Random, t: Target) -> bytes:
    """A plausible header (this SA's SPIs, a known exchange, an expected message id) and junk after it."""
    body = rnd.randbytes(rnd.choice((0, rnd.randint(0, 40), rnd.randint(0, 600))))
    spi_i, spi_r = _spis(rnd, t)
    expected = _expected(rnd, t) if rnd.random() < 0.5 else None
    exchange, mid, response = expected or (rnd.choice((*_EXCHANGES, rnd.randint(0, 255))), _mid(rnd, t),
                                           rnd.random() < 0.5)
    nxt = rnd.choice((0, 33, 34, 40, 41, 42, 46, 53, rnd.randint(0, 255)))
    length = 28 + len(body) if rnd.random() < 0.9 else rnd.getrandbits(32)
    return HEADER.pack(spi_i, spi_r, nxt, 0x20, exchange, _flags(rnd, t, response), mid, length) + body


def mutated(rnd: random.Random, t: Target) -> bytes:
    """A genuine datagram of this handshake with bytes flipped, set, cut, added or spliced (never unchanged)."""
    toward = "r>i" if t.side == "i" else "i>r"
    recent = [d for direction, d in t.wire.log if direction == toward][-2:]
    recent += t.held if t.held_to == "conn" else []
    data = bytearray(rnd.choice(recent if recent and rnd.random() < 0.6 else t.genuine))
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        if len(data) > 28 and rnd.random() < 0.7:
            pos = rnd.randrange(28, len(data))  # past the header: what only the ICV protects
        else:
            pos = rnd.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[pos] ^= 1 << rnd.randrange(8)
        elif op == 1 and data:
            data[pos] = rnd.randrange(256)
        elif op == 2:
            del data[rnd.randint(0, len(data)):]
        elif op == 3:
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 64))
        elif op == 4:
            other = rnd.choice(t.genuine)
            start = rnd.randrange(len(other))
            data[pos:pos + rnd.randint(0, 64)] = other[start:start + rnd.randint(1, 64)]
        elif op == 5 and len(data) >= 28:
            data[rnd.choice((16, 17, 18, 19, 20, 21, 22, 23))] = rnd.randrange(256)  # next payload .. message id
        elif op == 6 and len(data) >= 28:
            data[28 + rnd.randrange(max(1, len(data) - 28)):] = b""  # cut inside the payloads
    if len(data) >= 28 and rnd.random() < 0.85:
        data[24:28] = len(data).to_bytes(4, "big")  # a consistent length gets past the header check
    out = bytes(data)
    if out in t.genuine_set:
        out = out[:-1] + bytes((out[-1] ^ 1,)) if out else b"\x00"
    return out


def _payload(rnd: random.Random, t: Target) -> Payload:
    kind = rnd.randrange(12)
    if kind == 0:
        return DeletePayload(ProtocolId.IKE)
    if kind == 1:
        return DeletePayload(ProtocolId.ESP, [rnd.randbytes(4)])
    if kind == 2:
        notify = rnd.choice((NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.INVALID_SYNTAX,
                             NotifyType.AUTHENTICATION_FAILED, NotifyType.INVALID_KE_PAYLOAD, NotifyType.COOKIE,
                             NotifyType.NO_ADDITIONAL_SAS, NotifyType.REKEY_SA, NotifyType.TEMPORARY_FAILURE,
                             NotifyType.CHILD_SA_NOT_FOUND, rnd.randrange(65536)))
        data = {NotifyType.INVALID_KE_PAYLOAD: rnd.choice((19, 14, 31, 0)).to_bytes(2, "big"),
                NotifyType.COOKIE: rnd.randbytes(rnd.choice((0, 1, 16, 64, 65)))}.get(notify, rnd.randbytes(4))
        return NotifyPayload(notify, data=data)
    if kind == 3:
        return KePayload(rnd.choice((19, 14, 31, rnd.randrange(65536))), rnd.randbytes(rnd.choice((64, 63, 32, 0))))
    if kind == 4:
        return NoncePayload(rnd.randbytes(rnd.choice((0, 15, 16, 32, 256, 257))))
    if kind == 5:
        return IdiPayload(2, b"moon.strongswan.org")
    if kind == 6:
        return IdrPayload(2, b"sun.strongswan.org")
    if kind == 7:
        return AuthPayload(rnd.choice((2, 1, 14)), rnd.randbytes(32))
    if kind == 8:
        return TsiPayload([TrafficSelector.from_network("10.0.0.0/8")])
    if kind == 9:
        return VendorPayload(rnd.randbytes(rnd.randint(0, 32)))
    if kind == 10:
        return UnknownPayload(type_=rnd.choice((1, 2, 49, 50, 200)), data=rnd.randbytes(8),
                              critical=rnd.random() < 0.5)
    genuine_init = [d for d in t.genuine if len(d) > 18 and d[18] == ExchangeType.IKE_SA_INIT]
    if genuine_init:  # an SA, KE, Nonce or notify taken from the genuine IKE_SA_INIT messages
        payloads = decode(rnd.choice(genuine_init)).payloads
        if payloads:
            return rnd.choice(payloads)
    return VendorPayload(b"x")


def forged(rnd: random.Random, t: Target) -> bytes:
    """A well-formed message with this SA's SPIs and an expected message id: clear payloads, then no SK payload,
    a garbled one, or a garbled SKF (any fragment number and total)."""
    spi_i, spi_r = _spis(rnd, t)
    expected = _expected(rnd, t) if rnd.random() < 0.7 else None
    if expected is not None:
        exchange, mid, response = expected
    else:
        exchange, mid, response = rnd.choice(_EXCHANGES), _mid(rnd, t), rnd.random() < 0.5
    payloads = [_payload(rnd, t) for _ in range(rnd.choice((0, 1, 1, 2, 3, 5)))]
    tail = rnd.random()
    if tail < 0.3:
        payloads.append(EncryptedPayload(first_payload=rnd.choice((0, 35, 36, 39, 41, 42, 44)),
                                         ciphertext=rnd.randbytes(rnd.choice((0, 8, 16, 48, rnd.randint(0, 600))))))
    elif tail < 0.6:
        total = rnd.choice((1, 2, 64, 65, rnd.randint(1, 70)))
        payloads.append(EncryptedFragment(rnd.randint(0, total + 1), total, rnd.choice((0, 35, 41)),
                                          ciphertext=rnd.randbytes(rnd.choice((0, 16, 48, rnd.randint(0, 1200))))))
    flags = _flags(rnd, t, response)
    msg = Message(spi_i, spi_r, exchange, mid, payloads, initiator=bool(flags & 0x08), response=response,
                  higher_version=bool(flags & 0x10))
    return encode(msg)


GENERATORS: dict[str, Generator] = {
    "random": random_bytes,
    "header": header_and_junk,
    "mutated": mutated,
    "forged": forged,
}
WEIGHTS = {"random": 1, "header": 2, "mutated": 4, "forged": 4}


def pick(rnd: random.Random) -> tuple[str, Generator]:
    name = rnd.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    return name, GENERATORS[name]


def authentic_fragments(rnd: random.Random, t: Target, count: int) -> list[bytes]:
    """SKF fragments under the peer's own keys: a hostile (or broken) peer that has the keys."""
    crypto = t.peer.neg.crypto
    if not isinstance(crypto, IkeSaCrypto):
        return []
    peer = t.peer
    out = []
    steady = rnd.random() < 0.5  # one message's fragments (fills the per-SA bound), or anything at all
    total, exchange, mid, response = 64, rnd.choice(_EXCHANGES[1:]), rnd.choice((0, 1, 2, 3)), rnd.random() < 0.3
    for _ in range(count):
        if not steady:
            total = rnd.choice((2, 16, 64, rnd.randint(1, 64)))
            exchange, mid, response = rnd.choice(_EXCHANGES[1:]), rnd.choice((0, 1, 2, 3)), rnd.random() < 0.3
        frag = EncryptedFragment(rnd.randint(1, total), total, rnd.choice((0, 35, 41)),
                                 plaintext=rnd.randbytes(rnd.choice((0, 100, 1400, rnd.randint(0, 4000)))))
        msg = Message(t.wire.i.spi_i, t.wire.r.spi_r, exchange, mid, [frag], initiator=peer.initiator,
                      response=response)
        out.append(encode(msg, crypto))
    return out


# -- properties ------------------------------------------------------------------------------------------------


def snapshot(conn: IkeConnection, *, sent: bool = True) -> tuple[object, ...]:
    """What input that is not authentic must not change: state, timer, SPIs, non-drop counters, memory."""
    counters = {k: v for k, v in dataclasses.asdict(conn.counters).items()
                if not k.startswith("dropped_") and (sent or k != "sent")}
    children = tuple(sorted((k, c.state) for k, c in conn.children.items()))
    return (conn.state, conn.get_timer(), conn.spi_i, conn.spi_r, counters, conn.stored_fragment_bytes,
            conn.cached_response_bytes, conn.use_natt, children, len(conn.retired))


def check_bounds(t: Target) -> None:
    conn, budget = t.conn, t.conn.budget
    require(conn.stored_fragment_bytes <= budget.fragment_bytes_per_sa,
            f"{conn.stored_fragment_bytes} fragment bytes stored, over {budget.fragment_bytes_per_sa}")
    require(conn.cached_response_bytes <= budget.response_bytes_per_sa,
            f"{conn.cached_response_bytes} cached response bytes, over {budget.response_bytes_per_sa}")
    require(budget.stored_fragment_bytes <= budget.fragment_bytes_total, "fragment total over the budget")
    require(budget.cached_response_bytes <= budget.response_bytes_total, "cached response total over the budget")


def _is_refusal(data: bytes) -> bool:
    msg = decode(data)
    return (msg.exchange == ExchangeType.IKE_SA_INIT and msg.response and msg.spi_r == bytes(8)
            and len(msg.payloads) == 1 and isinstance(msg.payloads[0], NotifyPayload))


def attack(t: Target, inputs: Iterable[bytes]) -> int:
    """Feed hostile datagrams to the target and check the properties; returns how many were fed."""
    conn = t.conn
    before = snapshot(conn, sent=t.keyed)
    timer = conn.get_timer()
    fed = 0
    for data in inputs:
        t.last_input = data
        dropped, received = conn.counters.total_dropped(), conn.counters.received
        conn.receive_datagram(data, t.now)
        conn.handle_timer(t.now)  # not yet due: must change nothing
        fed += 1
        took = conn.counters.received - received
        require(conn.counters.total_dropped() - dropped + took == 1, "a datagram neither dropped nor taken", data)
        if t.keyed:
            require(took == 0, f"a forged datagram was taken in {t.name}", data)
        elif took:
            t.diverted = True  # a valid IKE_SA_INIT message: RFC 7296 says to act on it
        check_bounds(t)
    events = list(iter(conn.next_event, None))
    out = sent(conn, t.now)
    if t.keyed:
        bad = [e for e in events if not isinstance(e, DatagramDropped)]
        require(not bad, f"forged input made events {bad} in {t.name}", t.last_input)
        require(not out, f"forged input made {t.name} send {len(out)} datagrams", t.last_input)
        require(snapshot(conn) == before, f"forged input changed {t.name}: {before} -> {snapshot(conn)}",
                t.last_input)
    elif not t.diverted:
        require(all(isinstance(e, DatagramDropped) for e in events), f"events {events} from dropped input")
        require(all(_is_refusal(d) for d in out), f"{t.name} answered dropped input with more than a refusal")
        require(conn.get_timer() == timer and snapshot(conn, sent=False) == before,
                f"dropped input changed {t.name}: {before} -> {snapshot(conn, sent=False)}", t.last_input)
    return fed


def finish(t: Target, *, retransmit: bool = False) -> None:
    """Deliver the held genuine datagrams (after a retransmission of ours, if asked): the next step must work."""
    if t.diverted:
        return
    w, conn, peer = t.wire, t.conn, t.peer
    if retransmit and (due := conn.get_timer()) is not None:
        w.now = t.now = due
        conn.handle_timer(due)  # the request again: the peer answers it (from its cache if it already did)
    for d in t.held:
        (conn if t.held_to == "conn" else peer).receive_datagram(d, w.now)
    w.pump()
    if t.expect == "established":
        require(w.i.state == w.r.state == IkeState.ESTABLISHED, f"{t.name}: no IKE SA after forged input "
                f"({w.i.state}/{w.r.state}); events {w.events}")
    elif t.expect == "answered":
        require(conn.state == IkeState.ESTABLISHED and conn.get_timer() is None,
                f"{t.name}: the liveness check was not answered ({conn.state}, timer {conn.get_timer()})")
    elif t.expect == "closed":
        require(w.i.state == w.r.state == IkeState.CLOSED, f"{t.name}: the Delete did not close both sides")
    elif t.expect == "idle":
        peer.check_liveness(w.now)
        conn.check_liveness(w.now)
        w.pump()
        require(conn.state == peer.state == IkeState.ESTABLISHED and conn.get_timer() is None
                and peer.get_timer() is None, f"{t.name}: liveness checks both ways not answered")
    elif t.expect == "child-rekeyed":
        for c, side in ((w.i, "i"), (w.r, "r")):
            require(c.state == IkeState.ESTABLISHED and len(c.child_sas()) == 1 and c.get_timer() is None,
                    f"{t.name}: the Child SA rekey did not complete on {side} ({c.state}, {c.children})")
            require(any(isinstance(e, ChildSaEstablished) and e.rekeyed for e in w.events[side]),
                    f"{t.name}: no rekeyed Child SA on {side}: {w.events[side]}")
    elif t.expect == "ike-rekeyed":
        for c, side in ((w.i, "i"), (w.r, "r")):
            require(c.state == IkeState.ESTABLISHED and not c.retired and c.get_timer() is None
                    and any(isinstance(e, IkeSaRekeyed) for e in w.events[side]),
                    f"{t.name}: the IKE rekey did not complete on {side} ({c.state}, {c.retired})")
    elif t.expect == "still-closed":
        require(conn.state == IkeState.CLOSED, f"{t.name}: left CLOSED ({conn.state})")

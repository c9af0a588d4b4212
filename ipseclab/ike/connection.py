"""One IKE connection, sans-I/O (in the manner of aioquic's QuicConnection): bytes and ``now`` in, bytes and events
out.

A driver feeds it what arrives on UDP 500/4500 (without the non-ESP marker) and the time::

    conn = IkeConnection(config, initiator=True)
    conn.initiate(now)
    for d in conn.datagrams_to_send(now): sock_for(d.natt).sendto(d.payload(), d.addr)
    conn.receive_datagram(data, now, source, natt=arrived_on_4500)
    while (event := conn.next_event()) is not None: ...
    conn.handle_timer(now) when now >= conn.get_timer()

Nothing here reads a clock, opens a socket or raises out of ``receive_datagram``.

The shape: a connection (config, the peer's address, the Child SAs) holds its current IKE SA (``ike.sa.IkeSa``:
SPIs, keys, message ids, state) and, during an IKE rekey, the old ones until they are deleted (RFC 7296 2.18).
Child SAs (``ike.child.ChildSa``) belong to the connection, so an IKE rekey moves them by leaving them alone.
``create_child``, ``rekey_child``, ``delete_child`` and ``rekey_ike`` queue requests; each IKE SA sends as many at
once as the peer's window allows (2.3: 1 unless the peer announced SET_WINDOW_SIZE; ``IkeSa``).  The tester hooks
``on_send`` and ``on_receive`` see every message out and in, decoded (``_hooked``).  ``get_timer()`` is the
earliest of every deadline the engine owns (retransmissions on every IKE SA, NAT keepalives, dead peer detection,
Child SA and IKE SA lifetimes), and every datagram says where it goes (``Datagram``), so a driver never reads the
engine's state or a datagram's bytes.

The rule for what arrives (RFC 7296 2.21 and 5) is in ``ike.receive``: input that is not authentic is dropped
and counted, never acted on.
"""

from __future__ import annotations

import copy
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..crypto.random import RandomSource, random_bytes
from ..errors import LocalProtocolError
from ..packets.enums import ExchangeType, NotifyType, enum_name
from ..packets.fragment import fragment
from ..packets.message import EncryptedPayload, Message, encode
from ..packets.natt import KEEPALIVE, NATT_PORT, NON_ESP_MARKER
from ..packets.payloads import NotifyPayload, Payload
from .auth.credentials import check_role
from .child import LIVE, ChildSa, ChildState
from .config import IkeConfig
from .events import DatagramDropped, DeadPeer, Event, IkeSaFailed
from .limits import DEFAULT_BUDGET, MemoryBudget
from .sa import Cached, IkeSa, Negotiation, Outstanding, Queued
from .state import FINAL, IkeState, Role, Trigger

MAX_QUEUED_REQUESTS = 4  # our own requests waiting for the window (liveness, Delete, rekeys, extra Child SAs)
MAX_WINDOW = 64  # the largest window we keep state for, or use of the peer's (RFC 7296 2.3)
_WINDOW = struct.Struct("!I")

SendHook = Callable[[Message], "Message | None"]
ReceiveHook = Callable[[Message], None]


class Datagram(NamedTuple):
    """One datagram for the driver to send, and where (aioquic's ``datagrams_to_send`` gives the same pair).

    ``addr`` is None only when the engine has never been told where the peer is (a test wiring two engines
    together without addresses).  ``natt``: send it from our UDP port 4500; ``payload()`` then puts the
    non-ESP marker in front of an IKE message (RFC 3948 2.2), not in front of a NAT keepalive.
    """

    data: bytes
    addr: tuple[str, int] | None
    natt: bool = False
    keepalive: bool = False

    def payload(self) -> bytes:
        """The UDP payload to send."""
        return NON_ESP_MARKER + self.data if self.natt and not self.keepalive else self.data


@dataclass(slots=True)
class EngineCounters:
    """What the engine took, dropped or repeated (``ip -s``-style visibility for tests and users).

    ``received`` counts the datagrams the engine took (processed, stored as a fragment, or answered from the
    cache); a dropped datagram counts in exactly one ``dropped_*`` counter instead.  So ``received +
    total_dropped()`` is every datagram handed in, and input that is not authentic moves drop counters only.
    """

    received: int = 0
    sent: int = 0
    retransmits: int = 0
    duplicate_requests: int = 0
    dropped_malformed: int = 0  # does not parse
    dropped_integrity: int = 0  # the ICV (or AEAD tag) of its SK/SKF payload does not verify
    dropped_unprotected: int = 0  # no SK/SKF payload although the IKE SA has keys
    dropped_unexpected: int = 0  # not for this IKE SA now: SPIs, I flag, message id, exchange or state
    dropped_unacceptable: int = 0  # an IKE_SA_INIT message that parses but cannot be taken (answered or not)
    dropped_over_limit: int = 0  # an authentic fragment over the MemoryBudget

    def total_dropped(self) -> int:
        return (self.dropped_malformed + self.dropped_integrity + self.dropped_unprotected
                + self.dropped_unexpected + self.dropped_unacceptable + self.dropped_over_limit)


@dataclass(slots=True, weakref_slot=True)
class IkeConnection:
    """One side's connection: its current IKE SA (``ike``), old ones being deleted, and its Child SAs.

    ``initiator`` says who started the connection (and its first IKE SA); after an IKE rekey the current IKE
    SA's own ``initiator`` flag may differ (RFC 7296 2.18).  ``budget`` bounds the fragments and cached
    responses each IKE SA keeps, alone and together with the others sharing it (``ike.limits``).
    """

    config: IkeConfig
    initiator: bool
    rng: RandomSource = random_bytes
    budget: MemoryBudget = field(default_factory=lambda: DEFAULT_BUDGET)
    counters: EngineCounters = field(default_factory=EngineCounters)
    ike: IkeSa = field(init=False)
    retired: list[IkeSa] = field(default_factory=list)  # rekeyed IKE SAs still finishing their Delete
    children: dict[int, ChildSa] = field(default_factory=dict)  # by our inbound SPI
    peer_id: str = ""  # the peer's authenticated identity
    # where the last datagram the engine took came from (driver-supplied); NAT detection reads it
    source: tuple[str, int] | None = None
    source_natt: bool = False  # ... and whether it came on our UDP 4500
    peer: tuple[str, int] | None = None  # where our requests go
    peer_natt: bool = False  # ``peer`` is the peer's NAT-T port (learned from a datagram on 4500)
    last_heard: float = 0.0  # when the peer last sent something authentic (dead peer detection)
    next_keepalive: float | None = None
    half_open_until: float | None = None  # a responder's half-open IKE SA expires then (``half_open_timeout``)
    ike_rekey_at: float | None = None
    ike_expire_at: float | None = None
    # tester hooks (see ``_hooked``): every message of ours before it is protected, every message taken
    on_send: SendHook | None = None
    on_receive: ReceiveHook | None = None
    _events: deque[Event] = field(default_factory=deque)
    _queue: list[Datagram] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_role(*self.config.authenticators, self.initiator)  # EAP: client initiates, server responds
        self.ike = IkeSa(self.initiator, self.budget)
        if self.initiator:
            self.ike.spi_i = self.rng(8)
        self.peer = self.config.remote_endpoint

    # -- what the current IKE SA is (read-only views kept for drivers and tests) --------------------------

    @property
    def state(self) -> IkeState:
        return self.ike.state

    @property
    def spi_i(self) -> bytes:
        return self.ike.spi_i

    @property
    def spi_r(self) -> bytes:
        return self.ike.spi_r

    @property
    def neg(self) -> Negotiation:
        return self.ike.neg

    @property
    def role(self) -> Role:
        return self.ike.role

    @property
    def use_natt(self) -> bool:
        """Whether IKE now goes over UDP 4500 with the non-ESP marker (a NAT was detected)."""
        return self.ike.neg.nat_local or self.ike.neg.nat_remote

    @property
    def stored_fragment_bytes(self) -> int:
        """Bytes of authentic fragments held for messages not yet complete (at most the budget's per-SA bound)."""
        return sum(sa.account.fragment_bytes for sa in self.ike_sas())

    @property
    def cached_response_bytes(self) -> int:
        """Bytes of the responses kept for retransmitted requests (at most the budget's per-SA bound each)."""
        return sum(sa.account.response_bytes for sa in self.ike_sas())

    def ike_sas(self) -> list[IkeSa]:
        return [self.ike, *self.retired]

    def child_sas(self) -> list[ChildSa]:
        """The Child SAs that carry traffic now (installed, or being rekeyed)."""
        return [c for c in self.children.values() if c.state in LIVE]

    # -- the driver's API --------------------------------------------------------------------------

    def initiate(self, now: float) -> None:
        """Start the IKE_SA_INIT exchange (initiator only)."""
        if not self.initiator:
            raise LocalProtocolError("a responder does not initiate: create the IkeConnection with initiator=True")
        from .exchanges import ike_sa_init

        self.step(Trigger.SEND_INIT)
        ike_sa_init.start(self, now)

    def close(self, now: float) -> None:
        """Delete the IKE SA (an INFORMATIONAL request with a Delete payload); a no-op unless established.

        The Delete waits for a request of ours still in flight (RFC 7296 2.3); the state moves to DELETING
        when it goes out.
        """
        if self.state != IkeState.ESTABLISHED or any(q.trigger == Trigger.SEND_DELETE for q in self.ike.requests):
            return
        from .exchanges import informational

        informational.send_delete(self, self.ike, now)

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 1.4, dead peer detection); no answer fails the SA.

        A no-op while a request of ours is in flight or waiting: its answer says as much about the peer.
        """
        if self.state != IkeState.ESTABLISHED or self.ike.busy():
            return
        from .exchanges import informational

        informational.send_liveness(self, now)

    def create_child(self, now: float, *, local_ts: tuple[str, ...] | None = None,
                     remote_ts: tuple[str, ...] | None = None) -> int:
        """Ask for an additional Child SA (CREATE_CHILD_SA, RFC 7296 1.3.1); returns its inbound SPI.

        Selectors default to the configured ones; the proposals' KE transform, if any, makes it use PFS.
        """
        from .exchanges import create_child_sa

        self._require_established("create a Child SA")
        return create_child_sa.start_child(self, now, local_ts=local_ts, remote_ts=remote_ts)

    def rekey_child(self, spi_in: int, now: float) -> int:
        """Rekey the Child SA with inbound SPI ``spi_in`` (REKEY_SA, 1.3.3); returns the new pair's inbound SPI.

        The old pair keeps carrying traffic until the new one is agreed, then we delete it.
        """
        from .exchanges import create_child_sa

        self._require_established("rekey a Child SA")
        child = self._child(spi_in, ChildState.INSTALLED)
        return create_child_sa.start_child(self, now, old=child)

    def delete_child(self, spi_in: int, now: float) -> None:
        """Delete the Child SA with inbound SPI ``spi_in`` (INFORMATIONAL with a Delete payload, 1.4.1)."""
        from .exchanges import informational

        self._require_established("delete a Child SA")
        child = self.children.get(spi_in)
        if child is None or child.state not in LIVE:
            raise LocalProtocolError(f"no Child SA with inbound SPI {spi_in:#010x} to delete")
        informational.send_child_delete(self, [child], now)

    def child_usage(self, spi_in: int, octets: int, packets: int, now: float) -> None:
        """What the data plane has carried on a Child SA so far (the driver's count: the endpoint gives the busier
        direction's, as kernels count each SA of the pair); past
        ``child_rekey_bytes``/``_packets`` it is rekeyed, past ``child_life_bytes``/``_packets`` deleted.

        Unknown or finished Child SAs are ignored: the data plane may report an SA the engine has just deleted.
        """
        from . import lifecycle

        child = self.children.get(spi_in)
        if child is not None and self.state == IkeState.ESTABLISHED:
            lifecycle.on_usage(self, child, octets, packets, now)

    def rekey_ike(self, now: float) -> None:
        """Rekey the IKE SA (CREATE_CHILD_SA with an IKE proposal, RFC 7296 1.3.2 and 2.18).

        The new IKE SA takes over the Child SAs and our queued requests; we then delete the old one.
        """
        from .exchanges import rekey_ike

        self._require_established("rekey the IKE SA")
        rekey_ike.start(self, now)

    def receive_datagram(self, data: bytes, now: float, source: tuple[str, int] | None = None, *,
                         natt: bool = False) -> None:
        """Process one datagram (IKE header first: the driver strips the non-ESP marker on port 4500).

        ``source`` (address, port) is where it came from, ``natt`` whether it came on our UDP port 4500: NAT
        detection compares the address with what the peer says, and our responses go back the same way.
        Both are kept only if the datagram is taken.
        """
        from .receive import receive

        dropped = self.counters.total_dropped()
        previous = self.source, self.source_natt
        if source is not None:
            self.source, self.source_natt = source, natt
        receive(self, bytes(data), now)
        if self.counters.total_dropped() == dropped:
            self.counters.received += 1
            self.last_heard = now
            if source is not None:
                self.peer, self.peer_natt = source, natt
        else:
            self.source, self.source_natt = previous

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything queued for the peer since the last call, in order, each with where it goes."""
        out, self._queue = self._queue, []
        self.counters.sent += len(out)
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline the engine owns (None: nothing is scheduled); ``handle_timer`` acts on it."""
        from . import lifecycle

        return lifecycle.next_deadline(self)

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed: retransmissions, keepalives, DPD, lifetimes."""
        for sa in self.ike_sas():
            for out in list(sa.in_flight.values()):
                if sa.state not in FINAL:
                    self._retransmit(sa, out, now)
        from . import lifecycle

        lifecycle.on_timer(self, now)

    def _retransmit(self, sa: IkeSa, out: Outstanding, now: float) -> None:
        """Retransmit one of ``sa``'s requests in flight, or give up after ``retransmit_tries`` sends."""
        if now < out.deadline:
            return
        cfg = self.config
        if out.tries >= cfg.retransmit_tries:
            sa.in_flight.clear()
            waited = (f"no answer to our {enum_name(ExchangeType, out.exchange)} request (message id "
                      f"{out.message_id}) after {out.tries} transmissions")
            if sa is not self.ike:  # an old IKE SA whose Delete went unanswered: forget it
                sa.step(Trigger.FAIL)
                self.retired.remove(sa)
                return
            refusal = sa.neg.init_refusal if out.exchange == ExchangeType.IKE_SA_INIT else None
            if refusal is not None:  # RFC 7296 2.21.1: the unauthenticated refusal counts only now
                self.fail(f"{refusal[0]}; no acceptable answer after {out.tries} transmissions", refusal[1],
                          remote=True)
            else:
                if self.state == IkeState.ESTABLISHED:  # RFC 7296 2.4: the peer is gone
                    self.emit(DeadPeer(waited))
                self.fail(waited, 0)
            return
        self._queue.extend(self._datagrams(out.datagrams, response=False))
        self.counters.retransmits += 1
        out.deadline = now + cfg.retransmit_timeout * cfg.retransmit_base ** out.tries
        out.tries += 1

    # -- used by the exchange modules --------------------------------------------------------------

    def require_window_room(self) -> None:
        """LocalProtocolError if our queue of requests for the current IKE SA is full (checked before a change)."""
        if len(self.ike.requests) >= MAX_QUEUED_REQUESTS:
            raise LocalProtocolError(f"{MAX_QUEUED_REQUESTS} requests already wait for the peer's answers")

    def _require_established(self, what: str) -> None:
        if self.state != IkeState.ESTABLISHED:
            raise LocalProtocolError(f"cannot {what}: the IKE SA is {self.state}")

    def _child(self, spi_in: int, state: ChildState) -> ChildSa:
        child = self.children.get(spi_in)
        if child is None or child.state != state:
            raise LocalProtocolError(f"no {state} Child SA with inbound SPI {spi_in:#010x}"
                                     + (f" (it is {child.state})" if child is not None else ""))
        return child

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def drop(self, reason: str, kind: str, notify: int = 0) -> None:
        name = f"dropped_{kind}"
        setattr(self.counters, name, getattr(self.counters, name) + 1)
        self.emit(DatagramDropped(reason, kind, notify))

    def fail(self, reason: str, notify: int, remote: bool = False) -> None:
        """The connection is over: its IKE SA fails, old ones are forgotten, nothing is retransmitted."""
        if self.state not in FINAL:
            self.step(Trigger.FAIL)
            self.ike.in_flight.clear()
            self.retired.clear()
            self.emit(IkeSaFailed(reason, notify, remote))

    def step(self, trigger: Trigger) -> None:
        """Move the current IKE SA's state on (see state.TRANSITIONS)."""
        self.ike.step(trigger)

    def observe(self, msg: Message) -> None:
        """Show a message the engine takes (decoded, decrypted, reassembled) to the ``on_receive`` hook."""
        if self.on_receive is not None:
            self.on_receive(msg)

    def _hooked(self, msg: Message) -> Message | None:
        """The tester hook on the way out: ``on_send`` gets a copy of each message of ours before it is encoded
        and protected (the SK payload's inner payloads in ``msg.encrypted.payloads``) and returns the message to
        send, changed at will (payloads dropped, added or altered, another message id), or None to send nothing.

        It runs once per message, not per retransmission (those repeat the datagrams it gave), and the engine's
        own state is what it meant to send: a changed message id leaves our request waiting under its own id,
        a changed offer is still checked against the original.  A copy is handed over, so the engine's objects
        are never changed behind its back.
        """
        if self.on_send is None:
            return msg
        return self.on_send(copy.deepcopy(msg))

    def _encode(self, sa: IkeSa, msg: Message) -> list[bytes]:
        """Datagrams for ``msg``: one, or RFC 7383 fragments when both sides support them and it is too long."""
        if self.on_send is not None:
            hooked = self._hooked(msg)
            if hooked is None:
                return []
            msg = hooked
        crypto = sa.neg.crypto
        if crypto is None or msg.encrypted is None:
            return [encode(msg, rng=self.rng)]
        data = encode(msg, crypto, self.rng)
        size = self.config.fragment_size
        if sa.neg.peer_fragmentation and self.config.fragmentation and len(data) > size:
            return fragment(msg, crypto, size, self.rng)
        return [data]

    def _datagrams(self, data: list[bytes], *, response: bool) -> list[Datagram]:
        """Where datagrams go (RFC 7296 2.23): a response the way its request came; a request to the peer,
        on UDP 4500 once a NAT was detected (or once the peer moved there)."""
        if response:
            return [Datagram(d, self.source, self.source_natt) for d in data]
        natt = self.use_natt or self.peer_natt
        to = self.peer
        if to is not None and natt and not self.peer_natt:
            to = (to[0], NATT_PORT)
        return [Datagram(d, to, natt) for d in data]

    def send_init_request(self, payloads: list[Payload], now: float) -> bytes:
        """Send our IKE_SA_INIT request (message id 0, in the clear), replacing any earlier one; returns it."""
        sa = self.ike
        datagrams = self._encode(sa, sa.message(ExchangeType.IKE_SA_INIT, payloads, response=False, message_id=0))
        data = datagrams[0] if datagrams else b""  # nothing when the on_send hook dropped it
        sa.next_mid = 1
        self._queue.extend(self._datagrams(datagrams, response=False))
        sa.in_flight = {0: Outstanding(0, ExchangeType.IKE_SA_INIT, datagrams, now + self.config.retransmit_timeout)}
        return data

    def send_request(self, exchange: int, payloads: list[Payload], now: float, *,
                     trigger: Trigger | None = None, context: Any = None, sa: IkeSa | None = None) -> None:
        """Queue an encrypted request on ``sa`` (the current IKE SA by default); it goes out at once unless one of
        ours is in flight there (RFC 7296 2.3).

        ``trigger`` is the IKE SA's state step to take when it goes out (its Delete: SEND_DELETE); ``context``
        is handed to the exchange module with the answer.
        """
        sa = sa or self.ike
        if sa.state in FINAL:
            raise LocalProtocolError(f"no request can be sent: the IKE SA is {sa.state}")
        if len(sa.requests) >= MAX_QUEUED_REQUESTS:
            raise LocalProtocolError(f"{MAX_QUEUED_REQUESTS} requests already wait for the peer's answers")
        if exchange == ExchangeType.IKE_AUTH:
            payloads = self._announce_window(sa, payloads)
        sa.requests.append(Queued(exchange, payloads, trigger, context))
        self.send_next(sa, now)

    def _announce_window(self, sa: IkeSa, payloads: list[Payload]) -> list[Payload]:
        """IKE_AUTH carries our SET_WINDOW_SIZE when ``window_size`` is over 1 (RFC 7296 2.3); from then on we
        take that many of the peer's requests at once.  Not on an error answer: that SA is not going anywhere."""
        size = self.config.window_size
        if size <= 1 or any(isinstance(p, NotifyPayload) and p.is_error for p in payloads):
            return payloads
        sa.window = size
        return [*payloads, NotifyPayload(NotifyType.SET_WINDOW_SIZE, data=_WINDOW.pack(size))]

    def announce_window(self, sa: IkeSa, now: float) -> None:
        """An INFORMATIONAL with our SET_WINDOW_SIZE on ``sa``: a rekeyed IKE SA starts at 1 again (2.3)."""
        if self.config.window_size > 1:
            self.send_request(ExchangeType.INFORMATIONAL, self._announce_window(sa, []), now, sa=sa)

    def peer_announced(self, sa: IkeSa, msg: Message) -> None:
        """Take the peer's SET_WINDOW_SIZE from an authentic message: the window only grows (2.3: there is no
        way to shrink it), up to MAX_WINDOW; a malformed one (not 4 bytes, or 0) is ignored."""
        for p in msg.all_payloads():
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.SET_WINDOW_SIZE and len(p.data) == 4:
                size = min(_WINDOW.unpack(p.data)[0], MAX_WINDOW)
                if size > sa.peer_window:
                    sa.peer_window = size

    def send_next(self, sa: IkeSa, now: float) -> None:
        """Send waiting requests, in order, while the peer's window has room (RFC 7296 2.3).

        Nothing goes out after our Delete of the IKE SA: it is the last request of that SA.
        """
        while sa.requests and sa.state not in FINAL and sa.state != IkeState.DELETING and sa.window_open():
            q = sa.requests[0]
            if q.trigger is not None and sa.in_flight:
                return  # the Delete waits for the answers to everything before it
            sa.requests.popleft()
            if q.trigger is not None:
                sa.step(q.trigger)
            mid = sa.next_mid
            datagrams = self._encode(sa, sa.message(q.exchange, [EncryptedPayload(payloads=q.payloads)],
                                                    response=False, message_id=mid))
            sa.next_mid = mid + 1
            self._queue.extend(self._datagrams(datagrams, response=False))
            sa.in_flight[mid] = Outstanding(mid, q.exchange, datagrams, now + self.config.retransmit_timeout,
                                            context=q.context)

    def complete_request(self) -> None:
        """The current IKE SA's IKE_SA_INIT request has its answer (once the response is checked)."""
        self.ike.in_flight.pop(0, None)

    def send_response(self, exchange: int, payloads: list[Payload], message_id: int, *,
                      encrypted: bool = True, sa: IkeSa | None = None) -> bytes:
        """Queue a response and keep it for a retransmitted request; returns the first datagram.

        A response over the budget's bound is sent but not kept: a retransmission of its request is dropped.
        """
        sa = sa or self.ike
        if exchange == ExchangeType.IKE_AUTH:
            payloads = self._announce_window(sa, payloads)
        if encrypted:
            payloads = [EncryptedPayload(payloads=payloads)]
        datagrams = self._encode(sa, sa.message(exchange, payloads, response=True, message_id=message_id))
        self._queue.extend(self._datagrams(datagrams, response=True))
        size = sum(len(d) for d in datagrams)
        responses = sa.responses
        if sa.window == 1:
            responses.clear()  # the common case: only the last response is kept
        held = sum(len(d) for c in responses.values() for d in c.datagrams)
        if sa.account.allows_response(held + size):
            responses[message_id] = Cached(message_id, exchange, datagrams)
        sa.mark_answered(message_id)
        sa.account.set_response(sum(len(d) for c in responses.values() for d in c.datagrams))
        return datagrams[0] if datagrams else b""

    def resend_response(self, cached: Cached) -> None:
        """Our cached response again, for a retransmitted request (RFC 7296 2.1), back the way it came."""
        self._queue.extend(self._datagrams(cached.datagrams, response=True))

    def notify_only_response(self, exchange: int, message_id: int, notify: int, data: bytes = b"", *,
                             sa: IkeSa | None = None) -> None:
        """An error response that carries one notify, inside the SK payload."""
        self.send_response(exchange, [NotifyPayload(notify, data=data)], message_id, sa=sa)

    def refuse_init(self, request: Message, notify: int, data: bytes = b"") -> None:
        """Answer an IKE_SA_INIT request we cannot take with one notify, keeping no state (RFC 7296 2.21.1).

        The answer takes its SPIs from the request (responder SPI zero) and is not cached: the SA is untouched.
        """
        reply = self._hooked(Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, request.message_id,
                                     [NotifyPayload(notify, data=data)], initiator=False, response=True))
        if reply is not None:
            self._queue.extend(self._datagrams([encode(reply, rng=self.rng)], response=True))

    def keepalive(self) -> None:
        """A NAT keepalive (RFC 3948 4) to the peer's NAT-T port."""
        if self.peer is not None:
            to = self.peer if self.peer_natt else (self.peer[0], NATT_PORT)
            self._queue.append(Datagram(KEEPALIVE, to, natt=True, keepalive=True))


"""One IKE SA, sans-I/O (in the manner of aioquic's QuicConnection): bytes and ``now`` in, bytes and events out.

A driver feeds it what arrives on UDP 500/4500 (without the non-ESP marker) and the time::

    conn = IkeConnection(config, initiator=True)
    conn.initiate(now)
    for datagram in conn.datagrams_to_send(now): sock.send(datagram)
    conn.receive_datagram(data, now, source)
    while (event := conn.next_event()) is not None: ...
    conn.handle_timer(now) when now >= conn.get_timer()

Nothing here reads a clock, opens a socket or raises out of ``receive_datagram``.

The rule for what arrives (RFC 7296 2.21 and 5): before the IKE SA is authenticated, and for anything that
fails integrity afterwards, a datagram is dropped and counted (``counters``, a ``DatagramDropped`` event),
never acted on.  ``receive_datagram`` therefore checks before it changes anything, in this order: the header
parses; the I flag names the peer (RFC 7296 3.1: our own message reflected back decrypts with our own keys);
the SPIs, message id, exchange and state are ones we expect; once keys exist the message carries an SK or
SKF payload (only IKE_SA_INIT and its retransmissions travel in the clear) and its ICV verifies.  Only then
is a response matched to our outstanding request, a retransmitted request answered from the cache (2.1), or
a fragment stored (RFC 7383, within the ``MemoryBudget``).  An IKE_SA_INIT message cannot be authenticated:
its exchange module checks all of it before it commits anything, and a response it cannot take leaves the
initiator waiting for a valid one until the retransmissions give up (2.21.1).

Requests we send are retransmitted from ``handle_timer`` (2.1) and go out one at a time (2.3, window size 1):
a request asked for while another is in flight waits in a short queue.  The exchanges live in
``ike/exchanges``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from ..crypto import KeyExchange
from ..crypto.keys import IkeSaKeys, IkeSuite
from ..crypto.random import RandomSource, random_bytes
from ..errors import DecodeError, IntegrityError, IpsecLabError, LocalProtocolError, ProtocolError
from ..packets.enums import ExchangeType, NotifyType, PayloadType, enum_name
from ..packets.fragment import Reassembler, fragment
from ..packets.message import (
    FLAG_INITIATOR,
    FLAG_RESPONSE,
    HEADER_LEN,
    EncryptedFragment,
    EncryptedPayload,
    IkeSaCrypto,
    Message,
    decode,
    decode_header,
    encode,
)
from ..packets.payloads import NotifyPayload, Payload, SaPayload
from .config import IkeConfig
from .events import ChildSaEstablished, DatagramDropped, Event, IkeSaFailed
from .limits import DEFAULT_BUDGET, Account, MemoryBudget
from .state import FINAL, REQUESTS, IkeState, Role, Trigger, transition

DropKind = Literal["malformed", "integrity", "unprotected", "unexpected", "unacceptable", "over_limit"]

MAX_QUEUED_REQUESTS = 4  # our own requests waiting for the window (liveness, Delete, a test's extra one)


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


@dataclass(slots=True)
class _Outstanding:
    """Our request in flight: its datagrams and its retransmission schedule."""

    message_id: int
    exchange: int
    datagrams: list[bytes]
    deadline: float
    tries: int = 1


@dataclass(slots=True)
class _Queued:
    """A request of ours waiting for the window; ``trigger`` is the state step taken when it goes out."""

    exchange: int
    payloads: list[Payload]
    trigger: Trigger | None = None


@dataclass(slots=True)
class _Cached:
    """Our last response, kept for a retransmission of the request it answers (RFC 7296 2.1)."""

    message_id: int
    exchange: int
    datagrams: list[bytes]


class _Drop(Exception):
    """A datagram to drop (and count): control flow inside receive_datagram, never raised out of it."""

    def __init__(self, kind: DropKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: DropKind = kind


@dataclass(slots=True)
class Negotiation:
    """What the IKE_SA_INIT and IKE_AUTH exchanges build up; read by the exchange modules."""

    ke: KeyExchange | None = None
    ke_group: int = 0
    tried_groups: list[int] = field(default_factory=list)  # each KE group sent once at most (INVALID_KE retries)
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    cookie: bytes = b""
    init_request: bytes = b""  # as sent: InitiatorSignedOctets start with it (RFC 7296 2.15)
    init_response: bytes = b""
    init_refusal: tuple[str, int] | None = None  # an unauthenticated error notify, reported if nothing better comes
    ike_offer: SaPayload | None = None
    child_offer: SaPayload | None = None
    child_spi: bytes = b""  # our inbound Child SA SPI
    suite: IkeSuite | None = None
    keys: IkeSaKeys | None = None
    crypto: IkeSaCrypto | None = None
    peer_fragmentation: bool = False
    nat_local: bool = False  # we are behind a NAT (RFC 7296 2.23)
    nat_remote: bool = False  # the peer is
    child: ChildSaEstablished | None = None


@dataclass(slots=True, weakref_slot=True)
class IkeConnection:
    """The IKE SA of one side; see the module docstring for the driving loop and the rule for input.

    ``budget`` bounds the fragments and cached responses this connection keeps, alone and together with the
    others sharing it (``ike.limits``); by default every connection of the process shares one.
    """

    config: IkeConfig
    initiator: bool
    rng: RandomSource = random_bytes
    budget: MemoryBudget = field(default_factory=lambda: DEFAULT_BUDGET)
    state: IkeState = IkeState.INITIAL
    spi_i: bytes = b""
    spi_r: bytes = bytes(8)
    counters: EngineCounters = field(default_factory=EngineCounters)
    neg: Negotiation = field(default_factory=Negotiation)
    # where the last datagram the engine took came from (driver-supplied); NAT detection reads it
    source: tuple[str, int] | None = None
    _events: deque[Event] = field(default_factory=deque)
    _queue: list[bytes] = field(default_factory=list)
    _next_mid: int = 0  # message id of our next request
    _peer_mid: int = 0  # message id we expect in the peer's next request
    _outstanding: _Outstanding | None = None
    _requests: deque[_Queued] = field(default_factory=deque)  # ours, waiting for the window
    _last_response: _Cached | None = None
    _reassembler: Reassembler = field(default_factory=Reassembler)
    _account: Account = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initiator:
            self.spi_i = self.rng(8)
        self._account = self.budget.open_account(self)

    @property
    def role(self) -> Role:
        return Role.INITIATOR if self.initiator else Role.RESPONDER

    @property
    def stored_fragment_bytes(self) -> int:
        """Bytes of authentic fragments held for messages not yet complete (at most the budget's per-SA bound)."""
        return self._account.fragment_bytes

    @property
    def cached_response_bytes(self) -> int:
        """Bytes of the response kept for a retransmitted request (at most the budget's per-SA bound)."""
        return self._account.response_bytes

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
        if self.state != IkeState.ESTABLISHED or any(q.trigger == Trigger.SEND_DELETE for q in self._requests):
            return
        from .exchanges import informational

        informational.send_delete(self, now)

    @property
    def use_natt(self) -> bool:
        """Whether IKE now goes over UDP 4500 with the non-ESP marker (a NAT was detected)."""
        return self.neg.nat_local or self.neg.nat_remote

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 1.4, dead peer detection); no answer fails the SA.

        A no-op while a request of ours is in flight or waiting: its answer says as much about the peer.
        """
        if self.state != IkeState.ESTABLISHED or self._outstanding is not None or self._requests:
            return
        from .exchanges import informational

        informational.send_liveness(self, now)

    def receive_datagram(self, data: bytes, now: float, source: tuple[str, int] | None = None) -> None:
        """Process one datagram (IKE header first: the driver strips the non-ESP marker on port 4500).

        ``source`` (address, port) is where it came from: NAT detection compares it with what the peer says.
        It is kept (``self.source``) only if the datagram is taken.
        """
        dropped = self.counters.total_dropped()
        previous = self.source
        if source is not None:
            self.source = source
        try:
            self._receive(bytes(data), now)
        except _Drop as exc:
            self._drop(str(exc), exc.kind)
        except IntegrityError as exc:
            self._drop(f"ICV check failed: {exc}", "integrity")
        except DecodeError as exc:
            self._drop(f"malformed IKE message: {exc}", "malformed")
        except IpsecLabError as exc:  # e.g. a value the codec took but a later check refused: still just dropped
            self._drop(f"unusable IKE message: {type(exc).__name__}: {exc}", "malformed")
        if self.counters.total_dropped() == dropped:
            self.counters.received += 1
        else:
            self.source = previous

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything queued for the peer since the last call, in order."""
        out, self._queue = self._queue, []
        self.counters.sent += len(out)
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When ``handle_timer`` next wants to run (None: nothing outstanding)."""
        return self._outstanding.deadline if self._outstanding is not None else None

    def handle_timer(self, now: float) -> None:
        """Retransmit our outstanding request, or give up after ``retransmit_tries`` sends."""
        out = self._outstanding
        if out is None or now < out.deadline:
            return
        cfg = self.config
        if out.tries >= cfg.retransmit_tries:
            self._outstanding = None
            waited = (f"no answer to our {enum_name(ExchangeType, out.exchange)} request (message id "
                      f"{out.message_id}) after {out.tries} transmissions")
            refusal = self.neg.init_refusal if out.exchange == ExchangeType.IKE_SA_INIT else None
            if refusal is not None:  # RFC 7296 2.21.1: the unauthenticated refusal counts only now
                self.fail(f"{refusal[0]}; no acceptable answer after {out.tries} transmissions", refusal[1],
                          remote=True)
            else:
                self.fail(waited, 0)
            return
        self._queue.extend(out.datagrams)
        self.counters.retransmits += 1
        out.deadline = now + cfg.retransmit_timeout * cfg.retransmit_base ** out.tries
        out.tries += 1

    # -- used by the exchange modules --------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def fail(self, reason: str, notify: int, remote: bool = False) -> None:
        if self.state not in FINAL:
            self.step(Trigger.FAIL)
            self._outstanding = None
            self.emit(IkeSaFailed(reason, notify, remote))

    def step(self, trigger: Trigger) -> None:
        """Move the state on (the exchange modules' one way to change it); see state.TRANSITIONS.

        A final state forgets what only a live SA needs: our waiting requests and partial fragments.
        """
        self.state = transition(self.role, self.state, trigger)
        if self.state in FINAL:
            self._requests.clear()
            self._reassembler.pending.clear()
            self._account.set_fragments(0)

    def message(self, exchange: int, payloads: list[Payload], *, response: bool, message_id: int) -> Message:
        return Message(self.spi_i, self.spi_r, exchange, message_id, payloads, initiator=self.initiator,
                       response=response)

    def _encode(self, msg: Message) -> list[bytes]:
        """Datagrams for ``msg``: one, or RFC 7383 fragments when both sides support them and it is too long."""
        crypto = self.neg.crypto
        if crypto is None or msg.encrypted is None:
            return [encode(msg, rng=self.rng)]
        data = encode(msg, crypto, self.rng)
        size = self.config.fragment_size
        if self.neg.peer_fragmentation and self.config.fragmentation and len(data) > size:
            return fragment(msg, crypto, size, self.rng)
        return [data]

    def send_init_request(self, payloads: list[Payload], now: float) -> bytes:
        """Send our IKE_SA_INIT request (message id 0, in the clear), replacing any earlier one; returns it."""
        (data,) = self._encode(self.message(ExchangeType.IKE_SA_INIT, payloads, response=False, message_id=0))
        self._next_mid = 1
        self._queue.append(data)
        self._outstanding = _Outstanding(0, ExchangeType.IKE_SA_INIT, [data], now + self.config.retransmit_timeout)
        return data

    def send_request(self, exchange: int, payloads: list[Payload], now: float, *,
                     trigger: Trigger | None = None) -> None:
        """Queue an encrypted request; it goes out at once unless one of ours is in flight (RFC 7296 2.3).

        ``trigger`` is the state step to take when it goes out (the Delete of the IKE SA: SEND_DELETE).
        """
        if self.state in FINAL:
            raise LocalProtocolError(f"no request can be sent: the IKE SA is {self.state}")
        if len(self._requests) >= MAX_QUEUED_REQUESTS:
            raise LocalProtocolError(f"{MAX_QUEUED_REQUESTS} requests already wait for the peer's answers")
        self._requests.append(_Queued(exchange, payloads, trigger))
        self._send_next(now)

    def _send_next(self, now: float) -> None:
        """Send the first waiting request if the window is free (one request in flight at a time)."""
        if self._outstanding is not None or not self._requests or self.state in FINAL:
            return
        q = self._requests.popleft()
        if q.trigger is not None:
            self.step(q.trigger)
        mid = self._next_mid
        datagrams = self._encode(self.message(q.exchange, [EncryptedPayload(payloads=q.payloads)], response=False,
                                              message_id=mid))
        self._next_mid = mid + 1
        self._queue.extend(datagrams)
        self._outstanding = _Outstanding(mid, q.exchange, datagrams, now + self.config.retransmit_timeout)

    def complete_request(self) -> None:
        """Our outstanding request has its answer (called once the answer is checked: parsed and authentic)."""
        self._outstanding = None

    def send_response(self, exchange: int, payloads: list[Payload], message_id: int, *,
                      encrypted: bool = True) -> bytes:
        """Queue a response and keep it for a retransmitted request; returns the first datagram.

        A response over the budget's bound is sent but not kept: a retransmission of its request is dropped.
        """
        if encrypted:
            payloads = [EncryptedPayload(payloads=payloads)]
        datagrams = self._encode(self.message(exchange, payloads, response=True, message_id=message_id))
        self._queue.extend(datagrams)
        size = sum(len(d) for d in datagrams)
        if self._account.allows_response(size):
            self._last_response = _Cached(message_id, exchange, datagrams)
            self._account.set_response(size)
        else:
            self._last_response = None
            self._account.set_response(0)
        self._peer_mid = message_id + 1
        return datagrams[0]

    def notify_only_response(self, exchange: int, message_id: int, notify: int, data: bytes = b"") -> None:
        """An error response that carries one notify, inside the SK payload."""
        self.send_response(exchange, [NotifyPayload(notify, data=data)], message_id)

    def refuse_init(self, request: Message, notify: int, data: bytes = b"") -> None:
        """Answer an IKE_SA_INIT request we cannot take with one notify, keeping no state (RFC 7296 2.21.1).

        The answer takes its SPIs from the request (responder SPI zero) and is not cached: the SA is untouched.
        """
        reply = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, request.message_id,
                        [NotifyPayload(notify, data=data)], initiator=False, response=True)
        self._queue.append(encode(reply, rng=self.rng))

    # -- receiving ---------------------------------------------------------------------------------

    def _drop(self, reason: str, kind: DropKind) -> None:
        name = f"dropped_{kind}"
        setattr(self.counters, name, getattr(self.counters, name) + 1)
        self.emit(DatagramDropped(reason, kind))

    def _receive(self, data: bytes, now: float) -> None:
        spi_i, spi_r, nxt, version, exchange, flags, mid = decode_header(data)
        if self.state == IkeState.FAILED:
            raise _Drop("unexpected", "the IKE SA has failed")
        if version >> 4 != 2:
            raise _Drop("unexpected", f"IKE major version {version >> 4}, not 2")
        response = bool(flags & FLAG_RESPONSE)
        if bool(flags & FLAG_INITIATOR) == self.initiator:
            raise _Drop("unexpected", f"the I flag says the {self.role} sent it: our own message reflected, "
                                      f"or not for this IKE SA")
        if exchange == ExchangeType.IKE_SA_INIT:
            self._receive_init(data, spi_i, spi_r, mid, response, now)
            return
        crypto = self.neg.crypto
        kind = f"{enum_name(ExchangeType, exchange)} {'response' if response else 'request'} #{mid}"
        if crypto is None:
            raise _Drop("unexpected", f"{kind} before IKE_SA_INIT gave this IKE SA keys")
        if spi_i != self.spi_i or spi_r != self.spi_r:
            raise _Drop("unexpected", f"{kind} for SPIs {spi_i.hex()}/{spi_r.hex()}, not this IKE SA's "
                                      f"{self.spi_i.hex()}/{self.spi_r.hex()}")
        if not _reaches_sk(data, nxt):
            raise _Drop("unprotected", f"{kind} without an SK payload, though the IKE SA has keys")
        if response:
            self._receive_response(data, exchange, mid, crypto, kind, now)
        else:
            self._receive_request(data, exchange, mid, crypto, kind, now)

    def _receive_response(self, data: bytes, exchange: int, mid: int, crypto: IkeSaCrypto, kind: str,
                          now: float) -> None:
        out = self._outstanding
        if out is None or mid != out.message_id or exchange != out.exchange:
            raise _Drop("unexpected", f"{kind}: not the response we are waiting for")
        msg = self._reassemble(decode(data, crypto))  # the ICV first: a forged answer leaves the request out
        if msg is None:
            return  # a fragment of an answer still incomplete; the retransmission timer keeps running
        self.complete_request()
        self._dispatch(msg, now)
        self._send_next(now)

    def _receive_request(self, data: bytes, exchange: int, mid: int, crypto: IkeSaCrypto, kind: str,
                         now: float) -> None:
        last = self._last_response
        if last is not None and mid == last.message_id and exchange == last.exchange:
            again = decode(data, crypto)  # only a message that passes the ICV is the peer's retransmission
            frag = again.payloads[-1]
            self.counters.duplicate_requests += 1
            if not isinstance(frag, EncryptedFragment) or frag.number == 1:
                self._queue.extend(last.datagrams)  # RFC 7383 2.6.1: a fragmented request: on fragment 1 only
            return
        if self.state in FINAL:
            raise _Drop("unexpected", f"{kind}: the IKE SA is {self.state}")
        if mid != self._peer_mid:
            raise _Drop("unexpected", f"{kind}: expected message id {self._peer_mid}")
        if exchange not in REQUESTS.get((self.role, self.state), ()):
            raise _Drop("unexpected", f"{kind} is not taken in state {self.state}")
        msg = self._reassemble(decode(data, crypto))
        if msg is not None:
            self._dispatch(msg, now)

    def _reassemble(self, msg: Message) -> Message | None:
        """``msg`` itself, or once its last authentic fragment is in, the whole message (None until then)."""
        frag = msg.payloads[-1] if msg.payloads else None
        if not isinstance(frag, EncryptedFragment):
            if self._reassembler.pending:  # a whole message makes fragments of the same one moot
                self._reassembler.discard(msg)
                self._account.set_fragments(self._reassembler.stored_bytes)
            return msg
        size = len(frag.plaintext or b"")
        if not self._account.allows_fragment(size):
            self._reassembler.discard(msg)
            self._account.set_fragments(self._reassembler.stored_bytes)
            raise _Drop("over_limit", f"fragment {frag.number}/{frag.total} of {msg.summary()}: over the "
                                      f"{self.budget.fragment_bytes_per_sa}-byte per-SA (or the total) bound; "
                                      f"the partial message is discarded")
        try:
            return self._reassembler.add(msg)
        finally:
            self._account.set_fragments(self._reassembler.stored_bytes)

    def _receive_init(self, data: bytes, spi_i: bytes, spi_r: bytes, mid: int, response: bool,
                      now: float) -> None:
        """IKE_SA_INIT travels in the clear: checked whole by its exchange module before anything changes."""
        from .exchanges import ike_sa_init

        if mid != 0:
            raise _Drop("unexpected", f"IKE_SA_INIT with message id {mid}, not 0")
        if self.initiator:
            out = self._outstanding
            if not response or self.state != IkeState.INIT_SENT or out is None \
                    or out.exchange != ExchangeType.IKE_SA_INIT or spi_i != self.spi_i:
                raise _Drop("unexpected", "an IKE_SA_INIT message we are not waiting for")
            msg = decode(data)
            try:
                ike_sa_init.on_response(self, msg, data, now)
            except IpsecLabError as exc:  # nothing was changed: the exchange module checks before it commits
                if isinstance(exc, ProtocolError) and exc.from_peer:
                    self.neg.init_refusal = (str(exc), exc.notify)
                raise _Drop("unacceptable", f"IKE_SA_INIT response not taken, still waiting: {exc}") from None
            return
        if response:
            raise _Drop("unexpected", "an IKE_SA_INIT response sent to the responder")
        last = self._last_response
        if self.state != IkeState.INITIAL:
            if last is not None and last.exchange == ExchangeType.IKE_SA_INIT and data == self.neg.init_request:
                self.counters.duplicate_requests += 1  # RFC 7296 2.1: the same bytes again get the same answer
                self._queue.extend(last.datagrams)
                return
            raise _Drop("unexpected", f"an IKE_SA_INIT request in state {self.state} that is not a "
                                      f"retransmission of the one answered")
        if spi_r != bytes(8):
            raise _Drop("unexpected", f"an IKE_SA_INIT request with responder SPI {spi_r.hex()}")
        msg = decode(data)
        try:
            ike_sa_init.on_request(self, msg, data, now)
        except IpsecLabError as exc:  # answered with a notify, or not at all; no state was kept
            raise _Drop("unacceptable", f"IKE_SA_INIT request refused: {exc}") from None

    def _dispatch(self, msg: Message, now: float) -> None:
        """Hand an authentic, expected message to its exchange; a protocol error from it fails the SA."""
        from .exchanges import ike_auth, informational

        ex = msg.exchange
        try:
            if ex == ExchangeType.IKE_AUTH:
                if msg.response:
                    ike_auth.on_response(self, msg, now)
                else:
                    ike_auth.on_request(self, msg, now)
            elif ex == ExchangeType.INFORMATIONAL:
                if msg.response:
                    informational.on_response(self, msg, now)
                else:
                    informational.on_request(self, msg, now)
            elif ex == ExchangeType.CREATE_CHILD_SA and not msg.response:
                # rekeying and extra Child SAs are not implemented yet: say so, as RFC 7296 1.3 allows
                self.notify_only_response(ex, msg.message_id, NotifyType.NO_ADDITIONAL_SAS)
            else:
                raise _Drop("unexpected", f"{msg.summary()} is not handled in state {self.state}")
        except LocalProtocolError as exc:
            raise _Drop("unexpected", f"{msg.summary()} cannot be taken in state {self.state}: {exc}") from None
        except ProtocolError as exc:
            self.fail(str(exc), exc.notify, remote=exc.from_peer)


_SK_TYPES = (PayloadType.SK, PayloadType.SKF)


def _reaches_sk(data: bytes, nxt: int) -> bool:
    """Whether the payload chain gets to an SK or SKF payload, read from the generic headers alone.

    Cheap and before any payload is parsed: once keys exist, nothing without one is looked at further.
    """
    pos, end = HEADER_LEN, len(data)
    while nxt != PayloadType.NONE:
        if nxt in _SK_TYPES:
            return True
        if pos + 4 > end:
            return False
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 4:
            return False
        nxt = data[pos]
        pos += length
    return False


def find_notify(msg: Message, notify_type: int) -> NotifyPayload | None:
    """The first notify of a type among the message's clear and decrypted payloads."""
    for p in msg.all_payloads():
        if isinstance(p, NotifyPayload) and p.notify_type == notify_type:
            return p
    return None


def error_notify(msg: Message) -> NotifyPayload | None:
    """The first error notify (type below 16384, RFC 7296 3.10.1) of a message."""
    for p in msg.all_payloads():
        if isinstance(p, NotifyPayload) and p.is_error:
            return p
    return None

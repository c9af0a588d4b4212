"""One IKE SA, sans-I/O (in the manner of aioquic's QuicConnection): bytes and ``now`` in, bytes and events out.

A driver feeds it what arrives on UDP 500/4500 (without the non-ESP marker) and the time::

    conn = IkeConnection(config, initiator=True)
    conn.initiate(now)
    for datagram in conn.datagrams_to_send(now): sock.send(datagram)
    conn.receive_datagram(data, now)
    while (event := conn.next_event()) is not None: ...
    conn.handle_timer(now) when now >= conn.get_timer()

Nothing here reads a clock, opens a socket or raises out of ``receive_datagram``: a datagram that
is malformed, fails its ICV or does not belong is counted (``counters``) and dropped with a
``DatagramDropped`` event.  Requests we send are retransmitted from ``handle_timer`` (RFC 7296
2.1); a retransmitted request from the peer gets the cached response again (2.1: the responder
must not process it twice).  The exchanges themselves live in ``ike/exchanges``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..crypto import KeyExchange
from ..crypto.keys import IkeSaKeys, IkeSuite
from ..crypto.random import RandomSource, random_bytes
from ..errors import DecodeError, IntegrityError, IpsecLabError, LocalProtocolError, ProtocolError
from ..packets.enums import ExchangeType, NotifyType
from ..packets.fragment import Reassembler, fragment
from ..packets.message import (
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
from .state import FINAL, IkeState, Role, Trigger, transition

_FLAG_RESPONSE = 0x20


@dataclass(slots=True)
class EngineCounters:
    """What the engine dropped or repeated, by reason (``ip -s``-style visibility for tests and users)."""

    received: int = 0
    sent: int = 0
    retransmits: int = 0
    duplicate_requests: int = 0
    dropped_malformed: int = 0
    dropped_integrity: int = 0
    dropped_unexpected: int = 0

    def total_dropped(self) -> int:
        return self.dropped_malformed + self.dropped_integrity + self.dropped_unexpected


@dataclass(slots=True)
class _Outstanding:
    """Our request in flight: its datagrams and its retransmission schedule."""

    message_id: int
    exchange: int
    datagrams: list[bytes]
    deadline: float
    tries: int = 1


@dataclass(slots=True)
class Negotiation:
    """What the IKE_SA_INIT and IKE_AUTH exchanges build up; read by the exchange modules."""

    ke: KeyExchange | None = None
    ke_group: int = 0
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    cookie: bytes = b""
    init_request: bytes = b""  # as sent: InitiatorSignedOctets start with it (RFC 7296 2.15)
    init_response: bytes = b""
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


@dataclass(slots=True)
class IkeConnection:
    """The IKE SA of one side; see the module docstring for the driving loop."""

    config: IkeConfig
    initiator: bool
    rng: RandomSource = random_bytes
    state: IkeState = IkeState.INITIAL
    spi_i: bytes = b""
    spi_r: bytes = bytes(8)
    counters: EngineCounters = field(default_factory=EngineCounters)
    neg: Negotiation = field(default_factory=Negotiation)
    _events: deque[Event] = field(default_factory=deque)
    _queue: list[bytes] = field(default_factory=list)
    _next_mid: int = 0  # message id of our next request
    _peer_mid: int = 0  # message id we expect in the peer's next request
    _outstanding: _Outstanding | None = None
    _last_response: tuple[int, list[bytes]] | None = None
    _last_request: frozenset[bytes] = frozenset()  # the datagrams of the request _last_response answers
    _request_parts: list[bytes] = field(default_factory=list)  # datagrams of the request being received
    _reassembler: Reassembler = field(default_factory=Reassembler)
    source: tuple[str, int] | None = None  # where the datagram being processed came from (driver-supplied)

    def __post_init__(self) -> None:
        if self.initiator:
            self.spi_i = self.rng(8)

    @property
    def role(self) -> Role:
        return Role.INITIATOR if self.initiator else Role.RESPONDER

    # -- the driver's API --------------------------------------------------------------------------

    def initiate(self, now: float) -> None:
        """Start the IKE_SA_INIT exchange (initiator only)."""
        if not self.initiator:
            raise LocalProtocolError("a responder does not initiate: create the IkeConnection with initiator=True")
        from .exchanges import ike_sa_init

        self.step(Trigger.SEND_INIT)
        ike_sa_init.start(self, now)

    def close(self, now: float) -> None:
        """Delete the IKE SA (an INFORMATIONAL request with a Delete payload); a no-op unless established."""
        if self.state != IkeState.ESTABLISHED:
            return
        from .exchanges import informational

        informational.send_delete(self, now)

    @property
    def use_natt(self) -> bool:
        """Whether IKE now goes over UDP 4500 with the non-ESP marker (a NAT was detected)."""
        return self.neg.nat_local or self.neg.nat_remote

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 1.4, dead peer detection); no answer fails the SA."""
        if self.state != IkeState.ESTABLISHED or self._outstanding is not None:
            return
        from .exchanges import informational

        informational.send_liveness(self, now)

    def receive_datagram(self, data: bytes, now: float, source: tuple[str, int] | None = None) -> None:
        """Process one datagram (IKE header first: the driver strips the non-ESP marker on port 4500).

        ``source`` (address, port) is where it came from: NAT detection compares it with what the peer says.
        """
        self.counters.received += 1
        if source is not None:
            self.source = source
        if self.state in FINAL:
            self._drop("the IKE SA is closed", "unexpected")
            return
        try:
            self._receive(bytes(data), now)
        except IntegrityError as exc:
            self._drop(f"ICV check failed: {exc}", "integrity")
        except DecodeError as exc:
            self._drop(f"malformed IKE message: {exc}", "malformed")
        except IpsecLabError as exc:  # e.g. a KE value that is not a point on the curve: still just dropped
            self._drop(f"unusable IKE message: {type(exc).__name__}: {exc}", "malformed")

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
            self.fail(f"no answer to our {ExchangeType(out.exchange).name} request (message id {out.message_id}) "
                      f"after {out.tries} transmissions", 0)
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
        """Move the state on (the exchange modules' one way to change it); see state.TRANSITIONS."""
        self.state = transition(self.role, self.state, trigger)

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

    def send_request(self, exchange: int, payloads: list[Payload], now: float, *, message_id: int | None = None,
                     encrypted: bool = True) -> bytes:
        """Queue a request and arm its retransmission; returns the first datagram (IKE_SA_INIT signs it)."""
        mid = self._next_mid if message_id is None else message_id
        if encrypted:
            payloads = [EncryptedPayload(payloads=payloads)]
        datagrams = self._encode(self.message(exchange, payloads, response=False, message_id=mid))
        self._next_mid = mid + 1
        self._queue.extend(datagrams)
        self._outstanding = _Outstanding(mid, exchange, datagrams, now + self.config.retransmit_timeout)
        return datagrams[0]

    def send_response(self, exchange: int, payloads: list[Payload], message_id: int, *,
                      encrypted: bool = True, cache: bool = True) -> bytes:
        """Queue a response and keep it for a retransmitted request; returns the first datagram."""
        if encrypted:
            payloads = [EncryptedPayload(payloads=payloads)]
        datagrams = self._encode(self.message(exchange, payloads, response=True, message_id=message_id))
        self._queue.extend(datagrams)
        if cache:
            self._last_response = (message_id, datagrams)
            self._last_request = frozenset(self._request_parts)
            self._request_parts = []
            self._peer_mid = message_id + 1
        return datagrams[0]

    def notify_only_response(self, exchange: int, message_id: int, notify: int, data: bytes = b"") -> None:
        """An error response that carries one notify (IKE_SA_INIT: in the clear, RFC 7296 2.21.1)."""
        encrypted = self.neg.crypto is not None and exchange != ExchangeType.IKE_SA_INIT
        self.send_response(exchange, [NotifyPayload(notify, data=data)], message_id, encrypted=encrypted)

    # -- receiving ---------------------------------------------------------------------------------

    def _drop(self, reason: str, kind: str) -> None:
        setattr(self.counters, f"dropped_{kind}", getattr(self.counters, f"dropped_{kind}") + 1)
        self.emit(DatagramDropped(reason))

    def _receive(self, data: bytes, now: float) -> None:
        spi_i, spi_r, _nxt, version, _exchange, flags, mid = decode_header(data)
        if version >> 4 != 2:
            self._drop(f"IKE major version {version >> 4}, not 2", "unexpected")
            return
        response = bool(flags & _FLAG_RESPONSE)
        last = self._last_response
        if not response and last is not None and mid == last[0] and data in self._last_request:
            # RFC 7296 2.1: a retransmitted request (the same bytes) gets the same answer, processed once;
            # checked before the SPIs because a repeated IKE_SA_INIT still carries a zero responder SPI
            self.counters.duplicate_requests += 1
            self._queue.extend(last[1])
            return
        if self.spi_i and spi_i != self.spi_i:
            self._drop(f"initiator SPI {spi_i.hex()} is not this IKE SA's {self.spi_i.hex()}", "unexpected")
            return
        established_spi = self.state not in (IkeState.INITIAL, IkeState.INIT_SENT)
        if established_spi and spi_r != self.spi_r:
            self._drop(f"responder SPI {spi_r.hex()} is not this IKE SA's {self.spi_r.hex()}", "unexpected")
            return
        if response:
            out = self._outstanding
            if out is None or mid != out.message_id:
                self._drop(f"a response with message id {mid} that we are not waiting for", "unexpected")
                return
        else:
            if mid != self._peer_mid:
                self._drop(f"a request with message id {mid}, expected {self._peer_mid}", "unexpected")
                return
            self._request_parts.append(data)
        msg = self._decode(data)
        if msg is None:
            return  # a fragment of a message still incomplete
        if response:
            self._outstanding = None
        self._dispatch(msg, data, now)

    def _decode(self, data: bytes) -> Message | None:
        crypto = self.neg.crypto
        if crypto is None:
            return decode(data)
        msg = decode(data, crypto)
        if msg.payloads and isinstance(msg.payloads[-1], EncryptedFragment):
            return self._reassembler.add(msg)
        return msg

    def _dispatch(self, msg: Message, data: bytes, now: float) -> None:
        from .exchanges import ike_auth, ike_sa_init, informational

        ex = msg.exchange
        try:
            if ex == ExchangeType.IKE_SA_INIT:
                if msg.response:
                    ike_sa_init.on_response(self, msg, data, now)
                else:
                    ike_sa_init.on_request(self, msg, data, now)
            elif ex == ExchangeType.IKE_AUTH:
                if msg.response:
                    ike_auth.on_response(self, msg, now)
                else:
                    ike_auth.on_request(self, msg, now)
            elif ex == ExchangeType.INFORMATIONAL:
                if msg.response:
                    informational.on_response(self, msg, now)
                else:
                    informational.on_request(self, msg, now)
            elif ex == ExchangeType.CREATE_CHILD_SA and not msg.response and self.state == IkeState.ESTABLISHED:
                # rekeying and extra Child SAs are not implemented yet: say so, as RFC 7296 1.3 allows
                self.notify_only_response(ex, msg.message_id, NotifyType.NO_ADDITIONAL_SAS)
            else:
                self._drop(f"{msg.summary()} is not handled in state {self.state}", "unexpected")
        except LocalProtocolError as exc:
            self._drop(f"{msg.summary()} cannot be taken in state {self.state}: {exc}", "unexpected")
        except ProtocolError as exc:
            self.fail(str(exc), exc.notify, remote=exc.from_peer)


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

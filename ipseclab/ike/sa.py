"""One IKE SA: its SPIs, keys, message ids, its own state and its own request window.

The connection (``connection.IkeConnection``) owns the configuration, the peer and the Child SAs; an IKE SA is
what an IKE rekey replaces (RFC 7296 2.18), so everything that belongs to one pair of IKE SPIs lives here and
nothing else does.  Message ids, the retransmission of our request, the cached response and partial fragments
are per IKE SA: a rekeyed SA starts again at message id 0 while the old one still finishes its Delete.

Each IKE SA has its own ``initiator`` flag: it is the *original initiator* of that SA (the I flag, RFC 7296
3.1), which after an IKE rekey is whoever started the rekey, not whoever started the connection.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..crypto import KeyExchange
from ..crypto.keys import IkeSaKeys, IkeSuite
from ..packets.fragment import Reassembler
from ..packets.message import IkeSaCrypto, Message
from ..packets.payloads import Payload, SaPayload
from .limits import Account, MemoryBudget
from .state import FINAL, IkeState, Role, Trigger, transition


@dataclass(slots=True)
class Negotiation:
    """What the IKE_SA_INIT and IKE_AUTH exchanges (or the CREATE_CHILD_SA that made it) gave this IKE SA."""

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
    child_offer: SaPayload | None = None  # IKE_AUTH's Child SA offer
    child_spi: bytes = b""  # our inbound SPI of IKE_AUTH's Child SA
    suite: IkeSuite | None = None
    keys: IkeSaKeys | None = None
    crypto: IkeSaCrypto | None = None
    peer_fragmentation: bool = False
    nat_local: bool = False  # we are behind a NAT (RFC 7296 2.23)
    nat_remote: bool = False  # the peer is

    def forget_handshake(self) -> None:
        """Drop what only IKE_SA_INIT and the AUTH payloads needed (the KE private value, both IKE_SA_INIT
        messages, the offer): an established SA keeps its keys, not the means to them.  About a kilobyte per SA
        and the private key's OpenSSL object; it also means the key exchange's secret does not outlive its use."""
        self.ke = None
        self.init_request = self.init_response = self.cookie = b""
        self.ike_offer = None
        self.tried_groups = []


@dataclass(slots=True)
class Outstanding:
    """Our request in flight: its datagrams, its retransmission schedule and what its answer completes."""

    message_id: int
    exchange: int
    datagrams: list[bytes]
    deadline: float
    tries: int = 1
    context: Any = None  # the exchange module's state for the answer (e.g. create_child_sa.Pending)


@dataclass(slots=True)
class Queued:
    """A request of ours waiting for the window; ``trigger`` is the state step taken when it goes out."""

    exchange: int
    payloads: list[Payload]
    trigger: Trigger | None = None
    context: Any = None


@dataclass(slots=True)
class Cached:
    """Our last response, kept for a retransmission of the request it answers (RFC 7296 2.1)."""

    message_id: int
    exchange: int
    datagrams: list[bytes]


@dataclass(slots=True, eq=False, weakref_slot=True)
class IkeSa:
    """One IKE SA (see the module docstring); its fragments and cached responses count against ``budget``.

    The window (RFC 7296 2.3): ``peer_window`` is how many of our requests may be in flight (what the peer
    announced with SET_WINDOW_SIZE; 1 until then), ``window`` how many of the peer's we take at once (what we
    announced).  Both start at 1 on every IKE SA, a rekeyed one too.  A request of ours with message id X goes
    out only once every request up to X - ``peer_window`` is answered; the peer's requests are taken in any order
    from ``peer_mid`` (the lowest not yet answered) up to ``peer_mid + window - 1``, and the last ``window``
    responses are kept for retransmitted requests.
    """

    initiator: bool
    budget: MemoryBudget
    spi_i: bytes = b""
    spi_r: bytes = bytes(8)
    state: IkeState = IkeState.INITIAL
    neg: Negotiation = field(default_factory=Negotiation)
    next_mid: int = 0  # message id of our next request
    peer_mid: int = 0  # the lowest message id of the peer's requests not yet answered
    in_flight: dict[int, Outstanding] = field(default_factory=dict)  # our requests sent, by message id
    requests: deque[Queued] = field(default_factory=deque)  # ours, waiting for the window (RFC 7296 2.3)
    responses: dict[int, Cached] = field(default_factory=dict)  # our last ``window`` responses, by message id
    answered: set[int] | None = None  # the peer's requests above ``peer_mid`` answered out of order (window > 1)
    window: int = 1  # the peer's requests we take at once (announced by us)
    peer_window: int = 1  # our requests that may be in flight at once (announced by the peer)
    reassembler: Reassembler = field(default_factory=Reassembler)
    account: Account = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.account = self.budget.open_account(self)

    @property
    def role(self) -> Role:
        return Role.INITIATOR if self.initiator else Role.RESPONDER

    @property
    def spis(self) -> tuple[bytes, bytes]:
        return self.spi_i, self.spi_r

    def step(self, trigger: Trigger) -> None:
        """Move the state on (see state.TRANSITIONS); a final state forgets what only a live SA needs."""
        self.state = transition(self.role, self.state, trigger)
        if self.state in FINAL:
            self.requests.clear()
            self.reassembler.pending.clear()
            self.account.set_fragments(0)

    def message(self, exchange: int, payloads: list[Payload], *, response: bool, message_id: int) -> Message:
        return Message(self.spi_i, self.spi_r, exchange, message_id, payloads, initiator=self.initiator,
                       response=response)

    def busy(self) -> bool:
        """A request of ours is in flight or waiting."""
        return bool(self.in_flight) or bool(self.requests)

    def window_open(self) -> bool:
        """Whether our next request may go out: every request up to ``next_mid - peer_window`` is answered."""
        lowest = min(self.in_flight) if self.in_flight else self.next_mid
        return self.next_mid < lowest + self.peer_window

    def contexts(self) -> list[Any]:
        """The exchange contexts of our requests in flight (what their answers complete)."""
        return [out.context for out in self.in_flight.values()]

    def takes_request(self, mid: int) -> bool:
        """Whether ``mid`` is inside our window of the peer's requests and not yet answered."""
        if not self.peer_mid <= mid < self.peer_mid + self.window:
            return False
        return self.answered is None or mid not in self.answered

    def mark_answered(self, mid: int) -> None:
        """Slide the window of the peer's requests over ``mid``; forget responses that fell out of it."""
        if mid == self.peer_mid:
            self.peer_mid += 1
            answered = self.answered
            while answered and self.peer_mid in answered:
                answered.discard(self.peer_mid)
                self.peer_mid += 1
        elif mid > self.peer_mid:
            if self.answered is None:
                self.answered = set()
            self.answered.add(mid)
        if len(self.responses) > self.window:
            for old in sorted(self.responses)[: len(self.responses) - self.window]:
                del self.responses[old]

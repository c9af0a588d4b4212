"""A sans-I/O listener: many peers' IKE SAs behind one port, demultiplexed by SPI, with cookies under load.

An ``IkeConnection`` is one IKE SA's connection; a responder that serves more than one initiator needs something
that owns them all, creates one per new IKE_SA_INIT, and keeps a flood of IKE_SA_INITs from making state.  That is
``Responder``::

    listener = Responder(config)
    listener.receive_datagram(data, now, source, natt=arrived_on_4500)
    for d in listener.datagrams_to_send(now): sock_for(d.natt).sendto(d.payload(), d.addr)
    while (item := listener.next_event()) is not None: conn, event = item
    listener.handle_timer(now) when now >= listener.get_timer()

Demultiplexing (RFC 7296 2.6 and 3.1): every IKE SA is found by the SPI *we* chose, the responder SPI of a
message whose I flag is set (it comes from the SA's original initiator) and the initiator SPI otherwise (an IKE
SA we made by rekeying).  A new IKE_SA_INIT has a zero responder SPI and is found by (initiator SPI, source
address) while it is retransmitted; anything else with an SPI we do not know is dropped and counted.

Half-open IKE SAs (IKE_SA_INIT answered, no IKE_AUTH yet) are what a flood makes.  At ``cookie_threshold`` of
them, a new IKE_SA_INIT is answered with a COOKIE computed from its nonce, source address and SPI
(``crypto.cookie``), and nothing is kept; only a request that echoes a valid cookie makes an IKE SA.  At
``half_open_limit`` no new IKE SA is made at all (a flood from real addresses that echo cookies), and
half-open SAs expire after ``half_open_timeout`` (the config's, or ``DEFAULT_HALF_OPEN_TIMEOUT``), so the
memory a flood can take is bounded by ``half_open_limit`` IKE SAs.  The defaults are strongSwan's
(``charon.cookie_threshold`` 10, ``charon.half_open_timeout`` 30 s).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ..crypto.cookie import CookieSecrets
from ..crypto.random import RandomSource, random_bytes
from ..errors import DecodeError, IpsecLabError
from ..packets.enums import ExchangeType, NotifyType
from ..packets.message import FLAG_INITIATOR, FLAG_RESPONSE, Message, decode, decode_header, encode
from ..packets.payloads import NoncePayload, NotifyPayload
from .config import IkeConfig
from .connection import Datagram, IkeConnection, ReceiveHook, SendHook
from .events import DatagramDropped, Event
from .limits import DEFAULT_BUDGET, MemoryBudget
from .state import FINAL, IkeState

DEFAULT_HALF_OPEN_TIMEOUT = 30.0
_ZERO_SPI = bytes(8)


class ResponderEvent(NamedTuple):
    """An event and the connection it is about (None: the listener's own, e.g. a datagram it dropped)."""

    conn: IkeConnection | None
    event: Event


@dataclass(slots=True)
class ResponderCounters:
    """What the listener did with datagrams before any IKE SA saw them."""

    cookies_sent: int = 0  # IKE_SA_INIT answered with a COOKIE, nothing kept
    cookies_accepted: int = 0  # IKE_SA_INIT that echoed a valid cookie
    dropped_malformed: int = 0  # not even an IKE header
    dropped_unknown_spi: int = 0  # for no IKE SA of ours
    dropped_half_open_limit: int = 0  # a new IKE_SA_INIT while ``half_open_limit`` SAs are half-open
    dropped_bad_cookie: int = 0  # counted as well as answered with a fresh cookie


@dataclass(slots=True)
class Responder:
    """Owns the responder side of many IKE SAs (see the module docstring); every one uses ``config``."""

    config: IkeConfig
    cookie_threshold: int | None = 10  # None: never ask for cookies
    half_open_limit: int = 1000
    cookie_rotation: float = 120.0  # seconds a cookie secret is current (and then one more, as the previous)
    rng: RandomSource = random_bytes
    budget: MemoryBudget = field(default_factory=lambda: DEFAULT_BUDGET)
    on_send: SendHook | None = None  # handed to every connection (see IkeConnection._hooked)
    on_receive: ReceiveHook | None = None
    counters: ResponderCounters = field(default_factory=ResponderCounters)
    connections: dict[bytes, IkeConnection] = field(default_factory=dict)  # by our SPI of each of its IKE SAs
    _pending_init: dict[tuple[bytes, str], IkeConnection] = field(default_factory=dict)  # (SPIi, address)
    _keys: dict[int, list[bytes]] = field(default_factory=dict)  # id(conn) -> its keys in ``connections``
    _conns: dict[int, IkeConnection] = field(default_factory=dict)  # id(conn) -> conn, each once
    _half_open: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # id(conn) -> its _pending_init key
    _cookies: CookieSecrets = field(init=False)
    _queue: list[Datagram] = field(default_factory=list)
    _events: deque[ResponderEvent] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.config.half_open_timeout is None:
            self.config = replace(self.config, half_open_timeout=DEFAULT_HALF_OPEN_TIMEOUT)
        self._cookies = CookieSecrets(self.cookie_rotation, self.rng)

    # -- the driver's API ------------------------------------------------------------------------------------

    @property
    def half_open(self) -> int:
        """IKE SAs whose IKE_SA_INIT we answered and whose IKE_AUTH has not come."""
        return len(self._half_open)

    def ike_connections(self) -> list[IkeConnection]:
        """Every connection the listener holds, once each."""
        return list(self._conns.values())

    def receive_datagram(self, data: bytes, now: float, source: tuple[str, int] | None = None, *,
                         natt: bool = False) -> None:
        """Hand one datagram (IKE header first) to the IKE SA it is for, or answer or drop it here."""
        data = bytes(data)
        try:
            spi_i, spi_r, _, _, exchange, flags, _ = decode_header(data)
        except DecodeError as exc:
            self._drop(f"malformed IKE message: {exc}", "malformed")
            return
        if exchange == ExchangeType.IKE_SA_INIT and spi_r == _ZERO_SPI and not flags & FLAG_RESPONSE:
            self._new_init(data, spi_i, now, source, natt)
            return
        ours = spi_r if flags & FLAG_INITIATOR else spi_i
        conn = self.connections.get(ours)
        if conn is None:
            self._drop(f"for SPIs {spi_i.hex()}/{spi_r.hex()}: no IKE SA of ours", "unknown_spi")
            return
        conn.receive_datagram(data, now, source, natt=natt)
        self._after(conn)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything to send, from the listener and from every connection (also what a driver's own call on a
        connection, e.g. ``conn.rekey_ike(now)``, queued there)."""
        for conn in self._conns.values():
            self._queue.extend(conn.datagrams_to_send(now))
        out, self._queue = self._queue, []
        return out

    def next_event(self) -> ResponderEvent | None:
        """The next event of the listener or of any connection, with the connection it is about."""
        if not self._events:
            for conn in self._conns.values():
                while (event := conn.next_event()) is not None:
                    self._events.append(ResponderEvent(conn, event))
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of every connection held (the timer rule, ``ike.lifecycle``)."""
        times = [t for c in self._conns.values() if (t := c.get_timer()) is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for conn in list(self._conns.values()):
            t = conn.get_timer()
            if t is not None and now >= t:
                conn.handle_timer(now)
                self._after(conn)

    # -- inside ----------------------------------------------------------------------------------------------

    def _new_init(self, data: bytes, spi_i: bytes, now: float, source: tuple[str, int] | None, natt: bool) -> None:
        address = source[0] if source is not None else ""
        conn = self._pending_init.get((spi_i, address))
        if conn is not None:  # a retransmission, or a new request of a half-open SA: its own checks apply
            conn.receive_datagram(data, now, source, natt=natt)
            self._after(conn)
            return
        if self.half_open >= self.half_open_limit:
            self._drop(f"IKE_SA_INIT from {address}: {self.half_open} half-open IKE SAs, the limit", "half_open_limit")
            return
        under_load = self.cookie_threshold is not None and self.half_open >= self.cookie_threshold
        if under_load and not self._cookie_ok(data, spi_i, address, now, source, natt):
            return
        conn = IkeConnection(self.config, initiator=False, rng=self.rng, budget=self.budget,
                             on_send=self.on_send, on_receive=self.on_receive)
        conn.receive_datagram(data, now, source, natt=natt)
        self._after(conn)

    def _cookie_ok(self, data: bytes, spi_i: bytes, address: str, now: float, source: tuple[str, int] | None,
                   natt: bool) -> bool:
        """Whether the request echoes a valid cookie; if not, answer with one (or drop what does not parse)."""
        try:
            msg = decode(data)
        except IpsecLabError as exc:  # DecodeError, or a value the codec took but a later check refused
            self._drop(f"malformed IKE_SA_INIT: {exc}", "malformed")
            return False
        nonce = next((p.data for p in msg.payloads if isinstance(p, NoncePayload)), None)
        if nonce is None:
            self._drop("IKE_SA_INIT without a nonce", "malformed")
            return False
        ip = ipaddress.ip_address(address).packed if address else b""
        first = msg.payloads[0] if msg.payloads else None
        if isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE:  # 2.6: first payload
            if self._cookies.verify(first.data, nonce, ip, spi_i, now):
                self.counters.cookies_accepted += 1
                return True
            self.counters.dropped_bad_cookie += 1
        cookie = self._cookies.make(nonce, ip, spi_i, now)
        reply = Message(spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT, 0,
                        [NotifyPayload(NotifyType.COOKIE, data=cookie)], initiator=False, response=True)
        hooked = self.on_send(reply) if self.on_send is not None else reply
        if hooked is not None:
            self._queue.append(Datagram(encode(hooked), source, natt))
        self.counters.cookies_sent += 1
        return False

    def _after(self, conn: IkeConnection) -> None:
        """Collect what ``conn`` has to send and to say, then index it by its SPIs now (or forget it)."""
        self._queue.extend(conn.datagrams_to_send(0.0))
        while (event := conn.next_event()) is not None:
            self._events.append(ResponderEvent(conn, event))
        key = id(conn)
        for spi in self._keys.pop(key, []):
            if self.connections.get(spi) is conn:
                del self.connections[spi]
        if (pending := self._half_open.pop(key, None)) is not None:
            self._pending_init.pop(pending, None)
        if conn.state in FINAL or conn.state == IkeState.INITIAL:  # over, or an IKE_SA_INIT refused: no state
            self._conns.pop(key, None)
            return
        self._conns[key] = conn
        spis = [sa.spi_i if sa.initiator else sa.spi_r for sa in conn.ike_sas() if sa.state not in FINAL]
        for spi in spis:
            self.connections[spi] = conn
        self._keys[key] = spis
        if conn.state == IkeState.INIT_DONE:
            pending = (conn.spi_i, conn.source[0] if conn.source is not None else "")
            self._half_open[key] = pending
            self._pending_init[pending] = conn

    def _drop(self, reason: str, kind: str) -> None:
        name = f"dropped_{kind}"
        setattr(self.counters, name, getattr(self.counters, name) + 1)
        self._events.append(ResponderEvent(None, DatagramDropped(reason, kind)))

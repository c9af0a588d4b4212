"""Two engines wired together in memory: a whole handshake in one call, for the REPL, tests and benchmarks.

>>> from ipseclab.ike import IkeConfig
>>> from ipseclab.ike.loopback import handshake
>>> i, r = handshake(IkeConfig("moon", "sun", b"k"), IkeConfig("sun", "moon", b"k"))
>>> [type(e).__name__ for e in i.events]
['IkeSaKeysDerived', 'IkeSaEstablished', 'ChildSaEstablished']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import IkeConfig
from .connection import IkeConnection
from .events import Event


@dataclass(slots=True)
class Side:
    """One end of the loopback: its connection and every event it emitted, in order."""

    conn: IkeConnection
    events: list[Event] = field(default_factory=list)

    def of(self, cls: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, cls)]


def exchange(i: Side, r: Side, now: float = 0.0, rounds: int = 20) -> None:
    """Deliver datagrams both ways until none is in flight, collecting events."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((i, r), (r, i)):
            for d in src.conn.datagrams_to_send(now):
                moved = True
                dst.conn.receive_datagram(d.data, now)
        for side in (i, r):
            side.events.extend(iter(side.conn.next_event, None))
        if not moved:
            return


def handshake(initiator: IkeConfig, responder: IkeConfig, now: float = 0.0) -> tuple[Side, Side]:
    """Run IKE_SA_INIT and IKE_AUTH between two fresh connections; returns (initiator, responder)."""
    i, r = Side(IkeConnection(initiator, initiator=True)), Side(IkeConnection(responder, initiator=False))
    i.conn.initiate(now)
    exchange(i, r, now)
    return i, r


@dataclass(slots=True)
class Pair:
    """An initiator and a responder wired together in memory, not started: the pytest plugin's ``ike_pair``.

    A test chooses when to start (``handshake``) and moves the clock itself (``exchange(now)``), so loss,
    timers and the SA API can be driven between steps.  ``Pair.of(initiator_cfg, responder_cfg)`` makes one.
    """

    initiator: Side
    responder: Side

    @classmethod
    def of(cls, initiator: IkeConfig, responder: IkeConfig) -> Pair:
        return cls(Side(IkeConnection(initiator, initiator=True)), Side(IkeConnection(responder, initiator=False)))

    def handshake(self, now: float = 0.0) -> Pair:
        """IKE_SA_INIT and IKE_AUTH (the initiator starts); returns itself."""
        self.initiator.conn.initiate(now)
        self.exchange(now)
        return self

    def exchange(self, now: float = 0.0, rounds: int = 20) -> None:
        """Deliver datagrams both ways until none is in flight (see :func:`exchange`)."""
        exchange(self.initiator, self.responder, now, rounds)

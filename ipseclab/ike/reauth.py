"""Reauthentication, make-before-break (strongSwan's ``make_before_break = yes``): a new IKE SA authenticated
from scratch, every Child SA re-created under it, and only then the old IKE SA deleted.

RFC 7296 2.8.3 reauthenticates by making a new IKE SA with IKE_SA_INIT and IKE_AUTH; an IKE rekey
(``rekey_ike``) cannot do it, as it keeps the old authentication.  strongSwan either deletes the old IKE SA first
and then starts again (break-before-make, a gap in traffic) or, with ``make_before_break``, does it the other
way round; this is the second.  The new IKE SA is a new ``IkeConnection`` from the same ``IkeConfig`` (as
strongSwan makes a new IKE_SA from the same peer config), because everything IKE_SA_INIT and IKE_AUTH set up
(nonces, keys, identities, the first Child SA) starts afresh:

1. the new connection runs IKE_SA_INIT and IKE_AUTH to the old one's peer; IKE_AUTH's Child SA re-creates the
   old Child SA with the configured selectors;
2. once it is established, each other live Child SA of the old connection is re-created by CREATE_CHILD_SA with
   the same protocol, mode and agreed selectors (as many at once as the queue takes);
3. once the new connection holds them all, the old IKE SA is deleted (its Child SAs go with it): its
   ``IkeSaDeleted`` is the driver's cue to drop the old SAs, and ``Reauthenticated`` follows.

Meanwhile the old SAs carry traffic; new Child SAs carry our outbound traffic from their ``ChildSaEstablished``.
If the new connection fails, the old one stays as it was (``ReauthenticationFailed``).  The peer (a responder)
needs nothing special: it sees a new IKE SA, then the Delete of the old one (``Responder`` holds both).

``Reauthentication`` is sans-I/O like a connection and routes by SPI between the two: a driver hands it every
datagram for either and sends what it gives back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import DecodeError, LocalProtocolError
from ..packets.message import FLAG_INITIATOR, decode_header
from .child import LIVE, ChildSa, ChildState
from .connection import MAX_QUEUED_REQUESTS, Datagram, IkeConnection
from .events import Event, IkeSaDeleted, Reauthenticated, ReauthenticationFailed
from .state import FINAL, IkeState


class ReauthEvent(NamedTuple):
    """An event and the connection it is about (None: the reauthentication's own)."""

    conn: IkeConnection | None
    event: Event


@dataclass(slots=True)
class Reauthentication:
    """One make-before-break reauthentication of ``old`` (see the module docstring); start it with ``start``."""

    old: IkeConnection
    new: IkeConnection
    to_recreate: list[ChildSa] = field(default_factory=list)  # the old Child SAs still to re-create
    recreating: dict[int, ChildSa] = field(default_factory=dict)  # new inbound SPI -> the old pair it re-creates
    phase: str = "authenticating"  # authenticating, re-creating, deleting, done, failed
    _events: deque[ReauthEvent] = field(default_factory=deque)

    @classmethod
    def start(cls, old: IkeConnection, now: float) -> Reauthentication:
        """Begin: a new connection to ``old``'s peer sends IKE_SA_INIT."""
        if old.state != IkeState.ESTABLISHED:
            raise LocalProtocolError(f"cannot reauthenticate: the IKE SA is {old.state}")
        new = IkeConnection(old.config, initiator=True, rng=old.rng, budget=old.budget, on_send=old.on_send,
                            on_receive=old.on_receive)
        new.peer = old.peer or old.config.remote_endpoint
        new.initiate(now)
        return cls(old, new)

    # -- the driver's API ------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float, source: tuple[str, int] | None = None, *,
                         natt: bool = False) -> None:
        """Hand a datagram to the connection whose IKE SA it names (the old one by default)."""
        self.route(data).receive_datagram(data, now, source, natt=natt)
        self._advance(now)

    def route(self, data: bytes) -> IkeConnection:
        """The connection with an IKE SA of the SPI we chose in ``data`` (the old one if neither has it)."""
        try:
            spi_i, spi_r, _, _, _, flags, _ = decode_header(data)
        except DecodeError:  # the old connection counts the drop
            return self.old
        return self.new if self._ours(self.new, spi_i, spi_r, flags) else self.old

    @staticmethod
    def _ours(conn: IkeConnection, spi_i: bytes, spi_r: bytes, flags: int) -> bool:
        ours = spi_r if flags & FLAG_INITIATOR else spi_i
        return any((sa.spi_r if not sa.initiator else sa.spi_i) == ours for sa in conn.ike_sas())

    def handle_timer(self, now: float) -> None:
        for conn in (self.old, self.new):
            t = conn.get_timer()
            if t is not None and now >= t:
                conn.handle_timer(now)
        self._advance(now)

    def get_timer(self) -> float | None:
        times = [t for c in (self.old, self.new) if (t := c.get_timer()) is not None]
        return min(times) if times else None

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return self.old.datagrams_to_send(now) + self.new.datagrams_to_send(now)

    def next_event(self) -> ReauthEvent | None:
        """The next event of either connection (with it) or of the reauthentication itself (None)."""
        if not self._events:
            for conn in (self.old, self.new):
                while (event := conn.next_event()) is not None:
                    self._events.append(ReauthEvent(conn, event))
        return self._events.popleft() if self._events else None

    # -- inside ----------------------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Move on to the next phase when the current one is over (checked after every datagram and timer)."""
        old, new = self.old, self.new
        while (event := new.next_event()) is not None:  # keep the order: ours after the connection's
            self._events.append(ReauthEvent(new, event))
        while (event := old.next_event()) is not None:
            self._events.append(ReauthEvent(old, event))
            if isinstance(event, IkeSaDeleted) and self.phase == "deleting":
                self.phase = "done"
                self._events.append(ReauthEvent(None, Reauthenticated(
                    old.spi_i, old.spi_r, new.spi_i, new.spi_r)))
        if self.phase in ("done", "failed"):
            return
        if new.state in FINAL:
            self.phase = "failed"
            self._events.append(ReauthEvent(None, ReauthenticationFailed(
                f"the new IKE SA is {new.state}; the old one stays")))
            return
        if self.phase == "authenticating" and new.state == IkeState.ESTABLISHED:
            self.phase = "re-creating"
            self.to_recreate = self._others(old, new)
        if self.phase == "re-creating":
            self._recreate(now)
            done = not self.to_recreate and all(
                c.state in LIVE for k, c in new.children.items() if k in self.recreating)
            failed = any(k not in new.children for k in self.recreating)
            if failed:
                self.phase = "failed"
                self._events.append(ReauthEvent(None, ReauthenticationFailed(
                    "a Child SA could not be re-created; the old IKE SA stays")))
            elif done and old.state == IkeState.ESTABLISHED and not old.ike.busy():
                self.phase = "deleting"
                old.close(now)

    @staticmethod
    def _others(old: IkeConnection, new: IkeConnection) -> list[ChildSa]:
        """The old Child SAs that IKE_AUTH's Child SA did not re-create (one with the same selectors did)."""
        made = [c.sa for c in new.child_sas() if c.sa is not None]
        others = []
        for child in old.child_sas():
            twin = next((m for m in made if child.sa is not None and (m.local_ts, m.remote_ts, m.mode) ==
                         (child.sa.local_ts, child.sa.remote_ts, child.sa.mode)), None)
            if twin is not None:
                made.remove(twin)
            else:
                others.append(child)
        return others

    def _recreate(self, now: float) -> None:
        from .exchanges import create_child_sa

        while self.to_recreate and len(self.new.ike.requests) < MAX_QUEUED_REQUESTS:
            child = self.to_recreate.pop(0)
            if child.state == ChildState.DELETED:
                continue
            self.recreating[create_child_sa.start_child(self.new, now, like=child)] = child

"""The endpoint's IKE side, sans-I/O: one ``IkeConnection`` as the initiator, a ``Responder`` (many IKE SAs behind
one port, cookies above a half-open threshold) as the responder, and the lifecycle commands of the line protocol.

The runner hands it datagrams and the time and installs what its events say; this decides which connection a
command acts on and which Child SA pair belongs to which connection, so that an IKE SA that goes (deleted, failed,
or the old one of a peer's reauthentication) takes its own pairs and no other's.  Nothing here touches a socket,
so it is tested with two of them wired together in memory (``tests/unit/test_endpoint_sessions.py``).

Which Child SA a command means: ``index`` 0 is the first Child SA (IKE_AUTH's, and whatever rekeyed it), ``k`` the
additional Child SA ``children[k - 1]`` (its name in the spec, e.g. ``conn-2``), found by its local selectors; of
several pairs with the same index (a rekey under way) the one installed last.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..errors import IpsecLabError, LocalProtocolError
from ..ike import IkeConfig, IkeConnection
from ..ike.connection import Datagram
from ..ike.events import DeadPeer, Event
from ..ike.responder import Responder
from ..ike.state import IkeState
from .dataplane import DataPlane, Pair

Child = tuple[str, tuple[str, ...], tuple[str, ...]]  # an additional Child SA: name, local_ts, remote_ts


def engine_config(config: IkeConfig, children: tuple[Child, ...]) -> IkeConfig:
    """``config`` with the additional Child SAs' selectors as pairs a peer's CREATE_CHILD_SA may ask for."""
    extra = tuple((local, remote) for _, local, remote in children)
    return replace(config, extra_ts=config.extra_ts + extra) if extra else config


@dataclass(slots=True)
class Sessions:
    """The engine (see the module docstring); ``owner`` maps each installed pair's inbound SPI to its connection."""

    config: IkeConfig
    initiator: bool
    children: tuple[Child, ...] = ()
    cookie_threshold: int | None = 10
    half_open_limit: int = 1000
    dpd_action: str = "clear"  # "restart": an initiator whose peer was found dead starts a new IKE SA at once
    engine: IkeConnection | Responder = field(init=False)
    owner: dict[int, IkeConnection] = field(default_factory=dict)
    _dead: bool = False  # a DeadPeer of the initiator's connection, not yet restarted

    def __post_init__(self) -> None:
        cfg = engine_config(self.config, self.children)
        if self.initiator:
            self.engine = IkeConnection(cfg, initiator=True)
        else:
            self.engine = Responder(cfg, cookie_threshold=self.cookie_threshold, half_open_limit=self.half_open_limit)

    # -- which connection ------------------------------------------------------------------------------------

    def connections(self) -> list[IkeConnection]:
        return [self.engine] if isinstance(self.engine, IkeConnection) else self.engine.ike_connections()

    @property
    def current(self) -> IkeConnection | None:
        """The connection commands act on: the initiator's, or the newest established one a responder holds."""
        conns = self.connections()
        established = [c for c in conns if c.state == IkeState.ESTABLISHED]
        pick = established or conns
        return pick[-1] if pick else None

    @property
    def state(self) -> IkeState:
        conn = self.current
        return conn.state if conn is not None else IkeState.INITIAL

    # -- the driver's API, passed on ------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, source: tuple[str, int], natt: bool) -> None:
        self.engine.receive_datagram(data, now, source=source, natt=natt)

    def datagrams(self, now: float) -> list[Datagram]:
        return self.engine.datagrams_to_send(now)

    def events(self) -> Iterator[tuple[IkeConnection | None, Event]]:
        """Every event so far, with the connection it is about (None: the listener's own)."""
        if isinstance(self.engine, IkeConnection):
            conn = self.engine
            while (event := conn.next_event()) is not None:
                self._dead = self._dead or isinstance(event, DeadPeer)
                yield conn, event
        else:
            while (item := self.engine.next_event()) is not None:
                yield item.conn, item.event

    def restart_dead(self, now: float) -> bool:
        """With ``dpd_action`` "restart": once the initiator's connection has reported its peer dead (``DeadPeer``,
        then ``IkeSaFailed``: its pairs released by the driver), a new connection from the same configuration
        starts IKE_SA_INIT (strongSwan's ``dpd_action = restart``, Libreswan's ``dpdaction=restart``); True when
        it did, so the driver sends its first request."""
        if not self._dead or self.dpd_action != "restart" or not isinstance(self.engine, IkeConnection) \
                or self.engine.state != IkeState.FAILED:
            return False
        self._dead = False
        self.engine = IkeConnection(engine_config(self.config, self.children), initiator=True)
        self.engine.initiate(now)
        return True

    def get_timer(self) -> float | None:
        return self.engine.get_timer()

    def handle_timer(self, now: float) -> None:
        self.engine.handle_timer(now)

    def close(self, now: float) -> None:
        """Delete every IKE SA (each connection's Delete; a no-op for one not established)."""
        for conn in self.connections():
            conn.close(now)

    def is_open(self) -> bool:
        return any(c.state in (IkeState.ESTABLISHED, IkeState.DELETING, IkeState.REKEYED) for c in self.connections())

    # -- pairs and their connections ------------------------------------------------------------------------

    def adopt(self, spi_in: int, conn: IkeConnection | None) -> None:
        if conn is not None:
            self.owner[spi_in] = conn

    def release(self, conn: IkeConnection | None, dp: DataPlane) -> list[Pair]:
        """Forget the pairs of a connection whose IKE SA is gone (all of them when ``conn`` is unknown)."""
        gone = [spi for spi in dp.pairs if conn is None or self.owner.get(spi, conn) is conn]
        pairs = [p for spi in gone if (p := dp.remove(spi)) is not None]
        for spi in gone:
            self.owner.pop(spi, None)
        return pairs

    def report_usage(self, dp: DataPlane, now: float) -> None:
        """Tell each pair's connection what it has carried (its byte/packet lifetimes read it): the busier
        direction's count, as a kernel's per-SA lifetimes (strongSwan's rekey_bytes, Libreswan's
        ipsec-max-bytes) count each SA of the pair alone."""
        for p in dp.pairs.values():
            conn = self.owner.get(p.spi_in) or self.current
            if conn is not None:
                ci, co = p.inn.counters, p.out.counters
                conn.child_usage(p.spi_in, max(ci.bytes_in, co.bytes_out), max(ci.packets_in, co.packets_out), now)

    # -- commands -------------------------------------------------------------------------------------------

    def _established(self, what: str) -> IkeConnection:
        conn = self.current
        if conn is None or conn.state != IkeState.ESTABLISHED:
            raise IpsecLabError(f"cannot {what}: no IKE SA is established")
        return conn

    def index_of(self, pair: Pair) -> int:
        """0 for the first Child SA's lineage, k for the additional Child SA ``children[k - 1]``."""
        for k, (_, local, _) in enumerate(self.children, start=1):
            nets = [ipaddress.ip_network(n, strict=False) for n in local]
            if pair.selectors.local and all(any(_inside(ts.start, ts.end, ts.version, n) for n in nets)
                                            for ts in pair.selectors.local):
                return k
        return 0

    def pair_for(self, dp: DataPlane, index: int, conn: IkeConnection) -> Pair:
        mine = [p for p in dp.pairs.values() if self.owner.get(p.spi_in, conn) is conn and self.index_of(p) == index]
        if not mine:
            raise IpsecLabError(f"no Child SA {self.child_name(index)} is installed")
        return mine[-1]

    def child_name(self, index: int) -> str:
        return "the first" if index == 0 else repr(self.children[index - 1][0])

    def index_named(self, name: str | None) -> int:
        if name is None:
            return 0
        names = [c[0] for c in self.children]
        if name not in names:
            raise IpsecLabError(f"no additional Child SA named {name!r} (the spec has {', '.join(names) or 'none'})")
        return names.index(name) + 1

    def rekey(self, what: str, dp: DataPlane, now: float, name: str | None = None) -> dict[str, object]:
        """Rekey a Child SA (``what="child"``: the first, or the additional one ``name``) or the IKE SA."""
        conn = self._established(f"rekey the {what} SA")
        try:
            if what == "ike":
                conn.rekey_ike(now)
                return {"what": "ike", "spi_i": conn.spi_i.hex(), "spi_r": conn.spi_r.hex()}
            if what != "child":
                raise IpsecLabError(f"rekey what {what!r}: 'child' or 'ike'")
            pair = self.pair_for(dp, self.index_named(name), conn)
            new = conn.rekey_child(pair.spi_in, now)
        except LocalProtocolError as exc:
            raise IpsecLabError(f"the engine refused: {exc}") from None
        return {"what": "child", "old_spi_in": pair.spi_in, "spi_in": new}

    def start_child(self, name: str, now: float) -> dict[str, object]:
        """Ask for the additional Child SA ``name`` (CREATE_CHILD_SA with its selectors)."""
        index = self.index_named(name)
        conn = self._established(f"create the Child SA {name!r}")
        _, local, remote = self.children[index - 1]
        try:
            spi = conn.create_child(now, local_ts=local, remote_ts=remote)
        except LocalProtocolError as exc:
            raise IpsecLabError(f"the engine refused: {exc}") from None
        return {"name": name, "spi_in": spi}

    def delete(self, what: str, dp: DataPlane, now: float, name: str | None = None) -> dict[str, object]:
        """Delete a Child SA (the first, or ``name``) or the current IKE SA (and so its Child SAs)."""
        conn = self._established(f"delete the {what} SA")
        if what == "ike":
            conn.close(now)
            return {"what": "ike"}
        if what != "child":
            raise IpsecLabError(f"delete what {what!r}: 'child' or 'ike'")
        pair = self.pair_for(dp, self.index_named(name), conn)
        try:
            conn.delete_child(pair.spi_in, now)
        except LocalProtocolError as exc:
            raise IpsecLabError(f"the engine refused: {exc}") from None
        return {"what": "child", "spi_in": pair.spi_in}


def _inside(start: int, end: int, version: int, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return version == net.version and int(net.network_address) <= start and end <= int(net.broadcast_address)

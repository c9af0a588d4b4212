"""Reauthentication, make-before-break (``ike.reauth``), against the ``Responder`` listener (issue 11, bonus).

The oracles: the wire (a second IKE_SA_INIT and IKE_AUTH, so the peer authenticated us again, unlike an IKE
rekey), and a model data plane built from both sides' events whose ESP SAs must carry a packet each way on
every selector pair after every exchange, from before the reauthentication until after the old IKE SA is gone.
"""

from __future__ import annotations

from ipseclab.esp import EspSA
from ipseclab.ike import (
    ChildSaDeleted,
    ChildSaEstablished,
    Event,
    IkeConnection,
    IkeSaDeleted,
    IkeState,
    Reauthenticated,
    Reauthentication,
    ReauthenticationFailed,
    Responder,
)
from ipseclab.packets.enums import ExchangeType
from ipseclab.packets.message import Message
from ipseclab.packets.payloads import AuthPayload

from .ike_wire import configs
from .test_ike_engine import PING, esp_pair

I_ADDR, R_ADDR = ("192.0.2.1", 500), ("192.0.2.2", 500)
EXTRA = (("10.1.1.0/24",), ("10.2.2.0/24",))


def sel(sa: ChildSaEstablished | None) -> tuple[bytes, ...]:
    """A Child SA's selectors, comparable: TSi as encoded, a separator, TSr."""
    assert sa is not None
    return (*(t.encode() for t in sa.local_ts), b"|", *(t.encode() for t in sa.remote_ts))


class Plane:
    """One side's SAs as a driver keeps them: outbound per selector pair, inbound by SPI, each with its connection."""

    def __init__(self) -> None:
        self.out: dict[tuple[bytes, ...], tuple[int, EspSA, int]] = {}  # selectors -> (SPI, SA, id of its conn)
        self.inbound: dict[int, tuple[EspSA, int]] = {}

    def take(self, conn: IkeConnection | None, event: Event) -> None:
        if conn is None:
            return
        if isinstance(event, ChildSaEstablished):
            out, inn = esp_pair(event)
            self.inbound[event.spi_in] = (inn, id(conn))
            if event.outbound:
                self.out[sel(event)] = (event.spi_out, out, id(conn))
        elif isinstance(event, ChildSaDeleted):
            self.inbound.pop(event.spi_in, None)
        elif isinstance(event, IkeSaDeleted):  # its Child SAs go with it, both directions
            self.inbound = {k: v for k, v in self.inbound.items() if v[1] != id(conn)}
            self.out = {k: v for k, v in self.out.items() if v[2] != id(conn)}


def flows(a: Plane, b: Plane) -> bool:
    """A packet on each of ``a``'s outbound pairs decrypts on ``b``."""
    return bool(a.out) and all(spi in b.inbound and b.inbound[spi][0].unprotect(sa.protect(PING)) == PING
                               for spi, sa, _ in a.out.values())


class Bench:
    def __init__(self) -> None:
        ci, cr = configs(remote_endpoint=R_ADDR)
        self.r = Responder(cr)
        self.i = IkeConnection(ci, initiator=True)
        self.reauth: Reauthentication | None = None
        self.planes = {"i": Plane(), "r": Plane()}
        self.log: list[tuple[str, bytes]] = []
        self.events: list[Event] = []

    def initiator_out(self) -> list[bytes]:
        src = self.reauth if self.reauth is not None else self.i
        return [d.data for d in src.datagrams_to_send(0.0)]

    def feed(self) -> None:
        src = self.reauth if self.reauth is not None else None
        if src is None:
            while (e := self.i.next_event()) is not None:
                self.planes["i"].take(self.i, e)
                self.events.append(e)
        else:
            while (item := src.next_event()) is not None:
                self.planes["i"].take(item.conn, item.event)
                self.events.append(item.event)
        while (item := self.r.next_event()) is not None:
            self.planes["r"].take(item.conn, item.event)

    def pump(self, check: bool = True) -> None:
        """Exchange by exchange: everything the initiator has, then everything the responder has; traffic is
        checked after each round."""
        for _ in range(30):
            out = self.initiator_out()
            for d in out:
                self.log.append(("i>r", d))
                self.r.receive_datagram(d, 0.0, I_ADDR)
            back = [d.data for d in self.r.datagrams_to_send(0.0)]
            for d in back:
                self.log.append(("r>i", d))
                (self.reauth or self.i).receive_datagram(d, 0.0, R_ADDR)
            self.feed()
            if check:
                assert flows(self.planes["i"], self.planes["r"]) and flows(self.planes["r"], self.planes["i"]), \
                    "a packet would be lost"
            if not out and not back:
                return


def established() -> Bench:
    b = Bench()
    b.i.initiate(0.0)
    b.pump(check=False)
    b.i.create_child(0.0, local_ts=EXTRA[0], remote_ts=EXTRA[1])
    b.pump()
    assert b.i.state == IkeState.ESTABLISHED and len(b.i.child_sas()) == 2
    return b


def test_make_before_break_reauthenticates_recreates_every_child_sa_and_then_deletes_the_old_ike_sa():
    b = established()
    old = b.i
    old_spis = (old.spi_i, old.spi_r)
    selectors = sorted(sel(c.sa) for c in old.child_sas())
    start = len(b.log)
    b.reauth = Reauthentication.start(old, 0.0)
    b.pump()
    new = b.reauth.new
    # a new authentication on the wire: IKE_SA_INIT and IKE_AUTH again, a CREATE_CHILD_SA, the old one's Delete
    exchanges = [d[18] for direction, d in b.log[start:] if direction == "i>r"]
    assert exchanges == [ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA,
                         ExchangeType.INFORMATIONAL]
    assert old.state == IkeState.CLOSED and new.state == IkeState.ESTABLISHED
    assert sorted(sel(c.sa) for c in new.child_sas()) == selectors
    (done,) = [e for e in b.events if isinstance(e, Reauthenticated)]
    assert (done.old_spi_i, done.old_spi_r) == old_spis and (done.spi_i, done.spi_r) == (new.spi_i, new.spi_r)
    assert b.reauth.phase == "done"
    (theirs,) = b.r.ike_connections()  # the responder holds the new IKE SA alone
    assert theirs.spi_i == new.spi_i and len(theirs.child_sas()) == 2
    assert set(b.planes["i"].inbound) == {c.key for c in new.child_sas()}


def test_a_failed_reauthentication_leaves_the_old_ike_sa_and_its_child_sas_alone():
    b = established()
    old = b.i

    def no_auth(msg: Message) -> Message:  # the new IKE_AUTH without its AUTH payload: the peer refuses it
        if msg.exchange == ExchangeType.IKE_AUTH and msg.encrypted is not None and msg.encrypted.payloads:
            msg.encrypted.payloads[:] = [p for p in msg.encrypted.payloads if not isinstance(p, AuthPayload)]
        return msg

    old.on_send = no_auth
    b.reauth = Reauthentication.start(old, 0.0)
    b.pump()
    assert [type(e) for e in b.events if isinstance(e, ReauthenticationFailed)] == [ReauthenticationFailed]
    assert b.reauth.phase == "failed" and b.reauth.new.state == IkeState.FAILED
    assert old.state == IkeState.ESTABLISHED and len(old.child_sas()) == 2
    old.on_send = None
    old.create_child(0.0)  # the old IKE SA still works
    b.pump()
    assert len(old.child_sas()) == 3

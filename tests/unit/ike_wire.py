"""An IKEv2 initiator and responder wired together in memory, with a fake clock, loss and a log.

Shared by the engine tests (``test_ike_engine``, ``test_ike_hardening``, ``test_ike_fuzz``) and the long
fuzz run (``tests.fuzz.engine``): every datagram goes through ``receive_datagram`` as a driver would
hand it over, so the tests see only what a driver sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipseclab.ike import Event, IkeConfig, IkeConnection

Filter = Callable[[str, bytes], bool]  # (direction "i>r"/"r>i", datagram) -> deliver?


def sent(conn: IkeConnection, now: float) -> list[bytes]:
    """The bytes of what ``conn`` has to send (``datagrams_to_send`` also says where each goes)."""
    return [d.data for d in conn.datagrams_to_send(now)]


def configs(**kw: object) -> tuple[IkeConfig, IkeConfig]:
    """Matching initiator and responder configs; ``r_*`` keys apply to the responder only."""
    ri = {k[2:]: v for k, v in kw.items() if k.startswith("r_")}
    ii = {k: v for k, v in kw.items() if not k.startswith("r_")}
    base = dict(psk=b"correct horse battery staple")
    ci = IkeConfig("moon.strongswan.org", "sun.strongswan.org", **{**base, **ii})  # type: ignore[arg-type]
    rkw = {**base, **{k: v for k, v in ii.items() if k not in ("local_ts", "remote_ts")}, **ri}
    cr = IkeConfig("sun.strongswan.org", "moon.strongswan.org", **rkw)  # type: ignore[arg-type]
    return ci, cr


class Wire:
    """Two connections, a clock, a log of every datagram and the events each side emitted."""

    def __init__(self, ci: IkeConfig, cr: IkeConfig, deliver: Filter | None = None,
                 sources: dict[str, tuple[str, int]] | None = None, **conn_kw: Any) -> None:
        self.sources = sources or {}  # direction -> the source address the receiver sees
        self.i = IkeConnection(ci, initiator=True, **conn_kw)  # conn_kw: e.g. a shared MemoryBudget
        self.r = IkeConnection(cr, initiator=False, **conn_kw)
        self.now = 0.0
        self.deliver = deliver or (lambda _d, _b: True)
        self.log: list[tuple[str, bytes]] = []
        self.events: dict[str, list[Event]] = {"i": [], "r": []}

    def pump(self, rounds: int = 20) -> None:
        """Move datagrams both ways until nothing is in flight (no timers)."""
        for _ in range(rounds):
            moved = False
            for src, dst, name in ((self.i, self.r, "i>r"), (self.r, self.i, "r>i")):
                for d in sent(src, self.now):
                    moved = True
                    self.log.append((name, d))
                    if self.deliver(name, d):
                        dst.receive_datagram(d, self.now, self.sources.get(name))
            self.collect()
            if not moved:
                return

    def run_timers(self, until: float) -> None:
        """Advance the clock timer by timer (both sides), pumping after each."""
        while True:
            timers = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                return
            self.now = min(timers)
            self.i.handle_timer(self.now)
            self.r.handle_timer(self.now)
            self.pump()

    def collect(self) -> None:
        for name, c in (("i", self.i), ("r", self.r)):
            while (e := c.next_event()) is not None:
                self.events[name].append(e)

    def of(self, side: str, cls: type) -> list:
        return [e for e in self.events[side] if isinstance(e, cls)]


def handshake(ci: IkeConfig, cr: IkeConfig, deliver: Filter | None = None,
              sources: dict[str, tuple[str, int]] | None = None, **conn_kw: Any) -> Wire:
    w = Wire(ci, cr, deliver, sources, **conn_kw)
    w.i.initiate(w.now)
    w.pump()
    return w


def wireshark_view(w: Wire, directory: Any) -> list[Any]:
    """Wireshark's records of every datagram ``w`` logged, given only the key table made from the
    initiator's IkeSaEstablished event (the engine's messages, checked by an outside dissector)."""
    from pathlib import Path

    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    from ipseclab.ike import IkeSaEstablished
    from ipseclab.pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table, write_ikev2_decryption_table
    from ipseclab.pcap.wireshark import ike_records

    out = Path(directory)
    frames = [Ether() / IP(src="198.51.100.10" if d == "i>r" else "198.51.100.20",
                           dst="198.51.100.20" if d == "i>r" else "198.51.100.10") / UDP(sport=500, dport=500)
              / Raw(data) for d, data in w.log]
    wrpcap(str(out / "ike.pcap"), frames)
    (e,) = w.of("i", IkeSaEstablished)
    k = e.keys
    row = IkeSaKeyRow(e.spi_i, e.spi_r, k.sk_ei, k.sk_er, e.encr_id, e.encr_key_bits, k.sk_ai, k.sk_ar,
                      e.integ_id or 0)
    assert row.wireshark_can_decrypt, row.to_row()
    write_ikev2_decryption_table(out / "keys", [row])
    return ike_records(out / "ike.pcap", read_ikev2_decryption_table(out / "keys"))

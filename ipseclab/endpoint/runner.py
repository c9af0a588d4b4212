"""One endpoint process: the IKEv2 engine on UDP 500/4500, the ESP/AH data plane on raw IP sockets, and a TUN device.

It runs in the current network namespace (the lab puts it in a side's namespace; ``ipseclab endpoint
--config FILE`` wherever it is started) on the host kernel: no kernel ESP is needed, the data plane is
ipseclab's.  Ordinary traffic of the namespace that the negotiated selectors cover is routed into the TUN
device (``tun.py``), protected by the Child SA its SPD policy names (``dataplane.py``) and sent; what
arrives is checked (replay, ICV, RFC 4301 5.2 selectors), decrypted and written back into the TUN device, so
``ping`` or a TCP connection in the namespace crosses the tunnel.

It is driven over a line protocol, one JSON object per line:

* stdin, commands: ``{"cmd": "initiate"}``, ``{"cmd": "status"}``, ``{"cmd": "close"}`` (Delete the IKE SA),
  ``{"cmd": "dummy", "size": N, "count": K}`` (K dummy packets of N bytes, next header 59, on each ESP Child SA
  that carries our traffic: RFC 4303 2.6), ``{"cmd": "quit"}``; the lifecycle commands (``sessions.py``)
  ``{"cmd": "rekey", "what": "child" | "ike"}`` (a Child SA: the first, or ``"name"``: an additional one),
  ``{"cmd": "child", "name": ...}`` (create the additional Child SA of that name), ``{"cmd": "delete", "what":
  "child" | "ike"}``; and ``{"cmd": "delay", "ms": N}``, which holds everything the endpoint sends for N ms (what
  netem does in a daemon's guest: the host kernel the endpoint runs on may have no netem);
* stdout: ``{"kind": "ready"}`` once the sockets and the TUN device are up, ``{"kind": "event", "type": ...}``
  for each engine event (keys left out), ``{"kind": "answer", "cmd": ...}`` for each command, and
  ``{"kind": "error", "message": ...}`` for a command it could not take.

As the initiator the engine is one ``IkeConnection``; as the responder a ``Responder`` (several IKE SAs, e.g. a
peer's reauthentication; cookies above ``cookie_threshold`` half-open SAs).  The engine owns every IKE deadline
(retransmissions, NAT keepalives, DPD, lifetimes): the loop sleeps until
``get_timer()`` and sends each datagram where the engine says (``Datagram.addr``, from port 4500 when
``Datagram.natt``).  ESP goes to the peer's address as the engine last verified it, or as the last ESP
packet that an SA accepted came from (a NAT's mapping may move); unverified input never moves it.

Key material goes to files in the output directory, never to stdout: ``ikev2_decryption_table`` and
``esp_sa`` (Wireshark's formats), so the lab's captures of this endpoint decrypt like any other peer's.
Every event is also appended to ``events.jsonl`` there, and the data plane's counters go to
``counters.json`` at exit (and in every ``status`` answer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import ipaddress
import itertools
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from ..analysis.keyrows import esp_sa_row, ike_sa_row
from ..errors import IpsecLabError
from ..esp import EspSA
from ..esp.iphdr import PROTO_AH, PROTO_ESP
from ..ike import ChildSaDeleted, ChildSaEstablished, IkeConfig, IkeConnection, IkeSaEstablished, IkeSaKeysDerived
from ..ike.events import ChildSaOutbound, Event, IkeSaDeleted, IkeSaFailed
from ..packets.natt import IKE_PORT, KEEPALIVE, NATT_PORT, NON_ESP_MARKER
from ..pcap.esp_keyfiles import EspSaRow, read_esp_sa, write_esp_sa
from ..pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table, write_ikev2_decryption_table
from . import auth_spec
from .dataplane import DataPlane, Pair, selector_networks
from .sessions import Child, Sessions
from .tun import BYPASS_MARK, Tun, rp_filter_drops

BATCH = 64  # packets taken from one source per turn of the loop, so none starves the others
CLOSE_GRACE = 3.0  # seconds to wait for the peer to answer our Delete when interrupted


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What ``python -m ipseclab.endpoint SPEC.json`` reads (the lab's driver writes it from a PeerConfig).

    ``encap`` forces UDP encapsulation without a NAT as strongSwan's ``encap=yes`` does: our
    NAT_DETECTION_SOURCE_IP hashes a port we do not use, so both sides see a NAT in front of us (RFC 7296
    2.23) and move IKE and ESP to UDP 4500.  ``tun`` names the TUN device; ``replay_window`` is in packets
    (0: no replay check, RFC 4303 3.4.3); ``tfc_padding`` pads each outbound tunnel-mode ESP inner packet to
    that many bytes (RFC 4303 2.7; 0: off).  ``children``: the additional Child SAs (name, local_ts, remote_ts)
    the ``child`` command creates and a peer may ask for; ``cookie_threshold`` and ``half_open_limit`` are the
    responder's (``ike.responder``).
    """

    ike: IkeConfig
    local: str
    remote: str | None  # None: a responder that takes whoever initiates (e.g. from behind a NAT)
    initiator: bool
    out_dir: Path
    port: int = IKE_PORT
    encap: bool = False
    tun: str = "ipsec0"
    replay_window: int = 64
    tfc_padding: int = 0
    children: tuple[Child, ...] = ()
    cookie_threshold: int | None = 10
    half_open_limit: int = 1000
    dpd_action: str = "clear"  # or "restart" (an initiator): Sessions.restart_dead

    @classmethod
    def from_json(cls, text: str) -> EndpointSpec:
        raw = json.loads(text)
        ike = dict(raw["ike"])
        psk = ike.get("psk", "")
        ike["psk"] = psk.encode() if isinstance(psk, str) else bytes.fromhex(ike["psk_hex"])
        ike.pop("psk_hex", None)
        for k in ("local_auth", "remote_auth"):
            ike[k] = auth_spec.from_json(ike.get(k))
        for k in ("ike_proposals", "esp_proposals", "ah_proposals", "local_ts", "remote_ts"):
            if k in ike:
                ike[k] = tuple(ike[k])
        for k in ("local_endpoint", "remote_endpoint"):
            if ike.get(k) is not None:
                ike[k] = tuple(ike[k])
        ike["extra_ts"] = tuple((tuple(local), tuple(remote)) for local, remote in ike.get("extra_ts", ()))
        children = tuple((str(c["name"]), tuple(c["local_ts"]), tuple(c["remote_ts"])) for c in raw.get("children", ()))
        threshold = raw.get("cookie_threshold", 10)
        return cls(IkeConfig(**ike), raw["local"], raw.get("remote"), bool(raw["initiator"]),
                   Path(raw["out_dir"]), int(raw.get("port", IKE_PORT)), bool(raw.get("encap", False)),
                   str(raw.get("tun", "ipsec0")), int(raw.get("replay_window", 64)), int(raw.get("tfc_padding", 0)),
                   children, None if threshold is None else int(threshold), int(raw.get("half_open_limit", 1000)),
                   _dpd_action(raw.get("dpd_action", "clear")))

    def to_json(self) -> str:
        ike = {f.name: getattr(self.ike, f.name) for f in dataclasses.fields(self.ike)}
        ike["psk"] = self.ike.psk.decode()
        ike["local_auth"] = auth_spec.to_json(self.ike.local_auth)
        ike["remote_auth"] = auth_spec.to_json(self.ike.remote_auth)
        return json.dumps({"ike": ike, "local": self.local, "remote": self.remote, "initiator": self.initiator,
                           "out_dir": str(self.out_dir), "port": self.port, "encap": self.encap, "tun": self.tun,
                           "replay_window": self.replay_window, "tfc_padding": self.tfc_padding,
                           "children": [{"name": n, "local_ts": list(lo), "remote_ts": list(re)}
                                        for n, lo, re in self.children],
                           "cookie_threshold": self.cookie_threshold, "half_open_limit": self.half_open_limit,
                           "dpd_action": self.dpd_action},
                          indent=2)

    def engine_config(self) -> IkeConfig:
        """The engine's configuration; with ``encap`` our NAT detection hash names port 0 (see above)."""
        if self.encap:
            return dataclasses.replace(self.ike, local_endpoint=(self.local, 0))
        return self.ike


def _dpd_action(value: object) -> str:
    if value not in ("clear", "restart"):
        raise ValueError(f"dpd_action must be 'clear' or 'restart', not {value!r}")
    return str(value)


def jsonable(value: Any) -> Any:
    """Events as JSON: bytes as hex, addresses and enums as text; key material (``keys``, ``*_key_*``) is left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "keys" and "_key" not in f.name}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


class Endpoint:
    """The loop (``run``): sockets and the TUN device in, engine and data plane in the middle, out again."""

    def __init__(self, spec: EndpointSpec, out: TextIO = sys.stdout) -> None:
        self.spec = spec
        self.out = out
        self.ike = Sessions(spec.engine_config(), spec.initiator, spec.children, spec.cookie_threshold,
                            spec.half_open_limit, spec.dpd_action)
        self.dp = DataPlane(spec.local, replay_window=spec.replay_window, tfc_padding=spec.tfc_padding)
        # an endpoint started again in its directory (the lab's Revive step after a Kill) keeps the key rows of
        # the SAs it had before: the capture holds their traffic too
        ike_table, esp_table = spec.out_dir / "ikev2_decryption_table", spec.out_dir / "esp_sa"
        self.ike_rows: list[IkeSaKeyRow] = read_ikev2_decryption_table(ike_table) if ike_table.exists() else []
        self.esp_rows: list[EspSaRow] = read_esp_sa(esp_table) if esp_table.exists() else []
        # where the peer's ESP goes: its address as the engine verified it (or as configured), and its
        # UDP 4500 port (a NAT's mapping) as the last ESP-in-UDP packet an SA accepted came from
        self.peer_ip = spec.remote
        self.peer_natt_port = NATT_PORT
        spec.out_dir.mkdir(parents=True, exist_ok=True)
        self.v6 = ipaddress.ip_address(spec.local).version == 6
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((spec.local, spec.port))
        self.natt = socket.socket(fam, socket.SOCK_DGRAM)
        self.natt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.natt.bind((spec.local, NATT_PORT))
        # Raw sockets.  IPv4: whole packets in and out.  IPv6: the kernel hands over the payload only, so
        # the header is rebuilt from the addresses (IPV6_PKTINFO gives ours); IPPROTO_RAW sends whole
        # packets in both families, so AH's ICV can cover the header as it goes out.
        self.esp_rx = socket.socket(fam, socket.SOCK_RAW, PROTO_ESP)
        self.ah_rx = socket.socket(fam, socket.SOCK_RAW, PROTO_AH)
        if self.v6:
            for s in (self.esp_rx, self.ah_rx):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self.ip_tx = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # the kernel routes what this socket sends as protocol "raw", not ESP/AH: its mark keeps it on the main
        # table (tun.py), so a transport-mode packet for the peer does not come back into the TUN device
        self.ip_tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, BYPASS_MARK)
        for s in (self.udp, self.natt, self.esp_rx, self.ah_rx):
            s.setblocking(False)
        ports = tuple(sorted({spec.port, IKE_PORT, NATT_PORT}))
        self.tun = Tun(spec.tun, ike_ports=ports)
        self._rp_base = rp_filter_drops()
        self._running = True
        self._close_by: float | None = None  # interrupted: Delete sent, exit by then at the latest
        self._usage_at = 0.0
        self.delay = 0.0  # seconds every send is held (the ``delay`` command)
        self._held: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []  # a heap by due time
        self._order = itertools.count()  # keeps held packets in the order they were sent

    def close(self) -> None:
        self.write_counters()
        for s in (self.udp, self.natt, self.esp_rx, self.ah_rx, self.ip_tx):
            s.close()
        self.tun.close()

    def say(self, kind: str, /, **fields: Any) -> None:
        # an event's own ``kind`` field (DatagramDropped has one) must not replace the line's kind
        if "kind" in fields:
            fields["event_kind"] = fields.pop("kind")
        self.out.write(json.dumps({"kind": kind, **fields}) + "\n")
        self.out.flush()

    def counters(self) -> dict[str, Any]:
        """The data plane's drop counters by name (clear_dropped from the kernel), the engine's, and each SA's
        with what the probes need to inject on it (keys are in ``esp_sa``): mode, tunnel addresses, UDP
        encapsulation, ESN, the replay window's size and top (highest sequence number received) and the
        outbound SA's last sequence number sent, as ``ip -s xfrm state`` shows a kernel's."""
        self.dp.counters.clear_dropped = max(0, rp_filter_drops() - self._rp_base)
        return {
            "dataplane": self.dp.counters.as_dict(),
            "engine": dataclasses.asdict(self.conn.counters) if self.conn is not None else {},
            **({"listener": dataclasses.asdict(self.ike.engine.counters)} if not self.spec.initiator else {}),
            "child_sas": {f"{p.spi_in:#010x}": {"spi_out": f"{p.spi_out:#010x}", "carries_outbound": p.policy
                                                is not None, "in": p.inn.counters.as_dict(),
                                                "out": p.out.counters.as_dict(), **_sa_facts(p)}
                          for p in self.dp.pairs.values()},
        }

    @property
    def conn(self) -> IkeConnection | None:
        """The connection commands act on (the responder's newest established one)."""
        return self.ike.current

    def write_counters(self) -> None:
        (self.spec.out_dir / "counters.json").write_text(json.dumps(self.counters(), indent=2) + "\n")

    # -- the loop ----------------------------------------------------------------------------------

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: Delete the IKE SA (and so its Child SAs), then leave once answered or after a grace."""
        if self._close_by is not None:
            self._running = False  # a second interrupt: leave now
            return
        now = time.monotonic()
        self._close_by = now + CLOSE_GRACE
        self.ike.close(now)

    def run(self, commands: TextIO | None, exit_on_eof: bool = True) -> None:
        self.say("ready", local=self.spec.local, port=self.spec.port, tun=self.tun.name)
        buffered = ""
        while self._running:
            now = time.monotonic()
            if self._close_by is not None and (now >= self._close_by or not self.ike.is_open()):
                break  # interrupted, and the Delete was answered (or never needed, or not in time)
            wake = [t for t in (self.ike.get_timer(), self._close_by, self._held[0][0] if self._held else None)
                    if t is not None]
            timeout = max(0.0, min(wake) - now) if wake else 1.0
            watched: list[Any] = [self.udp, self.natt, self.esp_rx, self.ah_rx, self.tun.fd]
            if commands is not None:
                watched.append(commands)
            try:
                readable, _, _ = select.select(watched, [], [], min(timeout, 1.0))
            except InterruptedError:
                continue
            now = time.monotonic()
            if self.udp in readable:
                self._receive_ike(self.udp, natt=False, now=now)
            if self.natt in readable:
                self._receive_natt(now)
            for raw in (self.esp_rx, self.ah_rx):
                if raw in readable:
                    self._receive_raw(raw)
            if self.tun.fd in readable:
                self._from_tun()
            if commands is not None and commands in readable:
                chunk = os.read(commands.fileno(), 65536).decode()
                if not chunk:
                    if exit_on_eof:
                        break  # the driver went away
                    commands = None
                buffered += chunk
                while "\n" in buffered:
                    line, buffered = buffered.split("\n", 1)
                    if line.strip():
                        self._command(line, now)
            self.ike.handle_timer(now)
            if now >= self._usage_at:
                self._usage_at = now + 1.0  # what each Child SA carried, once a second (volume lifetimes)
                self.ike.report_usage(self.dp, now)
            self._flush(now)
            self._release_held(time.monotonic())

    def _flush(self, now: float) -> None:
        """Send what the engine has for the peer where the engine says, then act on its events."""
        for d in self.ike.datagrams(now):
            to = d.addr
            if to is None and self.spec.remote is not None:
                to = (self.spec.remote, self.spec.port)  # an engine configured without remote_endpoint
            if to is None:
                continue  # a responder that has heard from nobody has nobody to answer
            self._send(self.natt if d.natt else self.udp, d.payload(), to, now)
        for conn, event in self.ike.events():
            self._on_event(event, conn)
        if self.ike.restart_dead(now):  # dpd_action "restart": the new IKE_SA_INIT goes out now
            self._flush(now)

    def _send(self, sock: socket.socket, data: bytes, to: tuple[str, int], now: float) -> None:
        """Send now, or hold it ``delay`` seconds (in order) when the ``delay`` command asked for that."""
        if self.delay > 0 or self._held:
            heapq.heappush(self._held, (now + self.delay, next(self._order), sock, data, to))
            return
        with contextlib.suppress(OSError):  # unreachable for now (IKE: the engine retransmits) or a full buffer
            sock.sendto(data, to)

    def _release_held(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, _, sock, data, to = heapq.heappop(self._held)
            with contextlib.suppress(OSError):
                sock.sendto(data, to)

    def _verified_peer(self) -> None:
        """The peer's address as the engine last verified it (it keeps a datagram's source only if taken)."""
        conn = self.conn
        peer = conn.peer if conn is not None else None
        if conn is not None and peer is not None:
            self.peer_ip = peer[0]
            if conn.peer_natt:
                self.peer_natt_port = peer[1]

    def _receive_ike(self, sock: socket.socket, natt: bool, now: float) -> None:
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            self.ike.receive(data, now, (addr[0], addr[1]), natt)
            self._verified_peer()

    def _receive_natt(self, now: float) -> None:
        """UDP 4500 (RFC 3948 2.2): IKE after the non-ESP marker, a keepalive, or ESP."""
        for _ in range(BATCH):
            try:
                data, addr = self.natt.recvfrom(65535)
            except BlockingIOError:
                return
            if data[:4] == NON_ESP_MARKER:
                self.ike.receive(data[4:], now, (addr[0], addr[1]), True)
                self._verified_peer()
            elif data != KEEPALIVE and len(data) > 8:
                got = self.dp.inbound_udp(data, addr[0], self.spec.local)
                if got is not None:
                    self.peer_ip, self.peer_natt_port = addr[0], addr[1]  # an SA accepted it: verified
                    self.tun.write(got[1])

    def _receive_raw(self, sock: socket.socket) -> None:
        proto = PROTO_ESP if sock is self.esp_rx else PROTO_AH
        for _ in range(BATCH):
            try:
                if self.v6:
                    data, anc, _flags, addr = sock.recvmsg(65535, 64)
                    dst = self.spec.local
                    for level, kind, value in anc:
                        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                            dst = str(ipaddress.IPv6Address(value[:16]))
                    if dst != str(ipaddress.ip_address(self.spec.local)):
                        continue
                    packet = self.dp.ipv6_packet(data, proto, addr[0].split("%")[0], dst)
                else:
                    packet = sock.recv(65535)
                    if len(packet) < 20 or packet[16:20] != ipaddress.IPv4Address(self.spec.local).packed:
                        continue
            except BlockingIOError:
                return
            got = self.dp.inbound(packet)
            if got is not None:
                self.tun.write(got[1])

    def _from_tun(self) -> None:
        """Packets the kernel routed into the TUN device: protect each with its policy's SA and send it."""
        for _ in range(BATCH):
            packet = self.tun.read()
            if packet is None:
                return
            if packet[0] >> 4 == 6 and len(packet) >= 40 and (packet[24] == 0xFF or packet[8:10] == b"\xfe\x80"):
                continue  # the kernel's own chatter on the device (MLD, router solicitations): not traffic
            out = self.dp.outbound(packet)
            if out is None or self.peer_ip is None:
                continue
            # no route or a full buffer: dropped like any router would
            if out.udp:
                self._send(self.natt, out.data, (self.peer_ip, self.peer_natt_port), time.monotonic())
            else:
                self._send(self.ip_tx, out.data, (self.peer_ip, 0), time.monotonic())

    def _send_dummies(self, size: int, count: int) -> int:
        """The ``dummy`` command: ``count`` dummy packets on each pair carrying our traffic; how many went."""
        if self.peer_ip is None:
            return 0
        sent = 0
        for out in self.dp.dummies(size, count, self.peer_ip):
            with contextlib.suppress(OSError):  # as for traffic: dropped like any router would
                if out.udp:
                    self.natt.sendto(out.data, (self.peer_ip, self.peer_natt_port))
                else:
                    self.ip_tx.sendto(out.data, (self.peer_ip, 0))
                sent += 1
        return sent

    # -- events ------------------------------------------------------------------------------------

    def _install(self, event: ChildSaEstablished) -> None:
        peer = self.peer_ip or "0.0.0.0"
        pair = self.dp.install(event, peer)
        self.tun.add_routes(selector_networks(pair.selectors.remote), selector_networks(pair.selectors.local))
        if isinstance(pair.out, EspSA) and isinstance(pair.inn, EspSA):
            self.esp_rows += [esp_sa_row(pair.out, src=self.spec.local, dst=peer),
                              esp_sa_row(pair.inn, src=peer, dst=self.spec.local)]
            write_esp_sa(self.spec.out_dir / "esp_sa", self.esp_rows)

    def _uninstall(self, pair: Pair | None) -> None:
        if pair is not None:
            self.tun.remove_routes(selector_networks(pair.selectors.remote))

    def _on_event(self, event: Event, conn: IkeConnection | None = None) -> None:
        record = {"type": type(event).__name__, **jsonable(event)}
        with (self.spec.out_dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if isinstance(event, IkeSaKeysDerived | IkeSaEstablished):
            # a row as soon as IKE_SA_INIT gave the keys, so a refused IKE_AUTH decrypts too; one row per IKE SA
            row = ike_sa_row(event)
            if all((r.spi_i, r.spi_r) != (row.spi_i, row.spi_r) for r in self.ike_rows):
                self.ike_rows.append(row)
                write_ikev2_decryption_table(self.spec.out_dir / "ikev2_decryption_table", self.ike_rows)
        elif isinstance(event, ChildSaEstablished):
            self._install(event)
            self.ike.adopt(event.spi_in, conn)
        elif isinstance(event, ChildSaOutbound):  # the engine's rekey hand-over: outbound moves now
            self.dp.carry(event.spi_in, event.replaced)
        elif isinstance(event, ChildSaDeleted):
            self._uninstall(self.dp.remove(event.spi_in))
            self.ike.owner.pop(event.spi_in, None)
        elif isinstance(event, IkeSaDeleted | IkeSaFailed):  # that IKE SA's pairs go, another's stay
            for pair in self.ike.release(conn, self.dp):
                self._uninstall(pair)
        self.say("event", **record)

    # -- commands ----------------------------------------------------------------------------------

    def _command(self, line: str, now: float) -> None:
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "initiate":
                if not isinstance(self.ike.engine, IkeConnection):
                    raise IpsecLabError("a responder does not initiate (the spec says initiator: false)")
                self.ike.engine.initiate(now)
                self.say("answer", cmd=name)
            elif name == "status":
                self.say("answer", cmd=name, state=str(self.ike.state), peer=self.peer_ip,
                         ike_sas=len(self.ike.connections()), **self.counters())
            elif name == "close":
                self.ike.close(now)
                self.say("answer", cmd=name)
            elif name == "dummy":
                size, count = int(cmd.get("size", 0)), int(cmd.get("count", 1))
                if not (0 <= size <= 65000 and 0 < count <= 1000):
                    raise IpsecLabError(f"dummy: size must be 0..65000 bytes and count 1..1000, not {size}, {count}")
                self.say("answer", cmd=name, sent=self._send_dummies(size, count))
            elif name == "rekey":
                self.say("answer", cmd=name, **self.ike.rekey(str(cmd.get("what", "child")), self.dp, now,
                                                              cmd.get("name")))
            elif name == "child":
                self.say("answer", cmd=name, **self.ike.start_child(str(cmd["name"]), now))
            elif name == "delete":
                self.say("answer", cmd=name, **self.ike.delete(str(cmd.get("what", "child")), self.dp, now,
                                                               cmd.get("name")))
            elif name == "delay":
                ms = float(cmd["ms"])
                if not 0 <= ms <= 60_000:
                    raise IpsecLabError(f"delay {ms} ms: use 0 to 60000")
                self.delay = ms / 1000
                self.say("answer", cmd=name, ms=ms)
            elif name == "quit":
                self._running = False
                self.say("answer", cmd=name)
            else:
                raise IpsecLabError(f"unknown command {name!r}: initiate, status, close, dummy, rekey, child, delete, "
                                    "delay or quit")
        except (IpsecLabError, KeyError, ValueError, TypeError) as exc:
            self.say("error", message=f"{type(exc).__name__}: {exc}", line=line)


def _sa_facts(pair: Pair) -> dict[str, Any]:
    """What a ``status`` answer says of one pair besides its counters (see Endpoint.counters)."""
    inn, out = pair.inn, pair.out
    return {"protocol": inn.protocol_name.lower(), "mode": pair.mode, "tunnel": list(inn.tunnel or ()),
            "udp_encap": pair.udp_encap, "esn": inn.esn, "replay_window": inn.window.size, "top": inn.window.top,
            "seq_out": out.seq}


def serve(spec: EndpointSpec, commands: TextIO | None, *, initiate: bool = False, exit_on_eof: bool = True,
          out: TextIO = sys.stdout) -> int:
    """Run one endpoint until told to quit or interrupted (SIGINT/SIGTERM close the SAs first)."""
    ep = Endpoint(spec, out)
    old = {sig: signal.signal(sig, ep.interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if initiate and isinstance(ep.ike.engine, IkeConnection):
            ep.ike.engine.initiate(time.monotonic())
        ep.run(commands, exit_on_eof=exit_on_eof)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        ep.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ipseclab.endpoint SPEC.json   (see ipseclab/endpoint/runner.py)", file=sys.stderr)
        return 2
    try:
        spec = EndpointSpec.from_json(Path(argv[0]).read_text())
    except (OSError, ValueError, KeyError, TypeError, IpsecLabError) as exc:
        print(f"ipseclab endpoint: cannot use {argv[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(spec, sys.stdin)
    except IpsecLabError as exc:
        print(f"ipseclab endpoint: {exc}", file=sys.stderr)
        return 1

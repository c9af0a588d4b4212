"""One endpoint process: the IKEv2 engine on UDP 500 and the ESP data plane on raw IP sockets.

It runs where the lab puts it (inside a network namespace, on the host kernel: no kernel ESP is
needed, the data plane is ipseclab's) and is driven over a line protocol, one JSON object per line:

* stdin, commands: ``{"cmd": "initiate"}``, ``{"cmd": "ping", "src": ..., "dst": ..., "count": 3}``,
  ``{"cmd": "status"}``, ``{"cmd": "close"}``, ``{"cmd": "quit"}``;
* stdout: ``{"kind": "ready"}`` once the sockets are bound, ``{"kind": "event", "type": ...}`` for each
  engine event (keys left out), ``{"kind": "answer", "cmd": ...}`` for each command, and
  ``{"kind": "error", "message": ...}`` for a command it could not take.

The engine owns every IKE deadline (retransmissions, NAT keepalives, DPD, lifetimes): the loop sleeps until
``get_timer()`` and sends each datagram where the engine says (``Datagram.addr``, from port 4500 when
``Datagram.natt``).  Echo requests that arrive through the Child SA are answered as the host behind this endpoint
would (there is no TUN device yet), so a peer's ping across the tunnel gets its replies.

Key material goes to files in the output directory, never to stdout: ``ikev2_decryption_table`` and
``esp_sa`` (Wireshark's formats), so the lab's captures of this endpoint decrypt like any other peer's.
Every event is also appended to ``events.jsonl`` there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..analysis.keyrows import esp_sa_row, ike_sa_row
from ..errors import IpsecLabError
from ..esp import AhSA, EspSA
from ..ike import ChildSaEstablished, IkeConfig, IkeConnection, IkeSaEstablished
from ..ike.events import Event
from ..packets.natt import IKE_PORT, KEEPALIVE, NATT_PORT, NON_ESP_MARKER
from ..pcap.esp_keyfiles import EspSaRow, write_esp_sa
from ..pcap.keyfiles import IkeSaKeyRow, write_ikev2_decryption_table
from . import auth_spec
from .children import esp_sas
from .icmp import echo_reply_of, echo_reply_to, echo_request

_IDENT = 0x15EC  # ICMP echo identifier of the endpoint's pings


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What ``python -m ipseclab.endpoint SPEC.json`` reads."""

    ike: IkeConfig
    local: str
    remote: str | None  # None: a responder that takes whoever initiates (e.g. from behind a NAT)
    initiator: bool
    out_dir: Path
    port: int = IKE_PORT

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
        return cls(IkeConfig(**ike), raw["local"], raw.get("remote"), bool(raw["initiator"]),
                   Path(raw["out_dir"]), int(raw.get("port", IKE_PORT)))

    def to_json(self) -> str:
        ike = {f.name: getattr(self.ike, f.name) for f in dataclasses.fields(self.ike)}
        ike["psk"] = self.ike.psk.decode()
        ike["local_auth"] = auth_spec.to_json(self.ike.local_auth)
        ike["remote_auth"] = auth_spec.to_json(self.ike.remote_auth)
        return json.dumps({"ike": ike, "local": self.local, "remote": self.remote, "initiator": self.initiator,
                           "out_dir": str(self.out_dir), "port": self.port}, indent=2)


def jsonable(value: Any) -> Any:
    """Events as JSON: bytes as hex, addresses and enums as text; fields named like keys are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if "key" not in f.name}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


@dataclass(slots=True)
class _Ping:
    src: str
    dst: str
    count: int
    deadline: float
    sent: int = 0
    next_at: float = 0.0
    received: set[int] = field(default_factory=set)


class Endpoint:
    """The loop (``run``): sockets in, engine and SAs in the middle, sockets and stdout out."""

    def __init__(self, spec: EndpointSpec, out: TextIO = sys.stdout) -> None:
        self.spec = spec
        self.out = out
        self.conn = IkeConnection(spec.ike, initiator=spec.initiator)
        self.esp_out: EspSA | AhSA | None = None
        self.esp_in: EspSA | AhSA | None = None
        self.ike_rows: list[IkeSaKeyRow] = []
        self.esp_rows: list[EspSaRow] = []
        self.ping: _Ping | None = None
        self.esp_errors: dict[str, int] = {}
        self.answered = 0  # echo requests that arrived through the Child SA and were answered
        self.udp_encap = False  # the Child SA is ESP in UDP (NAT detected)
        # where the peer's ESP goes: configured, or learned from its datagrams (its port 4500 may be a NAT's
        # mapping); IKE datagrams carry their own destination (the engine's Datagram.addr)
        self.peer_ip = spec.remote
        self.peer_natt_port = NATT_PORT
        spec.out_dir.mkdir(parents=True, exist_ok=True)
        # IPv4: raw sockets see whole packets and send whole packets (the SA builds the outer header).
        # IPv6: raw sockets see and send the payload only, so ESP goes as ESP bytes and the kernel adds
        # the IPv6 header (tunnel mode; AH, whose ICV covers that header, is IPv4 only here).
        self.v6 = ipaddress.ip_address(spec.local).version == 6
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((spec.local, spec.port))
        self.natt = socket.socket(fam, socket.SOCK_DGRAM)
        self.natt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.natt.bind((spec.local, NATT_PORT))
        self.esp_rx = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ESP)
        self.ah_rx = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_AH)
        self.ip_tx = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._running = True

    def close(self) -> None:
        for s in (self.udp, self.natt, self.esp_rx, self.ah_rx, self.ip_tx):
            s.close()

    def say(self, kind: str, /, **fields: Any) -> None:
        # an event's own ``kind`` field (DatagramDropped has one) must not replace the line's kind
        if "kind" in fields:
            fields["event_kind"] = fields.pop("kind")
        self.out.write(json.dumps({"kind": kind, **fields}) + "\n")
        self.out.flush()

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, commands: TextIO) -> None:
        self.say("ready", local=self.spec.local, port=self.spec.port)
        buffered = ""
        while self._running:
            now = time.monotonic()
            wake = [t for t in (self.conn.get_timer(), self._ping_wake()) if t is not None]
            timeout = max(0.0, min(wake) - now) if wake else 1.0
            watched: list[Any] = [self.udp, self.natt, self.esp_rx, self.ah_rx, commands]
            readable, _, _ = select.select(watched, [], [], min(timeout, 1.0))
            now = time.monotonic()
            if self.udp in readable:
                data, addr = self.udp.recvfrom(65535)
                self.peer_ip = addr[0]
                self.conn.receive_datagram(data, now, source=(addr[0], addr[1]))
            if self.natt in readable:
                self._receive_natt(*self.natt.recvfrom(65535), now=now)
            for raw in (self.esp_rx, self.ah_rx):
                if raw in readable:
                    self._receive_esp(raw.recv(65535))
            if commands in readable:
                chunk = os.read(commands.fileno(), 65536).decode()
                if not chunk:
                    break  # the driver went away
                buffered += chunk
                while "\n" in buffered:
                    line, buffered = buffered.split("\n", 1)
                    if line.strip():
                        self._command(line, now)
            self.conn.handle_timer(now)
            self._ping_step(now)
            self._flush(now)

    def _flush(self, now: float) -> None:
        """Send what the engine has for the peer where the engine says: it knows which datagram is a response
        (back the way its request came), when IKE moves to UDP 4500 and when a NAT keepalive is due."""
        for d in self.conn.datagrams_to_send(now):
            to = d.addr
            if to is None and self.spec.remote is not None:
                to = (self.spec.remote, self.spec.port)  # an engine configured without remote_endpoint
            if to is None:
                continue  # a responder that has heard from nobody has nobody to answer
            (self.natt if d.natt else self.udp).sendto(d.payload(), to)
        while (event := self.conn.next_event()) is not None:
            self._on_event(event)

    def _receive_natt(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """UDP 4500 (RFC 3948 2.2): IKE after the non-ESP marker, a keepalive, or ESP."""
        self.peer_ip, self.peer_natt_port = addr[0], addr[1]
        if data[:4] == NON_ESP_MARKER:
            self.conn.receive_datagram(data[4:], now, source=(addr[0], addr[1]), natt=True)
        elif data != KEEPALIVE and isinstance(self.esp_in, EspSA):
            try:
                inner, _nh = self.esp_in.decapsulate(data)
            except IpsecLabError as exc:
                name = type(exc).__name__
                self.esp_errors[name] = self.esp_errors.get(name, 0) + 1
                return
            self._deliver(inner)

    def _send_ipsec(self, packet: bytes) -> None:
        """An inner packet out through the Child SA: raw ESP/AH, or ESP in UDP 4500 behind a NAT."""
        sa, peer = self.esp_out, self.peer_ip
        if sa is None or peer is None:
            return
        nh = 4 if packet[0] >> 4 == 4 else 41  # tunnel mode: the inner packet is IPv4 or IPv6
        if self.udp_encap and isinstance(sa, EspSA):
            self.natt.sendto(sa.encapsulate(packet, nh), (peer, self.peer_natt_port))
        elif self.v6 and isinstance(sa, EspSA):
            self.esp_rx.sendto(sa.encapsulate(packet, nh), (peer, 0))
        else:
            self.ip_tx.sendto(sa.protect(packet), (peer, 0))

    def _on_event(self, event: Event) -> None:
        record = {"type": type(event).__name__, **jsonable(event)}
        with (self.spec.out_dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if isinstance(event, IkeSaEstablished):
            self.ike_rows.append(ike_sa_row(event))
            write_ikev2_decryption_table(self.spec.out_dir / "ikev2_decryption_table", self.ike_rows)
        elif isinstance(event, ChildSaEstablished):
            peer = self.peer_ip or "0.0.0.0"
            self.esp_out, self.esp_in = esp_sas(event, self.spec.local, peer)
            self.udp_encap = event.udp_encap
            if isinstance(self.esp_out, EspSA) and isinstance(self.esp_in, EspSA):
                self.esp_rows += [esp_sa_row(self.esp_out, src=self.spec.local, dst=peer),
                                  esp_sa_row(self.esp_in, src=peer, dst=self.spec.local)]
                write_esp_sa(self.spec.out_dir / "esp_sa", self.esp_rows)
        self.say("event", **record)

    # -- commands ----------------------------------------------------------------------------------

    def _command(self, line: str, now: float) -> None:
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "initiate":
                self.conn.initiate(now)
                self.say("answer", cmd=name)
            elif name == "ping":
                if self.esp_out is None:
                    raise IpsecLabError("no Child SA yet: initiate first and wait for ChildSaEstablished")
                self.ping = _Ping(cmd["src"], cmd["dst"], int(cmd.get("count", 3)),
                                  now + float(cmd.get("timeout", 5)))
            elif name == "status":
                self.say("answer", cmd=name, state=str(self.conn.state),
                         engine=dataclasses.asdict(self.conn.counters),
                         esp_out=self.esp_out.counters.as_dict() if self.esp_out else None,
                         esp_in=self.esp_in.counters.as_dict() if self.esp_in else None,
                         esp_errors=self.esp_errors, echo_replies_sent=self.answered)
            elif name == "close":
                self.conn.close(now)
                self.say("answer", cmd=name)
            elif name == "quit":
                self._running = False
                self.say("answer", cmd=name)
            else:
                raise IpsecLabError(f"unknown command {name!r}: initiate, ping, status, close or quit")
        except (IpsecLabError, KeyError, ValueError, TypeError) as exc:
            self.say("error", message=f"{type(exc).__name__}: {exc}", line=line)

    # -- ESP ---------------------------------------------------------------------------------------

    def _receive_esp(self, packet: bytes) -> None:
        sa = self.esp_in
        if sa is None:
            return
        try:
            if self.v6:  # the ESP bytes alone (see __init__)
                inner: bytes | None = sa.decapsulate(packet)[0] if isinstance(sa, EspSA) else None
            elif len(packet) < 28 or packet[16:20] != ipaddress.IPv4Address(self.spec.local).packed:
                return
            else:
                inner = sa.unprotect(packet)
        except IpsecLabError as exc:  # counted by the SA too; kept here by type for the status answer
            name = type(exc).__name__
            self.esp_errors[name] = self.esp_errors.get(name, 0) + 1
            return
        if inner is not None:
            self._deliver(inner)

    def _deliver(self, inner: bytes) -> None:
        """An inner packet that came through the Child SA: answer a ping as the host behind us would."""
        reply = echo_reply_to(inner, ip_id=(self.answered + 1) & 0xFFFF or 1)
        if reply is not None:
            self._send_ipsec(reply)
            self.answered += 1
        elif self.ping is not None:
            seq = echo_reply_of(inner, _IDENT)
            if seq is not None:
                self.ping.received.add(seq)

    def _ping_wake(self) -> float | None:
        p = self.ping
        return None if p is None else min(p.deadline, p.next_at)

    def _ping_step(self, now: float) -> None:
        p = self.ping
        if p is None or self.esp_out is None:
            return
        if p.sent < p.count and now >= p.next_at:
            p.sent += 1
            self._send_ipsec(echo_request(p.src, p.dst, _IDENT, p.sent))
            p.next_at = now + 0.2
        if len(p.received) >= p.count or now >= p.deadline:
            self.say("answer", cmd="ping", sent=p.sent, received=len(p.received))
            self.ping = None
        elif p.sent >= p.count:
            p.next_at = p.deadline


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ipseclab.endpoint SPEC.json   (see ipseclab/endpoint/runner.py)", file=sys.stderr)
        return 2
    try:
        spec = EndpointSpec.from_json(Path(argv[0]).read_text())
    except (OSError, ValueError, KeyError, TypeError, IpsecLabError) as exc:
        print(f"ipseclab endpoint: cannot use {argv[0]}: {exc}", file=sys.stderr)
        return 2
    ep = Endpoint(spec)
    try:
        ep.run(sys.stdin)
    finally:
        ep.close()
    return 0

"""A running lab at the REPL: send crafted packets, sniff, and read the peers' live SAs, keys and counters.

:class:`LiveLab` is a :class:`~ipseclab.lab.lab.Lab` with the verbs a person (or a test) uses against
peers that are up::

    lab.send(IP(src=..., dst=...) / UDP(sport=500, dport=500) / Raw(wire), side="left")
    replies = lab.sniff("udp port 500", timeout=3, count=1, since=mark)
    lab.sas("right")        # the kernel's SAs now, as EspSA/AhSA with their keys and sequence numbers
    lab.ike_sas()           # the IKE SAs' keys as the codec's IkeSaCrypto, SPIs matched from the capture
    lab.counters("right")   # ``ip -s xfrm state`` per SPI and ``/proc/net/xfrm_stat``

**Sending** puts Ethernet frames on a link from inside the lab's namespace (an ``AF_PACKET`` socket
opened there; nothing touches the host's interfaces), addressed as the side's own host would: source
MAC of that host, destination MAC of the next hop on the link (the other peer, or the NAT router).
So a packet sent "from left" is, to the right peer, a packet from the left peer.

**Sniffing** reads the lab's own capture of the link (the tcpdump that records every run), so nothing
can be missed between a send and a sniff: :meth:`LiveLab.mark` (also returned by :meth:`send`) is a
position in the captures, and ``sniff(since=mark)`` returns what came after it; a BPF ``filter`` is
applied by tcpdump, as Scapy's ``sniff(offline=..., filter=...)`` does.

Misuse is one :class:`~ipseclab.errors.LabError` line naming what was wrong: a link or side the lab
does not have, a lab that is down, a peer that cannot say (the ipseclab endpoint has no kernel SAs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..errors import LabError
from ..esp import AhSA, EspSA
from ..packets.message import IkeSaCrypto
from ..pcap.reader import capture_records
from .keys import XfrmState, match_ike_keys, parse_xfrm_state
from .lab import Lab, captured_ike_messages
from .runtimes.docker import ContainerHost
from .runtimes.process import EndpointHost
from .topology import Link

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in the lab's captures: how many frames each link's capture held when it was taken."""

    frames: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveIkeSa:
    """One live IKE SA: its SPIs and keys as the codec takes them (``decode(data, crypto)``, ``encode``)."""

    spi_i: bytes
    spi_r: bytes
    crypto: IkeSaCrypto


@dataclass(slots=True)
class PeerCounters:
    """A peer's counters now: per SA (by SPI) as ``ip -s xfrm state`` shows them, and ``/proc/net/xfrm_stat``.

    ``sa[spi]`` holds what the kernel printed: ``replay`` (replays refused), ``replay-window`` (packets
    refused left of the window), ``failed`` (integrity failures), ``bytes``, ``packets``, ``seq``, ``oseq``;
    and ``window``, the window's size; ``xfrm_stat`` every counter of the file (``XfrmInStateSeqError``, ...).  For
    the ipseclab endpoint, ``sa`` is empty and ``endpoint`` is its own status answer.
    """

    sa: dict[int, dict[str, int]] = field(default_factory=dict)
    xfrm_stat: dict[str, int] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=dict)

    def replay(self, spi: int) -> int:
        """The kernel's replay counter of SA ``spi`` (packets dropped as replays or left of the window)."""
        return self.of(spi).get("replay", 0)

    def of(self, spi: int) -> dict[str, int]:
        try:
            return self.sa[spi]
        except KeyError:
            known = ", ".join(f"{s:#010x}" for s in self.sa) or "none"
            raise LabError(f"no SA with SPI {spi:#010x} on this peer (its SAs: {known})") from None


def sa_from_xfrm(state: XfrmState) -> EspSA | AhSA:
    """An :class:`EspSA`/:class:`AhSA` from one kernel SA: keys, mode, tunnel addresses, UDP, ESN, window,
    and the last sequence number sent (``oseq``), so that ``encrypt`` continues where the kernel is."""
    seq = state.counters.get("oseq", 0) | (state.counters.get("oseq-hi", 0) << 32)
    common: dict[str, Any] = {
        "mode": state.mode or "tunnel",
        "tunnel": (state.src, state.dst) if state.mode == "tunnel" else None,
        "esn": state.esn,
        "replay_window": state.replay_window or 64,
        "seq": seq,
    }
    if state.proto == "ah":
        if state.auth is None:
            raise LabError(f"kernel AH SA {state.spi:#010x} shows no authentication algorithm")
        return AhSA.from_xfrm(state.spi, auth=state.auth, **common)
    if state.proto != "esp":
        raise LabError(f"kernel SA {state.spi:#010x} is {state.proto}, not ESP or AH")
    udp = (state.encap[1], state.encap[2]) if state.encap else None
    return EspSA.from_xfrm(state.spi, aead=state.aead, enc=state.enc, auth=state.auth, udp=udp, **common)


class LiveLab(Lab):
    """A :class:`Lab` with REPL verbs (see the module docstring); start one with :func:`ipseclab.repl.start`.

    ``interactive`` (set by ``repl.start``): Ctrl-C interrupts the command at the prompt and leaves the lab
    up, as a REPL user expects; SIGTERM, and Ctrl-C elsewhere (a test, a script), stop the lab as for
    every Lab.
    """

    interactive = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.interactive and signum == signal.SIGINT and os.getpid() == self._pid:
            raise KeyboardInterrupt("interrupted; the lab is still up (lab.down() takes it down)")
        super()._on_signal(signum, frame)

    # --- where things are ----------------------------------------------------------------------------

    @property
    def links(self) -> list[str]:
        """The names of the lab's links (``left-right``; behind NAT ``left-nat`` and ``nat-right``)."""
        return [link.name for link in self.topology.links]

    def link(self, name: str | None = None) -> Link:
        """A link by name; without one, the lab's only link (LabError naming the links when there are more)."""
        links = self.topology.links
        if name is None:
            if len(links) == 1:
                return links[0]
            raise LabError(f"this lab has links {', '.join(self.links)}: name one (link=...)")
        for link in links:
            if link.name == name:
                return link
        raise LabError(f"no link {name!r} in this lab; its links: {', '.join(self.links)}")

    def address(self, side: str, family: int = 4) -> str:
        """The transit address of ``side``'s host (IPv4, or IPv6 with ``family=6``)."""
        self._side(side)
        if family == 6:
            addr6 = self.topology.hosts[side].address6
            if not addr6:
                raise LabError(f"the {side} side has no IPv6 address in the {self.topology.kind} topology")
            return addr6
        return self.topology.hosts[side].address

    def public_address(self, side: str) -> str:
        """The address the other side sees for ``side`` (behind the NAT: the router's outside address)."""
        self._side(side)
        return self.topology.public_address(side)

    def _require_up(self) -> None:
        if not self._up:
            raise LabError("the lab is down", hint="start one with ipseclab.repl.start(...) or lab.up()")

    def _side(self, side: str) -> None:
        if side not in self.topology.attach:
            raise LabError(f"no side {side!r} in this lab; its sides: {', '.join(self.topology.attach)}")

    def mac(self, side: str) -> str:
        """The MAC address the ``side`` host uses on its link (a UML guest's vec0, else the veth end)."""
        self._require_up()
        self._side(side)
        peer = self.peer(side)
        host = peer.host
        if not isinstance(host, EndpointHost) and not (isinstance(host, ContainerHost) and not host.uml):
            _, out = host.exec("cat /sys/class/net/vec0/address", timeout=15)
            return out.strip()
        ns, ifname = self.topology.attach[side]
        return _interface_mac(ns, ifname)

    # --- sending ------------------------------------------------------------------------------------

    def send(self, packets: Any, side: str = "left", link: str | None = None, wait: float = 0.0) -> Mark:
        """Send IP packets (Scapy packets, bytes, or a list of them) as if ``side``'s host sent them.

        They leave on ``side``'s link (``link`` names another one where the side has several hops, e.g.
        ``nat-right`` to send from the router's outside toward ``right``), with that host's source MAC and
        the next hop's destination MAC.  A packet that already has an Ethernet header goes out as it is.
        ``wait`` seconds pass before returning (time for the peers to take the packets in).  Returns the
        :class:`Mark` taken just before sending, for ``sniff(since=...)``.
        """
        self._require_up()
        self._side(side)
        _, out_ns, out_if, dst_mac = self._hop(side, link)
        src_mac = self.mac(side) if (out_ns, out_if) == self.topology.attach[side] else _interface_mac(out_ns, out_if)
        frames = [_frame(p, src_mac, dst_mac) for p in _as_list(packets)]
        mark = self.mark()
        with _in_netns(out_ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            sock.bind((out_if, 0))
            for frame in frames:
                sock.send(frame)
        finally:
            sock.close()
        if wait > 0:
            time.sleep(wait)
        return mark

    def _hop(self, side: str, name: str | None) -> tuple[Link, str, str, str]:
        """(link, namespace and interface to send on, next hop's MAC) for packets from ``side``."""
        ns, ifname = self.topology.attach[side]
        if name is None:
            for link in self.topology.links:
                if (link.a_ns, link.a_if) == (ns, ifname):
                    return link, ns, ifname, self._far_mac(link.b_ns, link.b_if)
                if (link.b_ns, link.b_if) == (ns, ifname):
                    return link, ns, ifname, self._far_mac(link.a_ns, link.a_if)
            raise LabError(f"the {side} side is on no link of this lab")  # pragma: no cover - topology invariant
        link = self.link(name)
        ends = [(link.a_ns, link.a_if), (link.b_ns, link.b_if)]
        if (ns, ifname) in ends:  # the side's own link: as without a name
            return self._hop(side, None)
        # a link the side is not on: send from its end away from the side... toward the far side's host
        far = "right" if side == "left" else "left"
        target = self.topology.attach[far]
        if target not in ends:
            raise LabError(f"link {name!r} does not lead to the {far} side", hint=f"links: {', '.join(self.links)}")
        near = ends[1] if ends[0] == target else ends[0]
        return link, near[0], near[1], self.mac(far)

    def _far_mac(self, ns: str, ifname: str) -> str:
        """The MAC behind a link end: a side's host when one is attached there, else the router's interface."""
        for side, where in self.topology.attach.items():
            if where == (ns, ifname):
                return self.mac(side)
        return _interface_mac(ns, ifname)

    # --- sniffing -----------------------------------------------------------------------------------

    def mark(self) -> Mark:
        """The current position in every link's capture (see :meth:`sniff`)."""
        self._require_up()
        return Mark({c.link.name: _frame_count(c.pcap) for c in self.captures})

    def sniff(self, filter: str | None = None, timeout: float = 2.0, count: int = 0, link: str | None = None,
              since: Mark | None = None, lfilter: Callable[[Any], bool] | None = None) -> Any:
        """Scapy packets captured on ``link`` after ``since`` (default: from now), as a Scapy PacketList.

        ``filter`` is a BPF expression (tcpdump's syntax), ``lfilter`` a Python predicate on each packet.
        Returns once ``count`` packets matched (0: wait the whole ``timeout``) or after ``timeout`` seconds
        with what there is.  ``since=Mark()`` (an empty mark) reads the capture from its start.
        """
        from scapy.plist import PacketList

        self._require_up()
        lk = self.link(link)
        if filter:
            check_filter(filter)
        cap = next(c for c in self.captures if c.link.name == lk.name)
        start = (since if since is not None else self.mark()).frames.get(lk.name, 0)
        deadline = time.monotonic() + timeout
        seen = start
        got: list[Any] = []
        while True:
            fresh = _frames(cap.pcap, seen)
            seen += len(fresh)
            got += _matching(fresh, filter, lfilter)
            if (count and len(got) >= count) or time.monotonic() >= deadline:
                return PacketList(got[:count] if count else got, name=f"Sniffed on {lk.name}")
            time.sleep(0.1)

    # --- reading the peers ------------------------------------------------------------------------

    def xfrm_states(self, side: str) -> list[XfrmState]:
        """The ``side`` kernel's SAs now (``ip -s xfrm state``), as parsed records."""
        host = self._kernel_host(side, "kernel SAs")
        _, out = host.exec("ip -s xfrm state", timeout=15)
        return parse_xfrm_state(out)

    def sas(self, side: str) -> list[EspSA | AhSA]:
        """The ``side`` kernel's SAs now as :class:`EspSA`/:class:`AhSA`: keys, SPIs, mode, sequence numbers.

        Each SA continues from the kernel's last sequence number sent, so ``sa.encrypt(pkt)`` makes the
        packet the kernel would send next.  ``sa.spi`` and the tunnel addresses say which direction it is.
        """
        return [sa_from_xfrm(s) for s in self.xfrm_states(side)]

    def counters(self, side: str) -> PeerCounters:
        """The ``side`` peer's counters now: per SA from ``ip -s xfrm state``, ``/proc/net/xfrm_stat``
        (kernel peers); the endpoint's own status (ipseclab)."""
        self._require_up()
        self._side(side)
        raw = self.peer_counters(side)  # through the peer's driver, as counters.json holds them
        if raw.get("source") == "ipseclab":
            return PeerCounters(endpoint={k: v for k, v in raw.items() if k != "source"})
        facts = ("spi", "src", "dst", "proto", "mode", "replay_window", "esn")
        per_sa = {int(sa["spi"], 16): {k: v for k, v in sa.items() if k not in facts} | {"window": sa["replay_window"]}
                  for sa in raw.get("sas", [])}
        return PeerCounters(per_sa, raw.get("xfrm_stat", {}))

    def ike_sas(self) -> list[LiveIkeSa]:
        """The live IKE SAs whose keys a peer gives (strongSwan logs them; see each driver's ``ike_keys``),
        with their SPIs matched from the capture so far, as the codec's :class:`IkeSaCrypto`."""
        from ..analysis.keyrows import crypto_from_row

        self._require_up()
        keysets = [k for p in self.peers.values() for k in p.driver.ike_keys(p.host.dir)]
        rows = match_ike_keys(keysets, captured_ike_messages(self.captures))
        for p in self.peers.values():  # the ipseclab endpoint writes its own table
            own = p.host.dir / "ikev2_decryption_table"
            if isinstance(p.host, EndpointHost) and own.exists():
                from ..pcap.keyfiles import read_ikev2_decryption_table

                known = {(r.spi_i, r.spi_r) for r in rows}
                rows += [r for r in read_ikev2_decryption_table(own) if (r.spi_i, r.spi_r) not in known]
        if not rows:
            impls = ", ".join(f"{s}: {p.driver.impl}" for s, p in self.peers.items())
            raise LabError(f"no IKE SA keys yet ({impls})",
                           hint="initiate first; strongSwan and ipseclab give their IKE keys, Libreswan does not")
        return [LiveIkeSa(r.spi_i, r.spi_r, crypto_from_row(r)) for r in rows]

    def _kernel_host(self, side: str, what: str) -> Any:
        self._require_up()
        self._side(side)
        peer = self.peer(side)
        if isinstance(peer.host, EndpointHost):
            raise LabError(f"the {side} peer is the ipseclab endpoint: it has no {what}",
                           hint=f"its SAs' keys are in {peer.host.dir / 'esp_sa'}; lab.counters({side!r}) "
                                "gives its status")
        return peer.host


# --- helpers ------------------------------------------------------------------------------------------


def _as_list(packets: Any) -> list[Any]:
    if isinstance(packets, bytes | bytearray) or hasattr(packets, "layers"):  # one packet
        return [packets]
    if isinstance(packets, Iterable):
        return list(packets)
    raise LabError(f"send takes Scapy packets or bytes, not {type(packets).__name__}")


def _frame(packet: Any, src_mac: str, dst_mac: str) -> bytes:
    """An Ethernet frame around an IP packet (Scapy packet or bytes); an Ether packet goes as it is."""
    from scapy.layers.l2 import Ether

    if isinstance(packet, Ether):
        return bytes(packet)
    data = bytes(packet)
    if not data or data[0] >> 4 not in (4, 6):
        raise LabError(f"send takes IP packets (IPv4 or IPv6) or Ether frames; got {len(data)} bytes starting "
                       f"{data[:1].hex() or 'with nothing'}")
    etype = ETH_P_IPV6 if data[0] >> 4 == 6 else ETH_P_IP
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + \
        etype.to_bytes(2, "big") + data


def _interface_mac(ns: str, ifname: str) -> str:
    from pyroute2 import NetNS

    with NetNS(ns) as nsr:
        links = nsr.get_links(ifname=ifname)
        if not links:
            raise LabError(f"no interface {ifname} in namespace {ns}")
        return str(links[0].get_attr("IFLA_ADDRESS"))


@contextlib.contextmanager
def _in_netns(ns: str) -> Iterator[None]:
    """Run the block in network namespace ``ns`` (this thread only); sockets made there stay there."""
    from pyroute2.netns import popns, pushns

    pushns(ns)
    try:
        yield
    finally:
        popns()


def _frame_count(pcap: Any) -> int:
    return sum(1 for r in capture_records(pcap) if not isinstance(r, str)) if pcap.exists() else 0


def _frames(pcap: Any, skip: int) -> list[tuple[bytes, float]]:
    """The whole frames of a capture being written, after the first ``skip`` (a record still being written
    is left for the next read)."""
    if not pcap.exists():
        return []
    out = []
    for n, rec in enumerate(capture_records(pcap)):
        if isinstance(rec, str):
            break
        if n >= skip:
            out.append((rec[0], rec[1]))
    return out


def _matching(frames: list[tuple[bytes, float]], bpf: str | None, lfilter: Callable[[Any], bool] | None
              ) -> list[Any]:
    from scapy.layers.l2 import Ether

    pkts = []
    for data, ts in frames:
        pkt = Ether(data)
        pkt.time = ts
        pkts.append(pkt)
    if bpf and pkts:
        pkts = list(_bpf(pkts, bpf))
    return [p for p in pkts if lfilter is None or lfilter(p)]


def check_filter(bpf: str) -> None:
    """LabError naming a BPF expression tcpdump cannot compile (for Ethernet frames)."""
    from scapy.arch.common import compile_filter
    from scapy.data import DLT_EN10MB
    from scapy.error import Scapy_Exception

    try:
        compile_filter(bpf, linktype=DLT_EN10MB)
    except Scapy_Exception as exc:
        why = str(exc).splitlines()[0]
        raise LabError(f"bad capture filter {bpf!r}: {why}",
                       hint="use tcpdump's filter syntax, e.g. 'udp port 500' or 'esp'") from None


def _bpf(pkts: list[Any], bpf: str) -> Any:
    """The packets a BPF expression keeps, filtered by tcpdump (Scapy's offline sniff)."""
    from scapy.error import Scapy_Exception
    from scapy.sendrecv import sniff

    try:
        return sniff(offline=pkts, filter=bpf, quiet=True)
    except Scapy_Exception as exc:
        raise LabError(f"bad capture filter {bpf!r}: {str(exc).splitlines()[0]}",
                       hint="use tcpdump's filter syntax, e.g. 'udp port 500' or 'esp'") from None

"""A Linux kernel ESP/AH peer with hand-set SAs: the oracle for ipseclab's own data plane.

One UML guest (``left``) gets SAs and policies from ``ip xfrm`` with keys we choose; the other
end of its link is a bare namespace where packets made by ipseclab are injected (Scapy's
L2 socket, run inside the namespace) and where tcpdump captures what the kernel sends.  So a
test can check both directions against the real kernel: packets the kernel made decrypt in
ipseclab, and packets ipseclab made are accepted by the kernel (its SA counters rise and it
answers the pings).

::

    [left UML: kernel SAs]--l0 ===veth=== r0--(namespace "right": injection + capture)
     198.51.100.10, 2001:db8:1::10            198.51.100.20, 2001:db8:1::20 (no stack)

Both address families work: ``address(side, family)`` gives the transit addresses, an SA pair
over IPv4 or IPv6 addresses gets policies of the same family (``/32`` or ``/128``), and
``ping_out(family=6)`` pings the right's IPv6 address.  The
right side has no IP stack, so it answers neither ARP nor neighbour solicitations: the guest
gets a permanent neighbour entry for each of the right's addresses at start-up.  ``captured()``
returns what the capture got since the previous call, so a long test run does not re-read it.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ..errors import LabError
from ..pcap.reader import BadFrame, IpPacket, PcapFollower
from . import cleanup, netns
from .capture import Capture, start_capture, stop_capture
from .images import build_image
from .keys import XfrmState, parse_xfrm_stat, parse_xfrm_state
from .lab import new_run_id
from .proc import in_netns, require_root, run
from .runtimes.uml import UmlHost, network_script
from .runtimes.uml_kernel import select_kernel
from .runtimes.uml_probe import require_bootable
from .topology import Topology, make_topology


@dataclass(frozen=True, slots=True)
class KernelSa:
    """One SA for ``ip xfrm state add``: kernel algorithm names, keys as bytes (AEAD keys include the salt)."""

    src: str
    dst: str
    spi: int
    proto: str = "esp"  # "esp" or "ah"
    mode: str = "tunnel"  # "tunnel" or "transport"
    aead: tuple[str, bytes, int] | None = None  # ("rfc4106(gcm(aes))", key+salt, icv bits)
    enc: tuple[str, bytes] | None = None  # ("cbc(aes)", key)
    auth: tuple[str, bytes, int] | None = None  # ("hmac(sha256)", key, truncation bits)
    encap: tuple[int, int] | None = None  # (sport, dport) for ESP in UDP
    replay_window: int = 32
    esn: bool = False
    selector: tuple[str, str] | None = None  # (src net, dst net) for transport-mode SAs; None: any
    seq: int = 0  # the receive window's top at the start (64 bits with ESN)
    oseq: int = 0  # the last sequence number sent at the start (64 bits with ESN): the next one is oseq + 1

    def command(self) -> str:
        parts = ["ip", "xfrm", "state", "add", "src", self.src, "dst", self.dst, "proto", self.proto,
                 "spi", f"0x{self.spi:08x}", "mode", self.mode]
        if self.esn:
            parts += ["flag", "esn"]
        parts += ["replay-window", str(self.replay_window)]
        if self.seq or self.oseq:
            if not self.esn and max(self.seq, self.oseq) >> 32:
                raise LabError(f"SA {self.spi:#x}: sequence numbers above 2^32-1 need ESN")
            parts += ["replay-seq", f"0x{self.seq & 0xFFFFFFFF:x}", "replay-oseq", f"0x{self.oseq & 0xFFFFFFFF:x}"]
            if self.esn:
                parts += ["replay-seq-hi", f"0x{self.seq >> 32:x}", "replay-oseq-hi", f"0x{self.oseq >> 32:x}"]
        if self.aead:
            parts += ["aead", f"'{self.aead[0]}'", "0x" + self.aead[1].hex(), str(self.aead[2])]
        if self.enc:
            # NULL encryption has no key: iproute2 wants an empty string, not "0x"
            parts += ["enc", f"'{self.enc[0]}'", "0x" + self.enc[1].hex() if self.enc[1] else '""']
        if self.auth:
            parts += ["auth-trunc", f"'{self.auth[0]}'", "0x" + self.auth[1].hex(), str(self.auth[2])]
        if self.encap:
            # the original address (NAT-OA) is unused without NAT; it takes the SA's family
            oa = "::" if family_of(self.src) == 6 else "0.0.0.0"
            parts += ["encap", "espinudp", str(self.encap[0]), str(self.encap[1]), oa]
        return " ".join(parts)


def family_of(address: str) -> int:
    """4 or 6 for an IP address string."""
    return ipaddress.ip_address(address).version


_DROP_WORDS = ("Err", "Discard", "Csum")


def parse_drop_counters(xfrm_stat: str, snmp6: str, snmp: str) -> dict[str, int]:
    """Nonzero drop counters from the text of ``/proc/net/xfrm_stat``, ``/proc/net/snmp6`` and ``/proc/net/snmp``.

    Every xfrm_stat counter; of the others, those whose names say error, discard or checksum.
    ``snmp`` is in header/value line pairs (``Udp: InDatagrams ...`` then ``Udp: 3 ...``); its
    counters are named group + field (``UdpInCsumErrors``), as ``nstat`` does.
    """
    counters = parse_xfrm_stat(xfrm_stat)
    for w in map(str.split, snmp6.splitlines()):  # "Udp6InCsumErrors 0"
        if len(w) == 2 and w[1].isdigit() and any(k in w[0] for k in _DROP_WORDS):
            counters[w[0]] = int(w[1])
    lines = snmp.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, *keys = names.split()
        for key, value in zip(keys, values.split()[1:], strict=False):
            if any(k in key for k in _DROP_WORDS) and value.lstrip("-").isdigit():
                counters[group.rstrip(":") + key] = int(value)
    return {k: v for k, v in counters.items() if v}


@dataclass(slots=True)
class KernelPeer:
    """The single-guest lab (see the module docstring); a context manager that always tears down."""

    run_dir: Path
    run_id: str = field(default_factory=new_run_id)
    host: UmlHost | None = None
    capture: Capture | None = None
    guest_mac: str = ""
    peer_mac: str = ""
    injector: subprocess.Popen[str] | None = None
    topology: Topology = field(init=False)
    _up: bool = False
    _follower: PcapFollower | None = None

    def __post_init__(self) -> None:
        self.topology = make_topology("direct", self.run_id)

    def address(self, side: str, family: int = 4) -> str:
        """The transit address of ``side`` ("left": the guest, "right": the injecting namespace) in ``family``."""
        host = self.topology.hosts[side]
        if family == 4:
            return host.address
        if family == 6 and host.address6:
            return host.address6
        raise LabError(f"the kernel peer's {side} side has no IPv{family} address")

    @property
    def left_address(self) -> str:
        return self.address("left", 4)

    @property
    def right_address(self) -> str:
        return self.address("right", 4)

    def __enter__(self) -> KernelPeer:
        require_root("the kernel peer")
        kernel = select_kernel()
        require_bootable(kernel)  # before anything exists that would need tearing down
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._up = True
        try:
            image = build_image("strongswan", kernel, self.run_dir)  # any image with iproute2 and ping will do
            netns.create(self.topology)
            link = self.topology.links[0]
            self.capture = start_capture(link, self.run_dir)
            ns, ifname = self.topology.attach["left"]
            self.host = UmlHost("left", f"ipl-{self.run_id}-left", image, ns, ifname, self.run_dir / "left")
            self.host.boot(network_script(self.topology.hosts["left"], "left"))
            self.host.wait_ready()
            self.peer_mac = run(in_netns(link.b_ns, ["cat", f"/sys/class/net/{link.b_if}/address"])).stdout.strip()
            _, mac = self.host.exec("cat /sys/class/net/vec0/address")
            self.guest_mac = mac.strip()
            # the other end has no stack (no ARP, no NDP answers): tell the guest where the right addresses live
            right = self.topology.hosts["right"]
            for addr in (right.address, right.address6):
                if addr:
                    self.host.exec(f"ip neigh replace {addr} lladdr {self.peer_mac} dev vec0 nud permanent")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._up:
            return
        if self.injector is not None:
            if self.injector.stdin is not None:
                self.injector.stdin.close()
            try:
                self.injector.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.injector.kill()
                self.injector.wait()
        if self.host is not None:
            if self.host.alive:
                _, out = self.host.exec("ip -s xfrm state", check=False)
                (self.run_dir / "xfrm-state.txt").write_text(out)
            self.host.halt()
        if self.capture is not None:
            stop_capture(self.capture)
        netns.destroy(self.topology)
        cleanup.sweep(self.run_id)
        self._up = False

    # --- driving the guest ----------------------------------------------------------------------

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        if self.host is None:
            raise LabError("the kernel peer is not up")
        return self.host.exec(script, timeout=timeout, check=check)

    def install(self, outbound: KernelSa, inbound: KernelSa) -> None:
        """Install an SA pair (replacing any) and the policies that send left<->right traffic through them.

        The family comes from the SAs' addresses (all four must agree): the policies select
        all traffic between the left and right transit addresses of that family, ``/32`` for
        IPv4 and ``/128`` for IPv6.
        """
        family = family_of(outbound.src)
        if {family_of(a) for a in (outbound.src, outbound.dst, inbound.src, inbound.dst)} != {family}:
            raise LabError(f"SA addresses of mixed families: {outbound.src} -> {outbound.dst}, "
                           f"{inbound.src} -> {inbound.dst}", hint="use IPv4 or IPv6 addresses for both SAs")
        proto, mode = outbound.proto, outbound.mode
        left, right = self.address("left", family), self.address("right", family)
        plen = 32 if family == 4 else 128
        tmpl_out = f"tmpl src {outbound.src} dst {outbound.dst} proto {proto} spi 0x{outbound.spi:08x} mode {mode}"
        tmpl_in = f"tmpl src {inbound.src} dst {inbound.dst} proto {proto} spi 0x{inbound.spi:08x} mode {mode}"
        # one guest command (a round trip through the spool costs ~0.1 s); set -e stops at the first refusal
        self.exec("\n".join([
            "set -e",
            "ip xfrm state flush; ip xfrm policy flush",
            outbound.command(),
            inbound.command(),
            f"ip xfrm policy add src {left}/{plen} dst {right}/{plen} dir out {tmpl_out}",
            f"ip xfrm policy add src {right}/{plen} dst {left}/{plen} dir in {tmpl_in}",
        ]))

    def open_natt_socket(self) -> None:
        """Have UDP 4500 sockets with UDP_ENCAP_ESPINUDP in the guest, so the kernel takes ESP-in-UDP.

        The kernel only decapsulates ESP-in-UDP that arrives on such a socket; an IKE daemon
        opens it.  charon is started with no connection for exactly that (it installs no SA);
        its socket-default plugin opens one socket per family, and this waits for both (the
        IPv6 one in ``/proc/net/udp6``).
        """
        if self.host is None:
            raise LabError("the kernel peer is not up")
        (self.host.dir / "natt.conf").write_text(
            "charon {\n  load_modular = no\n  load = random nonce openssl kernel-netlink socket-default\n"
            "  install_routes = no\n  threads = 4\n}\n")
        self.exec("STRONGSWAN_CONF=/ipl/natt.conf /usr/lib/ipsec/charon > /ipl/natt-charon.log 2>&1 &\n"
                  # 4500 is 0x1194 in /proc/net/udp and /proc/net/udp6
                  "up() { grep -qi ':1194 ' /proc/net/udp && grep -qi ':1194 ' /proc/net/udp6; }\n"
                  "i=0; while ! up && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
                  "up")

    def states(self) -> list[XfrmState]:
        _, out = self.exec("ip -s xfrm state")
        return parse_xfrm_state(out)

    def drop_counters(self) -> dict[str, int]:
        """The guest's nonzero counters of dropped packets, to say why the kernel refused what no SA counted.

        All of ``/proc/net/xfrm_stat`` (XfrmInNoStates, XfrmInStateProtoError, ...) and the error,
        discard and checksum counters of ``/proc/net/snmp`` and ``/proc/net/snmp6`` (e.g.
        Udp6InCsumErrors for ESP in UDP with a bad checksum).  Global and cumulative, not per SA.
        """
        _, out = self.exec("cat /proc/net/xfrm_stat; echo ==; cat /proc/net/snmp6; echo ==; cat /proc/net/snmp")
        return parse_drop_counters(*out.split("==\n"))

    def ping_out(self, count: int = 3, family: int = 4, wait: float = 1) -> str:
        """Pings from the guest to the right address of ``family``: the kernel encrypts them (nobody answers).

        Returns ping's output once it gave up waiting ``wait`` seconds for the last answer.
        """
        _, out = self.exec(f"ping -{family} -n -c {count} -i 0.2 -W {wait:g} {self.address('right', family)}",
                           check=False, timeout=30)
        return out

    def inject(self, ip_packets: list[bytes], wait: float = 1.0) -> None:
        """Send IP packets (made by ipseclab) to the guest as Ethernet frames from the right namespace."""
        if self.capture is None:
            raise LabError("the kernel peer is not up")
        if self.injector is None:
            link = self.topology.links[0]
            cmd = in_netns(link.b_ns, [sys.executable, "-m", "ipseclab.lab.inject", link.b_if, self.peer_mac,
                                       self.guest_mac])
            self.injector = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                             stderr=open(self.run_dir / "inject.log", "w"))  # noqa: SIM115
        assert self.injector.stdin is not None and self.injector.stdout is not None
        self.injector.stdin.write(json.dumps([p.hex() for p in ip_packets]) + "\n")
        self.injector.stdin.flush()
        answer = self.injector.stdout.readline()
        if not answer.startswith("ok"):
            raise LabError("the packet injector failed", output=(self.run_dir / "inject.log").read_text())
        time.sleep(wait)

    @property
    def pcap(self) -> Path:
        if self.capture is None:
            raise LabError("the kernel peer is not up")
        return self.capture.pcap

    def captured(self) -> list[IpPacket | BadFrame]:
        """The frames captured since the previous call (the first call: since the start), read incrementally."""
        if self._follower is None:
            self._follower = PcapFollower(self.pcap)
        return self._follower.read()

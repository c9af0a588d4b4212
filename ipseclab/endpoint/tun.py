"""The endpoint's TUN device and the routing that sends protected traffic into it, in the current namespace.

Why routing rules and not just routes: in transport mode the peer's own address is what the selectors
protect, yet IKE (UDP 500/4500) and the ESP/AH packets themselves go to that same address in the clear.
So the selectors' routes live in their own table (``TABLE``), looked up for everything (``PRIO_TUN``)
except, just before it (``PRIO_BYPASS``), ESP, AH and UDP to or from the IKE ports, which keep the main
table.  The same table serves tunnel mode, where the peer's protected subnets are routed there.

Clear-text traffic that policy says must be protected (RFC 4301 5.2) is dropped by the kernel: strict
reverse-path filtering (``rp_filter=1``) refuses a packet whose source the routes say lives behind the TUN
device when it arrives on any other interface, and counts it in ``/proc/net/netstat``
(``IPReversePathFilter``), which the runner reports as ``clear_dropped``.  The kernel's rule lookup for
that check sees the protocol and the (swapped) ports, so ESP and IKE from the peer still pass.  IPv6 has
no rp_filter: clear IPv6 traffic to protected addresses is not dropped here (nftables' ``fib`` would).

Everything added is removed by ``close`` (the device goes when its file descriptor closes); rp_filter gets
its old value back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

from ..errors import IpsecLabError

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
TABLE = 0x1EC  # 492: the selectors' routes
PRIO_BYPASS, PRIO_TUN = 4900, 4901
BYPASS_MARK = 0x1EC  # SO_MARK of the endpoint's raw socket: what it sends keeps the main table
PROTO_ESP, PROTO_AH, PROTO_UDP = 50, 51, 17
_RP_FILTER = Path("/proc/sys/net/ipv4/conf/all/rp_filter")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def rp_filter_drops() -> int:
    """The kernel's count of packets refused by reverse-path filtering in this namespace."""
    try:
        return parse_rp_filter_drops(Path("/proc/net/netstat").read_text())
    except OSError:
        return 0


def parse_rp_filter_drops(text: str) -> int:
    """``IPReversePathFilter`` from the text of /proc/net/netstat (pairs of name and value lines)."""
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and "IPReversePathFilter" in names:
            return int(values.split()[names.split().index("IPReversePathFilter")])
    return 0


class Tun:
    """A TUN device (IFF_TUN, no packet info: each read is one IP packet) and the routing around it."""

    def __init__(self, name: str = "ipsec0", mtu: int = 1400, ike_ports: tuple[int, ...] = (500, 4500)) -> None:
        from pyroute2 import IPRoute

        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            raise IpsecLabError(f"cannot open /dev/net/tun ({exc.strerror}): the endpoint needs root and the "
                                "tun module") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError as exc:
            os.close(self.fd)
            raise IpsecLabError(f"cannot create TUN device {name} ({exc.strerror})") from None
        self.name = name
        self.ipr = IPRoute()
        self.index: int = self.ipr.link_lookup(ifname=name)[0]
        ipv6 = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
        if ipv6.exists():
            ipv6.write_text("0\n")
        self.ipr.link("set", index=self.index, state="up", mtu=mtu)
        self.routes: dict[Network, int] = {}  # network -> how many installed pairs route it here
        self.rules: list[dict[str, object]] = []
        self._rp_old: str | None = None
        for fam in (socket.AF_INET, socket.AF_INET6):
            bypass: list[dict[str, object]] = [dict(ip_proto=PROTO_ESP), dict(ip_proto=PROTO_AH),
                                               dict(fwmark=BYPASS_MARK, fwmask=0xFFFFFFFF)]
            for port in ike_ports:
                bypass += [dict(ip_proto=PROTO_UDP, sport_range=f"{port}:{port}"),
                           dict(ip_proto=PROTO_UDP, dport_range=f"{port}:{port}")]
            for match in bypass:
                self._rule(family=fam, priority=PRIO_BYPASS, table=254, **match)
            self._rule(family=fam, priority=PRIO_TUN, table=TABLE)
        if _RP_FILTER.exists():
            self._rp_old = _RP_FILTER.read_text().strip()
            _RP_FILTER.write_text("1\n")

    def _rule(self, **kw: object) -> None:
        try:
            self.ipr.rule("add", **kw)
        except Exception as exc:  # pyroute2's NetlinkError, or its encoder refusing a value
            # the same rule already there: an endpoint killed in this namespace left it (a lab's Kill, then
            # Revive); it is taken over, and removed at close like the others
            if getattr(exc, "code", None) != errno.EEXIST:
                self.close()
                raise IpsecLabError(f"cannot add the routing rule {kw} for the TUN device: {exc}") from None
        self.rules.append(kw)

    def read(self) -> bytes | None:
        """One packet the kernel routed into the device, or None when there is none now."""
        try:
            return os.read(self.fd, 65535)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        """Hand a packet that came through a Child SA to the kernel, as if it arrived on the device."""
        try:  # noqa: SIM105 - the per-packet path: no context manager
            os.write(self.fd, packet)
        except OSError:
            pass  # the kernel refused it (e.g. a malformed inner packet): nothing to deliver

    def local_address_in(self, nets: list[Network]) -> str | None:
        """An address of this namespace inside ``nets``: the source for packets routed into the device."""
        for msg in self.ipr.get_addr():
            addr = ipaddress.ip_address(msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL"))
            if any(addr in n for n in nets if n.version == addr.version):
                return str(addr)
        return None

    def add_routes(self, remote: list[Network], local: list[Network]) -> None:
        """Route ``remote`` into the device (once per network however many pairs cover it)."""
        for net in remote:
            self.routes[net] = self.routes.get(net, 0) + 1
            if self.routes[net] > 1:
                continue
            src = self.local_address_in([n for n in local if n.version == net.version])
            kw: dict[str, object] = dict(dst=str(net), oif=self.index, table=TABLE)
            if src is not None:
                kw["prefsrc"] = src
            try:
                self.ipr.route("add", **kw)
            except Exception:  # pyroute2 raises NetlinkError; a route already there is as good
                kw.pop("prefsrc", None)
                self.ipr.route("replace", **kw)

    def remove_routes(self, remote: list[Network]) -> None:
        for net in remote:
            n = self.routes.get(net, 0) - 1
            if n > 0:
                self.routes[net] = n
                continue
            self.routes.pop(net, None)
            with contextlib.suppress(Exception):
                self.ipr.route("del", dst=str(net), oif=self.index, table=TABLE)

    def close(self) -> None:
        """Remove the rules and routes, restore rp_filter, close (and so remove) the device."""
        for net in list(self.routes):
            self.remove_routes([net] * self.routes[net])
        for kw in self.rules:
            with contextlib.suppress(Exception):
                self.ipr.rule("del", **kw)
        self.rules.clear()
        if self._rp_old is not None:
            with contextlib.suppress(OSError):
                _RP_FILTER.write_text(self._rp_old + "\n")
        self.ipr.close()
        os.close(self.fd)

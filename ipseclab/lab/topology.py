"""The lab's fixed topology: addresses like a test bench, built from network namespaces and veth pairs.

::

    direct:   [left UML]--l0 ===veth=== r0--[right UML]            capture on l0
    nat:      [left UML]--l0 === nl0 [nat router] nr0 === r0--[right UML]
                                  masquerade left -> right          capture on nl0 and nr0

Each UML guest sits in its own namespace and attaches to its veth end with a raw socket
(``vec0``); the namespaces' own stacks carry no address on those veths, so captures on them
see exactly what the guests sent.  The NAT router is a namespace of the host kernel with
nftables masquerading (it only forwards UDP and ICMP, so the host's lack of ESP does not matter).

Addresses come from the documentation ranges only (never the host's 192.0.2.0/24):

=========  ==================  ====================  ======================
host       transit IPv4        transit IPv6          protected subnet
=========  ==================  ====================  ======================
left       198.51.100.10/24    2001:db8:1::10/64     203.0.113.0/26 (.1)
right      198.51.100.20/24    2001:db8:1::20/64     203.0.113.64/26 (.65)
nat        198.51.100.1 (in)   -                     -
           203.0.113.129 (out) (right: 203.0.113.130/26 behind the router's outside)
=========  ==================  ====================  ======================

In the NAT topology right's transit address is 203.0.113.130/26 and left's default route goes
through 198.51.100.1; right sees left's traffic coming from 203.0.113.129.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..errors import LabError

LAB_PREFIX = "ipl-"
DOC_RANGES = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


@dataclass(frozen=True, slots=True)
class HostAddressing:
    """What one UML host gets: its transit address(es), gateway and protected subnet."""

    name: str
    transit4: str  # address/prefix
    transit6: str | None
    gateway4: str | None
    protected: str  # subnet
    protected_addr: str  # the host's own address inside it (on lo)

    @property
    def address(self) -> str:
        return self.transit4.split("/")[0]

    @property
    def address6(self) -> str | None:
        return self.transit6.split("/")[0] if self.transit6 else None


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between two namespaces; ``capture`` names the end tcpdump listens on."""

    name: str
    a_ns: str
    a_if: str
    b_ns: str
    b_if: str
    capture_ns: str
    capture_if: str


@dataclass(frozen=True, slots=True)
class Topology:
    """A lab layout: namespaces, links, and each UML host's addressing and attachment."""

    kind: str
    run_id: str
    hosts: dict[str, HostAddressing]
    attach: dict[str, tuple[str, str]]  # host -> (namespace, interface its vec0 uses)
    links: list[Link]
    router: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # ns -> [(ifname, addr/prefix)]

    @property
    def namespaces(self) -> list[str]:
        out: list[str] = []
        for link in self.links:
            for ns in (link.a_ns, link.b_ns):
                if ns not in out:
                    out.append(ns)
        return out

    def public_address(self, host: str) -> str:
        """The address the other side sees for ``host`` (the router's outside address behind NAT)."""
        if self.kind == "nat" and host == "left":
            return "203.0.113.129"
        return self.hosts[host].address


def make_topology(kind: str, run_id: str) -> Topology:
    """The ``direct`` or ``nat`` topology for one run, with namespaces named ``ipl-<run_id>-...``."""
    ns = {h: f"{LAB_PREFIX}{run_id}-{h}" for h in ("left", "right", "nat")}
    left = HostAddressing("left", "198.51.100.10/24", "2001:db8:1::10/64", None, "203.0.113.0/26", "203.0.113.1")
    if kind == "direct":
        right = HostAddressing("right", "198.51.100.20/24", "2001:db8:1::20/64", None, "203.0.113.64/26",
                               "203.0.113.65")
        link = Link("left-right", ns["left"], "l0", ns["right"], "r0", ns["left"], "l0")
        return Topology(kind, run_id, {"left": left, "right": right},
                        {"left": (ns["left"], "l0"), "right": (ns["right"], "r0")}, [link])
    if kind == "nat":
        left = HostAddressing("left", "198.51.100.10/24", None, "198.51.100.1", "203.0.113.0/26", "203.0.113.1")
        right = HostAddressing("right", "203.0.113.130/26", None, None, "203.0.113.64/26", "203.0.113.65")
        links = [
            Link("left-nat", ns["left"], "l0", ns["nat"], "nl0", ns["nat"], "nl0"),
            Link("nat-right", ns["nat"], "nr0", ns["right"], "r0", ns["nat"], "nr0"),
        ]
        router = {ns["nat"]: [("nl0", "198.51.100.1/24"), ("nr0", "203.0.113.129/26")]}
        return Topology(kind, run_id, {"left": left, "right": right},
                        {"left": (ns["left"], "l0"), "right": (ns["right"], "r0")}, links, router)
    raise LabError(f"unknown topology {kind!r}", hint="use 'direct' or 'nat'")


def check_host_routes() -> None:
    """Refuse to start when the host itself uses any of the lab's address ranges (we would shadow them)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for fam in (2, 10):
            for route in ipr.get_routes(family=fam):
                dst = route.get_attr("RTA_DST")
                if dst is None:
                    continue
                net = ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)
                for lab in DOC_RANGES:
                    if net.version == lab.version and net.overlaps(lab) and net.prefixlen > 0:
                        raise LabError(f"the host already routes {net}, which overlaps the lab's {lab}",
                                       hint="the lab only uses documentation ranges; free them on the host "
                                            "or run the lab on another machine")

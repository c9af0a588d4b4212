"""Build and remove a topology's namespaces, veth pairs and NAT router (pyroute2; nft and sysctl via ip netns exec);
empty the router's connection tracking between two cells.

Everything created is named with the lab prefix and the run id, so that teardown (and
``ipseclab lab cleanup`` after a crash) finds exactly what this lab made and nothing else.
"""

from __future__ import annotations

import contextlib

from ..errors import LabError
from .proc import in_netns, require_tool, run
from .topology import LAB_PREFIX, Topology


def _index(nsr: object, ifname: str, ns: str) -> int:
    """The interface index of ``ifname`` in a namespace, waiting briefly for a just-moved link to show up."""
    import time

    for _ in range(50):
        found = nsr.link_lookup(ifname=ifname)  # type: ignore[attr-defined]
        if found:
            return int(found[0])
        time.sleep(0.02)
    raise LabError(f"interface {ifname} did not appear in namespace {ns}")


def _sysctl(ns: str, key: str, value: str) -> None:
    run(in_netns(ns, ["sysctl", "-q", "-w", f"{key}={value}"]), timeout=10)


def create(topo: Topology, attached: dict[str, int] | None = None) -> None:
    """Create namespaces, links and the router; on failure remove what was made and raise LabError.

    ``attached`` maps namespace names to processes (a container's init) whose network namespace
    takes that name instead of a new one (``ip netns attach``): the rest is the same either way.
    """
    from pyroute2 import IPRoute, NetNS, netns
    from pyroute2.netlink.exceptions import NetlinkError

    attached = attached or {}
    try:
        existing = set(netns.listnetns())
        for ns in topo.namespaces:
            if ns in existing:
                raise LabError(f"network namespace {ns} already exists (a run with the same id is active?)",
                               hint="ipseclab lab cleanup removes what crashed runs left behind")
            if ns in attached:
                netns.attach(ns, attached[ns])
            else:
                netns.create(ns)
        with IPRoute() as ipr:
            for link in topo.links:
                tmp_a, tmp_b = f"ipl{topo.run_id[-6:]}a", f"ipl{topo.run_id[-6:]}b"
                ipr.link("add", ifname=tmp_a, kind="veth", peer={"ifname": tmp_b})
                ipr.link("set", index=ipr.link_lookup(ifname=tmp_a)[0], net_ns_fd=link.a_ns, ifname=link.a_if)
                ipr.link("set", index=ipr.link_lookup(ifname=tmp_b)[0], net_ns_fd=link.b_ns, ifname=link.b_if)
        for link in topo.links:
            for ns, ifname in ((link.a_ns, link.a_if), (link.b_ns, link.b_if)):
                with NetNS(ns) as nsr:
                    nsr.link("set", index=_index(nsr, ifname, ns), state="up")
                    nsr.link("set", index=_index(nsr, "lo", ns), state="up")
                _sysctl(ns, f"net.ipv6.conf.{ifname}.disable_ipv6", "1")
        for ns, addrs in topo.router.items():
            with NetNS(ns) as nsr:
                for ifname, cidr in addrs:
                    addr, plen = cidr.split("/")
                    nsr.addr("add", index=_index(nsr, ifname, ns), address=addr, prefixlen=int(plen))
            _sysctl(ns, "net.ipv4.ip_forward", "1")
            require_tool("nft")
            out_if = addrs[-1][0]
            rules = (
                "table ip ipseclab_nat {\n"
                "  chain postrouting {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                f'    oifname "{out_if}" masquerade\n'
                "  }\n"
                "}\n"
            )
            run(in_netns(ns, ["nft", "-f", "-"]), input=rules, timeout=10)
    except (NetlinkError, OSError, IndexError) as exc:
        destroy(topo)
        raise LabError(f"creating the {topo.kind} topology failed: {type(exc).__name__}: {exc}",
                       hint="run as root; ipseclab lab cleanup removes leftovers of earlier runs") from None
    except BaseException:
        destroy(topo)
        raise


def flush_conntrack(topo: Topology) -> None:
    """Empty the connection tracking of the topology's NAT router (none in the direct topology), through
    ctnetlink in its namespace (pyroute2): the masquerade's mappings of one cell must not carry into the next
    (Lab.next_cell); LabError if the kernel refuses."""
    if not topo.router:
        return
    from pyroute2 import NFCTSocket
    from pyroute2.netlink.exceptions import NetlinkError

    for ns in topo.router:
        try:
            with NFCTSocket(netns=ns) as ct:
                ct.flush()
        except (NetlinkError, OSError) as exc:
            raise LabError(f"emptying the connection tracking of the NAT router {ns} failed: "
                           f"{type(exc).__name__}: {exc}") from None


def destroy(topo: Topology) -> list[str]:
    """Remove the topology's namespaces (which removes their veths); returns the names removed."""
    return remove_namespaces([ns for ns in topo.namespaces])


def remove_namespaces(names: list[str]) -> list[str]:
    from pyroute2 import netns

    removed = []
    existing = set(netns.listnetns())
    for ns in names:
        if ns in existing:
            with contextlib.suppress(OSError):
                netns.remove(ns)
                removed.append(ns)
    return removed


def lab_namespaces(run_id: str | None = None) -> list[str]:
    """Namespaces made by ipseclab labs (all of them, or one run's)."""
    from pyroute2 import netns

    prefix = LAB_PREFIX + (f"{run_id}-" if run_id else "")
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))

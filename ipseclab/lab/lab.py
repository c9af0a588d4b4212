"""The lab as a context manager: images, topology, captures and two UML peers, always torn down.

::

    with Lab(LabSpec(topology="nat", left="strongswan", right="libreswan", ...)) as lab:
        lab.initiate()
        lab.ping()
    # run directory: <link>.pcap per link, ikev2_decryption_table, esp_sa, left/ and right/ logs, lab.json

Teardown runs on success, on exceptions, on SIGINT/SIGTERM (turned into LabInterrupted while
the lab is up) and after a peer dies: keys are collected while the guests still run, then
guests are halted, captures stopped and namespaces removed, the keys collected again from the
complete captures and logs (an SA a timer made as the cell ended), and a final sweep for this run
id catches anything left.  The run directory is kept in every case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from ..errors import LabError
from ..pcap.esp_keyfiles import read_esp_sa
from ..pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table, write_ikev2_decryption_table
from . import cleanup, netns
from .capture import Capture, start_capture, stop_capture
from .esp_keys import write_run_esp_sa
from .images import Image, build_image
from .impls import PeerDriver, driver
from .impls.contract import KERNEL_SNAPSHOT, Reload, route_batch, split_snapshot
from .inject import Injector, macs_from_capture
from .keys import XfrmState, match_ike_keys, parse_xfrm_monitor, parse_xfrm_stat, parse_xfrm_state
from .peerconfig import PeerConfig
from .proc import require_root, require_tool
from .runtimes import RuntimeChoice, choose_runtime
from .runtimes.docker import ContainerHost
from .runtimes.process import EndpointHost
from .runtimes.uml import UmlHost, keep_daemon_reset, network_batch, network_script
from .runtimes.uml_kernel import UmlKernel, select_kernel
from .runtimes.uml_probe import Verdict, require_bootable
from .topology import Topology, check_host_routes, make_topology

T = TypeVar("T")
LabHost = UmlHost | EndpointHost  # a UML guest with a kernel IPsec peer, or the ipseclab endpoint process


# every SA the kernel is given, with its keys, as it comes: a rekey or an expiry deletes SAs before the run
# ends, and the key tables must still cover them (read back by _collect_keys)
XFRM_MONITOR = "ip xfrm monitor > /ipl/xfrm-monitor.txt 2>&1 &\n"


class LabInterrupted(LabError, KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while the lab was up.

    Also a KeyboardInterrupt, so that whoever runs labs in a loop (the matrix, a pytest session)
    stops instead of recording one failed cell and going on; the lab itself is torn down first,
    as on every exit path.
    """


@dataclass(frozen=True, slots=True)
class LabSpec:
    """What to boot: topology kind, the implementation on each side, and each side's configuration."""

    left_config: PeerConfig
    right_config: PeerConfig
    topology: str = "direct"
    left: str = "strongswan"
    right: str = "libreswan"
    runtime: str = ""  # "uml", "docker" or "auto"; "" for $IPSECLAB_RUNTIME, else uml


@dataclass(slots=True)
class PeerRun:
    """One booted peer: its driver, config and guest."""

    side: str
    driver: PeerDriver
    config: PeerConfig
    host: LabHost


@dataclass(slots=True)
class Timings:
    images: float = 0.0
    topology: float = 0.0
    boot: dict[str, float] = field(default_factory=dict)
    teardown: float = 0.0
    cell: int = 1  # the how-manieth cell on these booted hosts (boot: the seconds its reset took, see next_cell)
    reloaded: list[str] = field(default_factory=list)  # the sides whose daemon next_cell reloaded, not restarted


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]


def default_run_dir(run_id: str) -> Path:
    return Path.cwd() / "runs" / time.strftime("%Y%m%d-%H%M%S") / run_id


class Lab:
    """A running two-peer lab (see the module docstring)."""

    def __init__(self, spec: LabSpec, run_dir: Path | None = None, run_id: str | None = None) -> None:
        self.spec = spec
        self.run_id = run_id or new_run_id()
        self.run_dir = (run_dir or default_run_dir(self.run_id)).resolve()
        self.topology: Topology = make_topology(spec.topology, self.run_id)
        self.captures: list[Capture] = []
        self.peers: dict[str, PeerRun] = {}
        self.timings = Timings()
        self.ike_rows: list[IkeSaKeyRow] = []
        self.xfrm: dict[str, list[XfrmState]] = {}
        self._old_handlers: dict[int, Any] = {}
        self._up = False
        self._cell_open = False  # a cell runs whose keys and counters are not collected yet (_finish_cell)
        self._pid = os.getpid()
        self.runtime: RuntimeChoice | None = None
        self.kernel: UmlKernel | None = None
        self.probe: Verdict | None = None
        self._injectors: dict[str, Injector] = {}
        self._stat_base: dict[str, dict[str, int]] = {}  # each guest's xfrm_stat when this cell began on it
        self.booted_in = self.run_dir  # the run directory of the cell that booted the hosts
        self._drops: dict[str, Path] = {}  # the drop (Reload) end_cell submitted on a side: its spool path
        self.shaped: dict[str, str] = {}  # side -> the interface a lifecycle step put a netem delay on

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            # a forked helper (pyroute2 runs NetNS work in a fork) inherits this handler: it must
            # die as it would have, not unwind into the lab's code
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise LabInterrupted(f"interrupted by {signal.Signals(signum).name}; tearing the lab down")

    def up(self) -> None:
        require_root("the lab")
        for tool in ("tcpdump", "ip"):
            require_tool(tool)
        check_host_routes()
        self.runtime = choose_runtime(self.spec.runtime)
        drivers = {side: driver(impl) for side, impl in (("left", self.spec.left), ("right", self.spec.right))}
        if any(self.runtime.boots_uml(d.placement) for d in drivers.values()):
            # before anything exists to tear down: a kernel that cannot boot here stops the lab with the cause
            self.kernel = select_kernel()
            self.probe = require_bootable(self.kernel)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        self._up = True
        started = time.monotonic()
        images = self._images({d.impl: d for d in drivers.values() if d.placement != "process"})
        self.timings.images = time.monotonic() - started
        self._write_state()
        configs = {"left": self.spec.left_config, "right": self.spec.right_config}
        for side, drv in drivers.items():
            ns, ifname = self.topology.attach[side]
            peer_dir = self.run_dir / side
            peer_dir.mkdir(parents=True, exist_ok=True)
            drv.write_config(configs[side], peer_dir)
            umid = f"ipl-{self.run_id}-{side}"
            host: LabHost
            if drv.placement == "process":
                host = EndpointHost(side, ns, ifname, self.topology.hosts[side], peer_dir)
            elif drv.placement == "container" or self.runtime.name == "docker":
                image = images[drv.impl]
                host = ContainerHost(side, umid, image, ns, ifname, peer_dir, tag=image.key, run_id=self.run_id,
                                     uml=self.runtime.boots_uml(drv.placement))
            else:
                host = UmlHost(side, umid, images[drv.impl], ns, ifname, peer_dir)
            self.peers[side] = PeerRun(side, drv, configs[side], host)
        started = time.monotonic()
        # containers first: their network namespaces take the sides' names, then the links go in
        containers = {side: p.host for side, p in self.peers.items() if isinstance(p.host, ContainerHost)}
        for side in containers:
            self._boot(self.peers[side])
        netns.create(self.topology, {self.topology.attach[side][0]: c.pid() for side, c in containers.items()})
        self.timings.topology = time.monotonic() - started
        for link in self.topology.links:
            self.captures.append(start_capture(link, self.run_dir))
        for side, peer in self.peers.items():
            if side not in containers:
                self._boot(peer)
        for side, peer in self.peers.items():
            self.timings.boot[side] = peer.host.wait_ready()
        self._cell_open = True

    def _images(self, drivers: dict[str, PeerDriver]) -> dict[str, Image]:
        """The image of each implementation that needs one, for the runtime, built in parallel where missing."""
        kernel, runtime = self.kernel, self.runtime
        if not drivers or runtime is None:
            return {}

        def build(drv: PeerDriver) -> Image:
            if drv.placement == "kernel" and runtime.name == "uml" and kernel is not None:
                return build_image(drv.image or drv.impl, kernel, self.run_dir)
            from .runtimes import docker_images

            # the container's root is the guest's root (UML inside) or the daemon's own
            tag = docker_images.build(drv.image or drv.impl, self.run_dir).tag
            return Image(drv.impl, tag, Path("/"), kernel if runtime.boots_uml(drv.placement) else None)

        with ThreadPoolExecutor(len(drivers)) as ex:
            return dict(zip(drivers, ex.map(build, drivers.values()), strict=True))

    def _boot(self, peer: PeerRun) -> None:
        host = peer.host
        addressing = self.topology.hosts[peer.side]
        if isinstance(host, EndpointHost):
            host.boot(peer.driver.start_script(peer.config, addressing, dev=host.ifname))
            return
        if isinstance(host, ContainerHost) and not host.uml:  # the daemon on the host kernel, on the veth itself
            routes = route_batch(peer.config, addressing, host.ifname)
            host.boot(network_script(addressing, peer.side, dev=host.ifname, kernel=False, routes=routes)
                      + XFRM_MONITOR + peer.driver.start_script(peer.config, addressing, dev=host.ifname))
            return
        host.boot(network_script(addressing, peer.side, routes=route_batch(peer.config, addressing)) + XFRM_MONITOR
                  + peer.driver.start_script(peer.config, addressing))

    def down(self) -> None:
        """Collect keys, halt guests, stop captures, remove namespaces; safe to call more than once."""
        if not self._up:
            return
        started = time.monotonic()
        cell_open = self._cell_open  # False: end_cell finished the last cell, its run directory is complete
        if cell_open:
            self._finish_cell()
        # every step runs whatever the one before it raised (an engine that went away, a dead guest);
        # the failures are kept in teardown.warning and the final sweep catches what they left
        problems: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            *((f"halting the {p.side} peer", p.host.halt) for p in self.peers.values()),
            *((f"stopping the capture on {c.pcap.name}", partial(stop_capture, c)) for c in self.captures),
            ("removing the namespaces", partial(netns.destroy, self.topology)),
        ]
        if cell_open:  # the captures, logs and monitors are complete now: rows for SAs made while the cell ended
            steps.append(("collecting the keys again", partial(self._collect_keys, live=False)))
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                problems.append(f"{what}: {type(exc).__name__}: {exc}")
        containers = any(isinstance(p.host, ContainerHost) for p in self.peers.values())
        left = cleanup.sweep(self.run_id, containers=containers)
        if left:
            problems.append(f"swept after teardown: {left.describe()}")
        if problems:
            (self.run_dir / "teardown.warning").write_text("\n".join(problems) + "\n")
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        self._up = False
        if cell_open:
            self.timings.teardown = time.monotonic() - started
            self._write_state(final=True)

    def _finish_cell(self) -> None:
        """What every cell ends with while its peers still run: keys, counters, injectors closed."""
        self._cell_open = False

        def snapshot(peer: PeerRun) -> str | None:  # one exec a kernel peer for its SAs' keys and its counters
            if isinstance(peer.host, EndpointHost) or not peer.host.alive:
                return None
            return peer.host.exec(KERNEL_SNAPSHOT, check=False, timeout=15)[1]

        try:
            snapshots = self._each_peer(snapshot)
        except Exception as exc:  # best effort on the way down: each part below then reads for itself
            (self.run_dir / "collect-keys.error").write_text(f"{type(exc).__name__}: {exc}\n")
            snapshots = {}
        try:
            self._collect_keys(snapshots=snapshots)
        except Exception as exc:  # keys are best effort on the way down; the error is kept in the run dir
            (self.run_dir / "collect-keys.error").write_text(f"{type(exc).__name__}: {exc}\n")
        self._save_counters(snapshots)
        for inj in self._injectors.values():
            inj.close()
        self._injectors.clear()

    # --- several cells on the same booted hosts (interop.LabPool) --------------------------------

    def reusable(self) -> bool:
        """Whether the next cell of the same pair and topology can run on these hosts (next_cell): every host
        is a UML guest or the ipseclab endpoint process, and each is still running.  Not a container: it has no
        reset (its own layer keeps what the cell wrote, its namespace is the container's); not an endpoint that
        was killed (a lifecycle Kill), revived or not: its namespace keeps what the kill left (rp_filter, the TUN
        device's routing rules).  Either topology: next_cell empties the NAT router's connection tracking."""
        return (self._up and bool(self.peers)
                and all((type(p.host) is UmlHost or isinstance(p.host, EndpointHost)) and p.host.alive
                        and not (isinstance(p.host, EndpointHost) and p.host.killed) for p in self.peers.values()))

    def end_cell(self) -> None:
        """End this cell as down() would (keys, counters, captures stopped, lab.json final) but keep the hosts
        running for next_cell; a guest's console (kept where it booted) is copied into the run directory.  A daemon
        next_cell may reload gets its drop now (``Reload``), run in its guest while the host checks the cell."""
        started = time.monotonic()
        self._finish_cell()
        for cap in self.captures:
            stop_capture(cap)
        try:  # as down() does: rows for an SA a timer made after the first collection, before the captures stopped
            self._collect_keys(live=False)
        except Exception as exc:
            (self.run_dir / "collect-keys.error").write_text(f"{type(exc).__name__}: {exc}\n")
        for peer in self.peers.values():  # the SAs of a daemon next_cell may reload end now, unseen (see Reload)
            drop = getattr(peer.driver, "drop_script", None)
            if type(peer.host) is UmlHost and drop is not None and getattr(peer.driver, "reload", None) is not None \
                    and peer.host.alive:
                self._drops[peer.side] = peer.host.submit(drop(peer.config))
        for peer in self.peers.values():
            console = getattr(peer.host, "console", None)
            if console is not None and console.exists() and console.parent != peer.host.dir:
                shutil.copyfile(console, peer.host.dir / "console.log")
        self.timings.teardown = time.monotonic() - started
        self._write_state(final=True)

    def next_cell(self, spec: LabSpec, run_dir: Path) -> None:
        """Run the next cell, ``spec`` (same implementations, topology and runtime), on the booted hosts: each
        guest is reset as a fresh boot would leave it (no process, SA, policy, route or address of the cell
        before; uml.RESET), its ``/ipl`` moved to ``run_dir/<side>`` and its daemon started with the new
        configuration, or kept and reloaded where its driver allows it (``Reload``: the drop end_cell started has
        left it without SAs before the captures start); the ipseclab endpoint is a new process; a NAT router
        forgets its connections.  The captures start again in ``run_dir``, so the cell keeps its own pcaps, key
        files, logs, counters and lab.json as after a boot."""
        if (spec.left, spec.right, spec.topology, spec.runtime) != (self.spec.left, self.spec.right,
                                                                     self.spec.topology, self.spec.runtime):
            raise LabError("next_cell needs the same implementations, topology and runtime as the booted lab")
        self.spec = spec
        self.run_dir = run_dir.resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.captures, self.ike_rows, self.xfrm = [], [], {}
        self.timings = Timings(cell=self.timings.cell + 1)
        self._write_state()
        configs = {"left": spec.left_config, "right": spec.right_config}
        reloads: dict[str, Reload] = {}
        for side, peer in self.peers.items():
            old_cfg, old_dir, new_dir = peer.config, peer.host.dir, self.run_dir / side
            peer.config = configs[side]
            new_dir.mkdir(parents=True, exist_ok=True)
            peer.driver.write_config(peer.config, new_dir)
            plan = self._reload_plan(peer, old_cfg, old_dir, new_dir)
            if plan is not None:
                reloads[side] = plan
        # every drop end_cell started ends before the captures start (its Delete exchange is no cell's traffic); a
        # daemon is reloaded only if its drop left it without SAs, else restarted
        dropped = {side: self._dropped(side) for side in list(self._drops)}
        reloads = {side: plan for side, plan in reloads.items() if dropped.get(side)}
        self._each_peer(lambda peer: None if peer.side in reloads else _quiet(peer))  # before the captures start
        # a netem delay (Delay step) still holds the cell before's last packets: sent after the next cell's
        # captures start, they would be its frame 1 (seen: an ESP packet of rekey-collision's SA, 2 s late)
        shaped, self.shaped = self.shaped, {}
        self._each_peer(lambda peer: peer.side in shaped and peer.host.alive and peer.host.exec(
            f"tc qdisc del dev {shaped[peer.side]} root 2>/dev/null; true", timeout=30, check=False))
        for link in self.topology.links:
            self.captures.append(start_capture(link, self.run_dir))

        def reset(peer: PeerRun) -> float:
            started = time.monotonic()
            new_dir = self.run_dir / peer.side
            addressing = self.topology.hosts[peer.side]
            if isinstance(peer.host, EndpointHost):
                peer.host.restart(new_dir, peer.driver.start_script(peer.config, addressing, dev=peer.host.ifname))
                peer.host.wait_ready()
                return time.monotonic() - started
            batch = network_batch(addressing, routes=route_batch(peer.config, addressing))
            plan = reloads.get(peer.side)
            if plan is not None:
                stat = peer.host.reset(new_dir, XFRM_MONITOR + plan.load, batch=batch,
                                       clean=keep_daemon_reset(plan.pidfile, plan.keep))
            else:
                stat = peer.host.reset(new_dir, XFRM_MONITOR + peer.driver.start_script(peer.config, addressing),
                                       batch=batch)
            self._stat_base[peer.side] = parse_xfrm_stat(stat)
            return time.monotonic() - started

        self.timings.boot = self._each_peer(reset)
        self.timings.reloaded = sorted(reloads)
        # after the resets, which ended the cell before's daemons (a reloaded one was dropped: it holds no SA and
        # told its peer nothing) and before this cell's initiate: its NAT mappings start from none, as after a boot
        netns.flush_conntrack(self.topology)
        self._cell_open = True

    def _dropped(self, side: str) -> bool:
        """Whether the drop end_cell started on ``side`` ended well (waiting for it)."""
        base = self._drops.pop(side)
        host = self.peers[side].host
        try:
            return isinstance(host, UmlHost) and host.outcome(base, timeout=20)[0] == 0
        except LabError:
            return False

    def _reload_plan(self, peer: PeerRun, old_cfg: PeerConfig, old_dir: Path, new_dir: Path) -> Reload | None:
        """The driver's Reload of ``peer``'s running daemon into the configuration ``new_dir`` holds, or None
        (restart it): only a UML guest that runs, with a driver that has ``reload`` and finds it equivalent."""
        reload = getattr(peer.driver, "reload", None)
        if type(peer.host) is not UmlHost or reload is None or not peer.host.alive:
            return None
        plan: Reload | None = reload(old_cfg, peer.config, old_dir, new_dir, self.topology.hosts[peer.side])
        return plan

    def _write_state(self, final: bool = False) -> None:
        state = {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "spec": {"topology": self.spec.topology, "left": self.spec.left, "right": self.spec.right},
            "runtime": asdict(self.runtime) if self.runtime else None,
            "kernel": self.kernel.as_dict() if self.kernel else None,
            "kernel_probe": self.probe.summary() if self.probe else None,
            "namespaces": self.topology.namespaces,
            "pcaps": [str(c.pcap) for c in self.captures],
            "timings": asdict(self.timings),
            "booted_in": str(self.booted_in),  # another cell's run directory when this cell reused its hosts
            "finished": final,
        }
        (self.run_dir / "lab.json").write_text(json.dumps(state, indent=2) + "\n")

    # --- what test cases do -------------------------------------------------------------------

    def peer(self, side: str) -> PeerRun:
        try:
            peer = self.peers[side]
        except KeyError:
            raise LabError(f"no peer {side!r} in this lab", hint="sides are 'left' and 'right'") from None
        if not peer.host.alive:
            raise LabError(f"the {side} peer ({peer.driver.impl}) is not running", hint=f"see {peer.host.dir}")
        return peer

    def initiate(self, side: str = "left", timeout: float = 60, refused: bool = False) -> str:
        """Start the IKE SA and Child SA from ``side``; returns the daemon's output; LabError if it failed.
        ``refused``: the other side is to refuse it, so the initiator's record of the refusal notify ends the
        wait (LabError) even where the initiator rightly does not act on it (the driver's ``initiate_refused``)."""
        peer = self.peer(side)
        start = peer.driver.initiate_refused if refused else peer.driver.initiate
        out = start(peer.host, peer.config, timeout)
        other = self.peer("right" if side == "left" else "left")
        other.driver.wait_installed(other.host, other.config, timeout)
        return out

    def _flow(self, side: str) -> tuple[str, str]:
        """(source, destination) of test traffic from ``side``: the protected addresses (tunnel mode) or the
        hosts' own, IPv4 or IPv6 as configured, the other side's as this side reaches it (transport mode)."""
        peer = self.peer(side)
        other = "right" if side == "left" else "left"
        if peer.config.mode == "transport":
            dst = (self.topology.public_address(other) if self.topology.kind == "nat" and other == "left"
                   else str(self.peers[other].config.local_address))
            return str(peer.config.local_address), dst
        return self.topology.hosts[side].protected_addr, self.topology.hosts[other].protected_addr

    def ping(self, side: str = "left", count: int = 4, timeout: float = 30, interval: float = 0.02) -> str:
        """Ping the other side's protected address from this side's (tunnel) or host to host (transport),
        ``interval`` seconds apart (the default, 20 ms, is below ping's 200 ms floor for users: root may)."""
        src, dst = self._flow(side)
        _, out = self.peer(side).host.exec(f"ping -n -c {count} -i {interval:g} -W 2 -I {src} {dst}", timeout=timeout)
        return out

    def inject(self, toward: str, ip_packets: list[bytes], wait: float = 0.3) -> None:
        """Put IP packets on the wire of the direct topology's link toward ``toward``, as if the other side's
        host had sent them (its MAC as source, ``toward``'s as destination, both learned from the capture).

        The link's capture sees them, so they are in the run's pcap with everything the peers sent.
        """
        inj = self.injector(toward)
        if inj.macs is None:
            peer = self.peer(toward)
            pcap = next(c.pcap for c in self.captures if c.link is self.topology.links[0])
            found = macs_from_capture(pcap, self.topology.hosts[toward].address)
            if found is None:
                raise LabError(f"no frame from the {toward} peer ({peer.driver.impl}) in {pcap.name} to learn "
                               "its MAC address from", hint="inject after the peers have talked")
            victim_mac, other_mac = found
            inj.macs = (other_mac, victim_mac)
        inj.send(ip_packets, wait)

    def injector(self, toward: str) -> Injector:
        """The cell's injector toward ``toward`` (see inject), its process started on the first call: a caller
        that will inject may start it early (before the peers talk), so that its start-up overlaps other work."""
        inj = self._injectors.get(toward)
        if inj is None:
            if self.topology.kind != "direct":
                raise LabError(f"injection works on the direct topology, not {self.topology.kind!r}")
            self.peer(toward)
            other = "right" if toward == "left" else "left"
            link = self.topology.links[0]
            ns, iface = (link.a_ns, link.a_if) if toward == "right" else (link.b_ns, link.b_if)
            inj = self._injectors[toward] = Injector(ns, iface, self.run_dir / f"inject-{other}-to-{toward}.log")
        return inj

    def peer_counters(self, side: str, snapshot: str | None = None) -> dict[str, Any]:
        """``side``'s own counters through its driver (kernel xfrm statistics, the endpoint's SA counters),
        as the driver gives them (JSON-ready: what ``counters.json`` and ``probe.json`` hold); a kernel peer's
        from ``snapshot`` (KERNEL_SNAPSHOT's output) when given."""
        peer = self.peer(side)
        counters = peer.driver.counters(peer.host, snapshot)
        base = self._stat_base.get(side)
        if base and isinstance(counters.get("xfrm_stat"), dict):  # a reused guest: this cell's part only
            counters["xfrm_stat"] = {k: v - base.get(k, 0) for k, v in counters["xfrm_stat"].items()}
        return counters

    def _save_counters(self, snapshots: dict[str, str | None] | None = None) -> None:
        """Each running peer's counters into ``counters.json``, before the peers halt (best effort: a peer
        that cannot answer gets its error instead); a kernel peer's from its ``snapshots`` entry if any."""
        def one(peer: PeerRun) -> dict[str, Any]:
            try:
                return {"impl": peer.driver.impl, **self.peer_counters(peer.side, (snapshots or {}).get(peer.side))}
            except Exception as exc:
                return {"impl": peer.driver.impl, "error": f"{type(exc).__name__}: {exc}"}

        out = self._each_peer(one)
        (self.run_dir / "counters.json").write_text(json.dumps(out, indent=2) + "\n")

    def _each_peer(self, fn: Callable[[PeerRun], T]) -> dict[str, T]:
        """``fn`` on each peer, the sides at once (each host's commands still one at a time)."""
        with ThreadPoolExecutor(max(1, len(self.peers))) as ex:
            return dict(zip(self.peers, ex.map(fn, self.peers.values()), strict=True))

    def exec(self, side: str, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        return self.peer(side).host.exec(script, timeout=timeout, check=check)

    def _collect_keys(self, live: bool = True, snapshots: dict[str, str | None] | None = None) -> None:
        """The run's key tables from the captures, the peers' logs and their kernels' SAs.

        ``snapshots``: each kernel peer's KERNEL_SNAPSHOT output, already read (else ``ip -s xfrm state`` is).
        ``live=False``, once the guests are halted and the captures stopped: again from the complete captures,
        logs and ``ip xfrm monitor`` outputs (and the ``ip -s xfrm state`` the live collection saved), so an SA
        that a timer made while the cell was ending (a rekey every few seconds) has its rows too."""
        messages = captured_ike_messages(self.captures)
        keysets = []

        def xfrm_state(peer: PeerRun) -> str | None:
            if isinstance(peer.host, EndpointHost) or not peer.host.alive:
                return None
            snap = (snapshots or {}).get(peer.side)
            if snap is not None:
                return split_snapshot(snap)[0]
            return peer.host.exec("ip -s xfrm state", check=False, timeout=15)[1]

        states = self._each_peer(xfrm_state) if live else {}
        for peer in self.peers.values():
            keysets += peer.driver.ike_keys(peer.host.dir)
            if isinstance(peer.host, EndpointHost):
                continue  # no kernel SAs: the endpoint wrote its own key files into its directory
            self.xfrm[peer.side] = []
            saved = peer.host.dir / "xfrm-state.txt"
            out = states.get(peer.side)
            if out is not None:
                saved.write_text(out)
            elif not live and saved.exists():
                out = saved.read_text(errors="replace")
            if out is not None:
                self.xfrm[peer.side] = parse_xfrm_state(out)
            monitor = peer.host.dir / "xfrm-monitor.txt"
            if monitor.exists():  # SAs gone before the end (rekeyed, expired, a killed peer's flushed SAs)
                self.xfrm[peer.side] += parse_xfrm_monitor(monitor.read_text(errors="replace"))
        self.ike_rows = match_ike_keys(keysets, messages)
        for peer in self.peers.values():  # rows the ipseclab endpoint wrote itself
            own = peer.host.dir / "ikev2_decryption_table"
            if isinstance(peer.host, EndpointHost) and own.exists():
                known = {(r.spi_i, r.spi_r) for r in self.ike_rows}
                self.ike_rows += [r for r in read_ikev2_decryption_table(own) if (r.spi_i, r.spi_r) not in known]
        write_ikev2_decryption_table(self.run_dir / "ikev2_decryption_table", self.ike_rows)
        own_esp = [row for peer in self.peers.values() if isinstance(peer.host, EndpointHost)
                   and (peer.host.dir / "esp_sa").exists() for row in read_esp_sa(peer.host.dir / "esp_sa")]
        write_run_esp_sa(self.run_dir / "esp_sa", [s for states in self.xfrm.values() for s in states], own_esp)


def _quiet(peer: PeerRun) -> None:
    """End the daemon of the cell before (next_cell), before the next cell's captures start: one with short
    lifetimes or DPD (a lifecycle case) goes on rekeying and probing while its lab is parked, and its messages,
    whose keys are the cell before's, must not land in the next cell's pcaps (seen: a Libreswan INFORMATIONAL
    as frame 1 of the next cell, "no keys for IKE SA").  The reset ends everything else in the guest after; the
    endpoint's halt ends every process in its namespace, a capture there too, so it too goes first.  Not for a
    daemon next_cell reloads: its drop (end_cell) has ended all its SAs, so it has nothing left to send."""
    if isinstance(peer.host, EndpointHost):
        peer.host.halt(keep_zygote=True)  # it forks the next cell's endpoint
    elif peer.driver.daemon:
        peer.host.exec(f"kill -9 $(busybox pidof {peer.driver.daemon}) 2>/dev/null; true", timeout=30, check=False)


def captured_ike_messages(captures: list[Capture]) -> list[bytes]:
    """The IKE messages in the lab's captures so far (UDP 500, and UDP 4500 after the non-ESP marker)."""
    from ..analysis.ike import ike_datagrams
    from ..errors import DecodeError
    from ..packets.natt import NATT_PORT, ike_from_udp
    from ..pcap.reader import UdpDatagram

    messages: list[bytes] = []
    for cap in captures:
        if not cap.pcap.exists():
            continue
        for d in ike_datagrams(cap.pcap):
            if isinstance(d, UdpDatagram):
                port = NATT_PORT if NATT_PORT in (d.sport, d.dport) else d.dport
                try:
                    message = ike_from_udp(d.payload, port)  # the one port-4500 demultiplexer
                except DecodeError:
                    continue  # a runt on 4500: neither IKE nor ESP
                if message is not None:
                    messages.append(message)
    return messages

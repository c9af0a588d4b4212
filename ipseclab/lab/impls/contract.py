"""The adapter contract: what the lab needs from an IKEv2 implementation, and the helpers drivers share.

Each implementation lives in one module of ``lab/impls/`` (its renderer, its driver, how its keys
are read) and names its image folder under ``containers/``; ``lab/impls/__init__.py`` registers it.
A driver writes the peer's configuration into its host directory (seen as ``/ipl`` in the
guest), gives the shell lines that start the daemon at boot, initiates the SA, and reads the
keys the daemon logged.  Sockets and runtime state live on the guest's tmpfs ``/run``
(unix sockets do not work on hostfs); logs and configs live in ``/ipl`` so they survive the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..keys import StrongswanIkeKeys, parse_xfrm_stat, parse_xfrm_state
from ..peerconfig import PeerConfig
from ..topology import HostAddressing

PLACEMENTS = ("kernel", "container", "process")
# what a lifecycle case's steps may ask of a driver (testcases/steps.py): rekey now, start an additional
# Child SA, kill the daemon, start it again after that, run shell commands on its host
LIFECYCLE_ACTIONS = ("rekey", "child", "kill", "revive", "shell")

# shell lines that wait (20 s at most) for a daemon's unix socket, or fail the init script
WAIT_FOR = """i=0; while [ ! -S {path} ] && [ $i -lt 1000 ]; do ipl_sleep 0.02; i=$((i+1)); done
[ -S {path} ] || {{ echo "{what} did not create {path}"; exit 1; }}
"""


def require_daemon(pidfile: str, what: str) -> str:
    """The first line of a drop: fail at once unless the daemon whose pid ``pidfile`` holds runs.  A daemon a
    lifecycle Kill ended has nothing to drop and must not be reloaded (its control tool's refusals would read as
    "no SA left")."""
    # the pid read with a builtin (a $(cat ...) is a fork and an exec: ~12 CPU-ms in a UML guest)
    return (f"ipl_pid=; read -r ipl_pid 2>/dev/null < {pidfile}\n"
            f"kill -0 \"$ipl_pid\" 2>/dev/null || {{ echo 'no {what}'; exit 1; }}\n")


def route_batch(cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> list[str]:
    """Routes for tunnel mode as ``ip -batch`` lines: the remote protected subnets through ``dev``, from our
    protected address (the lab puts them in the guest's network batch: an exec of ``ip`` costs a UML guest
    ~20 CPU-ms)."""
    if cfg.mode != "tunnel":
        return []
    via = f" via {host.gateway4}" if host.gateway4 else f" dev {dev}"
    lines = [f"route add {net}{via} src {host.protected_addr}" for net in cfg.remote_ts if net.version == 4]
    for local, remote in cfg.extra_children:  # each additional Child SA: its own address on lo, its route
        addr = next(local.hosts())
        lines += [f"addr add {addr}/32 dev lo", f"route add {remote}{via} src {addr}"]
    return lines


class Reload(NamedTuple):
    """How a driver moves its running daemon from one cell to the next instead of restarting it: the optional
    ``reload(old, new, old_dir, new_dir, host)`` of a driver returns one, or None where only a restart is right.

    It goes with the driver's ``drop_script(cfg)``, shell lines that end every SA of a cell without a word to the
    other peer (which is dropped or restarted itself) and fail unless the daemon then holds none: the lab runs
    them once the cell's captures have stopped
    (``Lab.end_cell``) and reloads only a daemon whose drop succeeded.  The guest is then reset around the daemon
    (``uml.keep_daemon_reset``: the process in ``pidfile`` and the ``/run`` files matching ``keep`` stay), and
    ``load`` runs where ``start_script`` would: it adds the new cell's routes and gives the daemon its log file and
    configuration."""

    pidfile: str
    keep: str
    load: str


# A kernel peer's SAs (keys and statistics) and its xfrm statistics in one exec: ``Lab`` reads the keys and the
# counters of a cell's end from the same output.  The statistics file is copied with builtins (POSIX: a
# container's sh is dash), no cat
KERNEL_SNAPSHOT = ("ip -s xfrm state; echo '=== xfrm_stat'\n"
                   "while IFS= read -r ipl_l; do printf '%s\\n' \"$ipl_l\"; done < /proc/net/xfrm_stat\n")


def split_snapshot(out: str) -> tuple[str, str]:
    """KERNEL_SNAPSHOT's output as (``ip -s xfrm state``'s, ``/proc/net/xfrm_stat``'s)."""
    states, _, stat = out.partition("=== xfrm_stat\n")
    return states, stat


def kernel_counters(host: Any, snapshot: str | None = None) -> dict[str, Any]:
    """A kernel IPsec peer's own counters, read in its guest: every SA's ``ip -s xfrm state`` statistics
    (replay-window, replay, failed, the anti-replay context's seq/oseq, bytes and packets) and the whole
    of ``/proc/net/xfrm_stat`` (XfrmInStateSeqError, XfrmInNoPols, XfrmInTmplMismatch, ...); from ``snapshot``
    (KERNEL_SNAPSHOT's output the lab already read) when given, else from a KERNEL_SNAPSHOT run now."""
    if snapshot is None:
        snapshot = host.exec(KERNEL_SNAPSHOT, check=False, timeout=15)[1]
    states, stat = split_snapshot(snapshot)
    return {
        "source": "kernel",
        "sas": [{"spi": f"0x{s.spi:08x}", "src": s.src, "dst": s.dst, "proto": s.proto, "mode": s.mode,
                 "replay_window": s.replay_window, "esn": s.esn, **s.counters} for s in parse_xfrm_state(states)],
        "xfrm_stat": parse_xfrm_stat(stat),
    }


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file that holds secrets (a PSK, a private key) readable by its owner only, from the first byte:
    created 0600 before anything is written, and made 0600 if it existed (iked refuses a readable config)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


class PeerDriver(Protocol):
    """The adapter contract: what the lab needs from an IKEv2 implementation (see docs/architecture.md).

    ``impl`` names it (``--pair``); ``image`` is its folder under ``containers/`` (None: no image);
    ``placement`` says where it runs: ``kernel`` (it needs kernel ESP/AH: a UML guest, or UML in a
    container), ``container`` (userspace IPsec: a container on the host kernel, any runtime) or
    ``process`` (a process in the side's namespace).  ``check_supported`` raises ConfigError naming
    what it cannot do (the cell is then UNSUPPORTED); an optional ``check_pair(cfg, topology, peer)``
    does the same for what it cannot do with one particular peer implementation; ``start_script``
    gives the shell lines that start the daemon (``dev`` is its transit interface) and load the connection;
    optional ``drop_script(cfg)`` and ``reload(old, new, old_dir, new_dir, host)`` (a :class:`Reload`) let the
    running daemon take the next cell's configuration where it leaves the cell as a fresh start would (None:
    the guest is reset and the daemon restarted); ``initiate``
    raises LabError when the SA does not come up; ``ike_keys`` returns the IKE keys it logged
    (or [] when it cannot: say so in its docstring).
    """

    impl: str
    image: str | None
    placement: str
    gives_ike_keys: bool  # whether ike_keys() can return the IKE SA keys (Wireshark's IKE check needs one side's)
    # why this implementation cannot be the victim of an injected probe (replay, TFC, access control): the
    # verdict needs its own drop counters; "" when counters() gives them
    probe_refusal: str
    daemon: str | None  # the process a "kill" step ends in its guest (None: the host is the process itself)
    actions: frozenset[str]  # lifecycle steps it can be driven through (LIFECYCLE_ACTIONS)

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None: ...

    def check_topology(self, kind: str) -> None: ...

    def write_config(self, cfg: PeerConfig, directory: Path) -> None: ...

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str: ...

    def revive_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        """Shell lines that start the daemon again in its guest after a Kill (action "revive"): what a crash
        left (pid file, control socket) removed, then as ``start_script`` with the cell's configuration, its log
        appended to (the keys it logged before the kill stay in the run directory)."""

    def initiate(self, host: Any, cfg: PeerConfig, timeout: float) -> str: ...

    def initiate_refused(self, host: Any, cfg: PeerConfig, timeout: float) -> str:
        """``initiate`` for an SA the other side is to refuse: LabError as soon as the daemon's own record
        (log, event) shows the refusal notify arrived, even one it rightly does not act on (unauthenticated,
        in IKE_SA_INIT: RFC 7296 2.21.1); the lab never makes the daemon act on it.  Returns as ``initiate``
        if the SA came up."""

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]: ...

    def rekey(self, host: Any, cfg: PeerConfig, what: str, timeout: float) -> str:
        """Rekey the first Child SA (``what="child"``) or the IKE SA (``"ike"``) now (action "rekey")."""

    def initiate_child(self, host: Any, cfg: PeerConfig, name: str, timeout: float) -> str:
        """Start the additional Child SA ``name`` under the IKE SA already up (action "child")."""

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        """As the responder, return once the Child SA is installed (some answer IKE_AUTH first)."""

    def counters(self, host: Any, snapshot: str | None = None) -> dict[str, Any]:
        """The peer's own counters (its SAs' replay/integrity drops, policy drops), JSON-ready; read
        while it runs (the lab saves them in the run directory before teardown).  A kernel peer's come from
        ``snapshot`` when the lab gives one (the output of KERNEL_SNAPSHOT it ran at the cell's end for the
        keys as well), else from a KERNEL_SNAPSHOT of its own; others ignore it."""

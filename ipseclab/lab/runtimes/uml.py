"""The ``uml`` runtime: a peer image booted under User-Mode Linux, with its own kernel ESP/AH stack.

The guest's root is the image directory (hostfs, shared read-write, so nothing per-peer is
written there); its per-peer state lives in a host directory of the run, mounted on ``/ipl``:
``init.sh`` (written by the host), logs, and a command spool.  The guest runs a tiny agent
loop that executes ``/ipl/cmd/N.sh`` and leaves ``N.out`` and ``N.rc`` beside it: the host
runs commands in the guest without a console or a management network.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import LabError
from ..images import Image
from ..proc import in_netns, spawn, stop, tail
from ..topology import HostAddressing

# Between two cells on a booted guest (``UmlHost.reset``): every process but the agent ends (the daemon,
# ``ip xfrm monitor``, a listener), the kernel forgets the cell's SAs, policies, routes, rules, addresses,
# neighbours and qdisc, and /run and /tmp are emptied; network_script then sets the addresses up again
# (shell builtins only in the loops: a fork costs milliseconds under UML; a kernel thread or a zombie has no exe)
RESET = """for p in /proc/[0-9]*; do p=${p#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] || kill -9 "$p" 2>/dev/null; done
i=0; while [ $i -lt 100 ]; do n=0; for p in /proc/[0-9]*; do p=${p#/proc/}
  [ "$p" = 1 ] || [ "$p" = $$ ] || { [ -e /proc/$p/exe ] && n=1 && kill -9 "$p" 2>/dev/null; }; done
  [ $n = 0 ] && break; sleep 0.02; i=$((i+1)); done
ip xfrm state flush; ip xfrm policy flush
tc qdisc del dev {dev} root 2>/dev/null
ip rule show | while read p rest; do p=${p%:}; case $p in 0|32766|32767) ;; *) ip rule del pref "$p";; esac; done
ip route flush table 220 2>/dev/null; ip -6 route flush table 220 2>/dev/null
ip addr flush dev {dev} scope global; ip addr flush dev lo scope global; ip -4 route flush table main
ip neigh flush all
rm -rf /run/* /tmp/* /var/tmp/*
echo '=== xfrm_stat'; cat /proc/net/xfrm_stat
"""



def keep_daemon_reset(pidfile: str, keep: str, dev: str = "vec0") -> str:
    """RESET for a guest whose daemon stays up to be reloaded (``UmlHost.reset`` with ``clean``): the process whose
    pid ``pidfile`` holds is spared by the kill loop and the files matching the shell pattern ``keep`` (its pid file,
    its control socket) by the cleaning of /run; everything else is as RESET does it.  The daemon must hold no SA by
    then (the driver's ``Reload.drop``), so flushing the kernel's SAs and policies takes nothing from it."""
    kill, rest = RESET.split("ip xfrm state flush", 1)
    keep_pid = (f'd=$(cat {pidfile} 2>/dev/null); [ -n "$d" ] && [ -e /proc/$d/exe ] '
                '|| { echo "no daemon"; exit 1; }\n')
    kill = kill.replace('[ "$p" = $$ ] ||', '[ "$p" = $$ ] || [ "$p" = "$d" ] ||')
    rest = rest.replace("rm -rf /run/* /tmp/* /var/tmp/*",
                        f'set --; for f in /run/* /tmp/* /var/tmp/*; do case $f in {keep}) ;; *) [ -e "$f" ] && '
                        'set -- "$@" "$f";; esac; done; [ $# = 0 ] || rm -rf "$@"')
    return (keep_pid + kill + "ip xfrm state flush" + rest).replace("{dev}", dev)


AGENT = """
touch /ipl/ready
while :; do
  for f in /ipl/cmd/*.sh; do
    [ -e "$f" ] || continue
    n=${f%.sh}
    mv "$f" "$n.run"
    sh "$n.run" > "$n.out" 2>&1
    echo $? > "$n.rc.tmp"
    mv "$n.rc.tmp" "$n.rc"
  done
  sleep 0.05
done
"""


def network_script(host: HostAddressing, hostname: str, dev: str = "vec0", kernel: bool = True) -> str:
    """Shell lines that give the peer its modules (a kernel of its own), interfaces, addresses and routes.

    ``dev`` is the transit interface: a UML guest's ``vec0``, or the veth end itself for a
    daemon in a container on the host kernel (``kernel=False``: no modules to load, the
    container's hostname set by its engine).
    """
    lines = [
        f"hostname {hostname}",
        "modprobe -a xfrm_user xfrm_algo esp4 ah4 esp6 ah6 xfrm4_tunnel xfrm6_tunnel tunnel4 tunnel6 2>/dev/null || "
        "modprobe -a xfrm_user esp4 ah4",
    ] if kernel else []
    lines += [
        "ip link set lo up",
        f"ip link set {dev} up",
        f"ip addr add {host.transit4} dev {dev}",
        f"ip addr add {host.protected_addr}/32 dev lo",
    ]
    if host.transit6:
        lines.append(f"ip -6 addr add {host.transit6} dev {dev} nodad")
    if host.gateway4:
        lines.append(f"ip route add default via {host.gateway4}")
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class UmlHost:
    """One UML guest in a network namespace, attached to ``ifname`` there as its ``vec0``."""

    name: str
    umid: str
    image: Image
    ns: str
    ifname: str
    dir: Path
    mem: str = "256M"
    proc: subprocess.Popen[bytes] | None = None
    booted_at: float = 0.0
    _seq: int = field(default=0)
    console: Path | None = None  # where the kernel's console goes (the directory of the cell that booted it)

    @property
    def console_log(self) -> Path:
        return self.console or self.dir / "console.log"

    def kernel_command(self, root: Path, ipl_dir: Path) -> list[str]:
        """The UML command line: the guest's root and the peer directory as the kernel sees them."""
        if self.image.kernel is None:
            raise LabError(f"the {self.image.impl} image of {self.name} was made without a UML kernel")
        return [str(self.image.kernel.binary), f"umid={self.umid}", f"mem={self.mem}", "root=/dev/root",
                "rootfstype=hostfs", f"rootflags={root}", "rw", "init=/sbin/ipseclab-init", "con=null",
                "con0=null,fd:1", f"vec0:transport=raw,ifname={self.ifname},depth=128,gro=0", f"ipl_dir={ipl_dir}"]

    def prepare(self, init_script: str) -> None:
        """Write the guest's init script into a clean peer directory (stale results removed)."""
        # a reused run directory must not hand old command results to this guest's commands
        shutil.rmtree(self.dir / "cmd", ignore_errors=True)
        (self.dir / "cmd").mkdir(parents=True, exist_ok=True)
        for stale in ("ready", "init.log"):
            (self.dir / stale).unlink(missing_ok=True)
        # the kernel starts init with no PATH; programs that exec others (timeout, ipsec) need one
        path = "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        (self.dir / "init.sh").write_text(path + init_script + AGENT)

    def boot(self, init_script: str) -> None:
        """Write the guest's init script and start the kernel in the side's namespace (see wait_ready)."""
        self.prepare(init_script)
        self.booted_at = time.monotonic()
        self.console = self.dir / "console.log"
        self.proc = spawn(in_netns(self.ns, self.kernel_command(self.image.path, self.dir)), self.console)

    def reset(self, new_dir: Path, script: str, dev: str = "vec0", timeout: float = 60,
              clean: str | None = None) -> str:
        """Make the running guest as a fresh boot would leave it, for the next cell (see RESET), with
        ``new_dir`` as its ``/ipl``; then run ``script`` (network and daemon start) there, its output in
        ``init.log`` as at boot.  Returns ``/proc/net/xfrm_stat`` as the reset left it (the kernel's counters
        run from boot: the cell's are what it adds); LabError if the script failed.

        ``clean`` replaces RESET (keep_daemon_reset: a daemon that is reloaded, not restarted).
        The spool moves with ``/ipl``: the command is read from the old directory and its status is
        written into the new one (its output stays in the old directory).
        """
        old = self.dir
        self.dir = new_dir
        self.prepare(script)
        (new_dir / "init.sh").write_text((new_dir / "init.sh").read_text().removesuffix(AGENT))
        self._seq += 1
        base = old / "cmd" / f"{self._seq:05d}"
        tmp = base.with_suffix(".tmp")
        tmp.write_text((RESET.replace("{dev}", dev) if clean is None else clean)
                       + f"umount -l /ipl; mount -t hostfs none /ipl -o {shlex.quote(str(new_dir))}\n"
                       + "exec > /ipl/init.log 2>&1\n. /ipl/init.sh\ntouch /ipl/ready\n")
        tmp.rename(base.with_suffix(".sh"))
        rc_file = new_dir / "cmd" / f"{self._seq:05d}.rc"
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            if time.monotonic() > deadline or not self.alive:
                what = "died" if not self.alive else f"was not reset within {timeout:.0f} s"
                raise LabError(f"UML guest {self.name} {what}", output=tail(new_dir / "init.log"),
                               hint=f"see {new_dir}/init.log")
            time.sleep(0.02)
        if rc_file.read_text().strip() != "0" or not (new_dir / "ready").exists():
            raise LabError(f"UML guest {self.name}: starting the next cell failed", output=tail(new_dir / "init.log"),
                           hint=f"see {new_dir}/init.log")
        return base.with_suffix(".out").read_text(errors="replace").partition("=== xfrm_stat\n")[2]

    def exit_status(self) -> int | None:
        """None while the guest runs (or before boot), else how its kernel process ended."""
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = 60) -> float:
        """Block until the guest's init signalled ready; returns the seconds since boot() started it."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if (self.dir / "ready").exists():
                return time.monotonic() - self.booted_at
            if (status := self.exit_status()) is not None:
                raise LabError(f"UML guest {self.name} exited during boot (status {status})",
                               output=tail(self.dir / "init.log") or tail(self.console_log),
                               hint=f"see {self.dir}/init.log and console.log")
            time.sleep(0.05)
        raise LabError(f"UML guest {self.name} not ready after {timeout:.0f} s",
                       output=tail(self.dir / "init.log") or tail(self.console_log),
                       hint=f"see {self.dir}/init.log")

    @property
    def alive(self) -> bool:
        return self.booted_at > 0 and self.exit_status() is None

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        """Run shell lines in the guest; returns (exit status, output).  LabError on timeout or failure."""
        if not self.alive:
            raise LabError(f"UML guest {self.name} is not running", output=tail(self.dir / "init.log"))
        base = self.submit(script)
        rc, out = self.outcome(base, timeout, script)
        if check and rc != 0:
            raise LabError(f"command in UML guest {self.name} failed with status {rc}", command=[script], output=out)
        return rc, out

    def submit(self, script: str) -> Path:
        """Hand shell lines to the agent and return at once: the command's spool path, for ``outcome``.  The agent
        runs commands one after another, so whatever is submitted later starts when this one has ended."""
        self._seq += 1
        base = self.dir / "cmd" / f"{self._seq:05d}"
        tmp = base.with_suffix(".tmp")
        tmp.write_text(script + "\n")
        tmp.rename(base.with_suffix(".sh"))
        return base

    def outcome(self, base: Path, timeout: float = 30, script: str = "") -> tuple[int, str]:
        """(exit status, output) of the command ``submit`` gave ``base``, once it ended; LabError if it did not
        within ``timeout`` or the guest died."""
        rc_file = base.with_suffix(".rc")
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            if time.monotonic() > deadline or not self.alive:
                what = "died" if not self.alive else f"did not finish within {timeout:.0f} s"
                raise LabError(f"command in UML guest {self.name} {what}", command=[script or base.name],
                               output=tail(base.with_suffix(".out")), hint=f"see {self.dir}/init.log")
            time.sleep(0.02)
        return int(rc_file.read_text().strip() or "1"), base.with_suffix(".out").read_text(errors="replace")

    def halt(self, timeout: float = 10) -> None:
        """Halt the guest cleanly if it answers, else stop its process group; never raises for a dead guest."""
        if self.booted_at == 0:
            return
        self.ask_to_halt(timeout)
        if self.proc is not None:
            stop(self.proc, grace=3)

    def ask_to_halt(self, timeout: float) -> None:
        """Have the guest halt itself through the spool, and wait up to ``timeout`` for its kernel to end."""
        if self.alive:
            self._seq += 1
            try:
                path = self.dir / "cmd" / f"{self._seq:05d}.sh"
                path.write_text("busybox halt -f\n")
            except OSError:
                pass
            deadline = time.monotonic() + timeout
            while self.alive and time.monotonic() < deadline:
                time.sleep(0.05)

"""The ``uml`` runtime: a peer image booted under User-Mode Linux, with its own kernel ESP/AH stack.

The guest's root is the image directory (hostfs, shared read-write, so nothing per-peer is
written there); its per-peer state lives in a host directory of the run, mounted on ``/ipl``:
``init.sh`` (written by the host), logs, and a command spool.  ``init.sh`` runs under bash (the
image's init starts it with ``/bin/sh``; its first lines exec bash), sets the peer up and ends in
the agent (``AGENT``): a loop that runs ``/ipl/cmd/N.sh`` (N counted by the agent and the host
alike: 1, 2, ...) and leaves ``N.out`` and ``N.rc`` beside it, so the host runs commands in the
guest without a console or a management network.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ...errors import LabError
from ..images import Image
from ..proc import in_netns, spawn, stop, tail
from ..topology import HostAddressing
from .uml_kernel import USERSPACE

T = TypeVar("T")

# Fork and exec cost milliseconds under UML (measured on an idle AMD EPYC: a fork ~10 ms, fork+exec of
# /bin/true ~20 ms, an `ip` command ~45 ms), so the guest's side of the spool runs on shell builtins.

# Where the guest waits: a FIFO held open read-write, so `read -t` on it waits without a process and never
# sees end of file (nobody writes to it).  A dot name: RESET's `rm -rf /run/*` leaves it.
IDLE_FIFO = "/run/.ipl-agent"

# The first lines of every init.sh: a PATH (the kernel starts init with none), bash in place of the
# image's /bin/sh (dash), echo as dash's (backslash escapes), so a script runs the same at boot and
# through the spool; the FIFO, and `ipl_sleep SECONDS` for start scripts and commands: a wait on it, no
# process (sleep(1) where no FIFO could be made).
INIT_HEAD = f"""export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[ -n "$BASH_VERSION" ] || exec bash /ipl/init.sh
shopt -s xpg_echo
[ -p {IDLE_FIFO} ] || mkfifo -m 600 {IDLE_FIFO} 2>/dev/null
ipl_sleep() {{ {{ read -t "$1" _ <> {IDLE_FIFO} || [ -p {IDLE_FIFO} ] || sleep "$1"; }} 2>/dev/null; }}
"""

# The guest's half of the spool, the last lines of init.sh.  Command N is /ipl/cmd/N.sh (five digits),
# which the host renames into place whole; the agent sources it in a subshell (a fork, no exec: `exit`
# in a command ends that subshell only, and the agent's descriptors are closed there), its output
# in N.out, then writes its status into N.rc with a builtin, in one write ending in a newline (the host
# reads the status once that newline is there).  A name is resolved anew at each use, so a command that
# remounts /ipl (UmlHost.reset) has its status written into the new spool, where the next command is.
#
# Between commands the agent waits to be woken: a guest booted by UmlHost has its /dev/tty1 read from a pipe
# the host writes a newline into after each command it hands over (``con1``, ``ipl_wake`` set), so the
# agent sleeps in a `read` until then (0.5 s at most, for a wake-up that never came).  It used to look for the
# next file every 10 ms for 2 s after a command, then every 50 ms: each look costs a guest about half a
# millisecond of CPU under UML, and as a cell's commands come less than 2 s apart its two guests looked 200
# times a second the whole cell (13-25 % of a core on an Intel Xeon, 2026-12-01).  That is still how a guest
# without the console waits (a container's): on the FIFO, or sleep(1) where no FIFO could be made.
#
# IPSECLAB_UML_WAKE=0: guests booted without the wake-up console, their agents polling (for a before/after,
# tests/bench/bench_spool.py, or a UML kernel without fd channels)
WAKE_ENV = "IPSECLAB_UML_WAKE"

AGENT = f"""ipl_idle() {{ sleep 0.05; }}
if [ -p {IDLE_FIFO} ] && exec 9<>{IDLE_FIFO}; then ipl_idle() {{ read -t "$1" -u 9 _; }}; fi
ipl_wait() {{ ipl_idle $ipl_t; [ $((ipl_i+=1)) = 200 ] && ipl_t=0.05; }}
if [ -n "$ipl_wake" ] && exec 8< /dev/tty1; then ipl_wait() {{ read -t 0.5 -u 8 _ || ipl_idle 0.01; }}; fi
: > /ipl/ready
ipl_n=1
while :; do
  printf -v ipl_f /ipl/cmd/%05d "$ipl_n"
  ipl_i=0; ipl_t=0.01
  until [ -e "$ipl_f.sh" ]; do ipl_wait; done
  ( . "$ipl_f.sh" ) 8<&- 9>&- > "$ipl_f.out" 2>&1
  echo $? > "$ipl_f.rc"
  ipl_n=$((ipl_n+1))
done
"""

# Between two cells on a booted guest (``UmlHost.reset``, run by the agent): every process but the agent
# ends (the daemon, ``ip xfrm monitor``, a listener), the kernel forgets the cell's SAs, policies, routes,
# rules, addresses, neighbours and qdisc, and /run and /tmp are emptied; the next cell's network
# batch sets the addresses up again.  Builtins in the loops (a kernel thread or a zombie has no exe; the command's own
# process is $BASHPID, the agent $$ or 1); the `ip` commands in two batches, one per family where the
# family matters (an unqualified `rule` or `route ... table` is IPv4): every rule but `local` goes, and the
# boot's `main` and `default` rules come back (IPv6 has no `default` rule); the first batch goes on with the next
# cell's network (``{batch}``: network_batch's lines, UmlHost.reset fills them in), so that neither network_script
# nor a route costs an exec of its own.  A batch goes on past a
# failing line (-force).  `tc` runs only when the transit interface's root qdisc is not of the kernel's
# default kind (a cell's netem).  The start script runs after it in the same shell: its variables go.
RESET = """for p in /proc/[0-9]*; do p=${p#/proc/}
  [ "$p" = 1 ] || [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] || kill -9 "$p" 2>/dev/null; done
i=0; while [ $i -lt 100 ]; do n=0; for p in /proc/[0-9]*; do p=${p#/proc/}
  [ "$p" = 1 ] || [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] || { [ -e /proc/$p/exe ] && n=1 && kill -9 "$p" 2>/dev/null; }
  done; [ $n = 0 ] && break; ipl_sleep 0.02; i=$((i+1)); done
link=$(ip -force -batch - <<'EOF'
xfrm state flush
xfrm policy flush
rule flush
rule add pref 32766 table main
rule add pref 32767 table default
route flush table 220
addr flush dev {dev} scope global
addr flush dev lo scope global
route flush table main
neigh flush all
{batch}link show dev {dev}
EOF
)
ip -6 -force -batch - <<'EOF'
rule flush
rule add pref 32766 table main
route flush table 220
EOF
read -r qdisc < /proc/sys/net/core/default_qdisc
case $link in *" qdisc $qdisc "*) ;; *) tc qdisc del dev {dev} root 2>/dev/null;; esac
rm -rf /run/* /tmp/* /var/tmp/*
echo '=== xfrm_stat'; IFS= read -r -d '' stat < /proc/net/xfrm_stat; printf '%s' "$stat"
unset p i n link qdisc stat
"""


def keep_daemon_reset(pidfile: str, keep: str, dev: str = "vec0") -> str:
    """RESET for a guest whose daemon stays up to be reloaded (``UmlHost.reset`` with ``clean``): the process whose
    pid ``pidfile`` holds is spared by the kill loops and the files matching the shell pattern ``keep`` (its pid file,
    its control socket) by the cleaning of /run; everything else is as RESET does it.  The daemon must hold no SA by
    then (the driver's ``Reload.drop``), so flushing the kernel's SAs and policies takes nothing from it."""
    kill, rest = RESET.split("link=$(ip -force -batch", 1)
    keep_pid = (f'd=; read -r d 2>/dev/null < {pidfile}; [ -n "$d" ] && [ -e /proc/$d/exe ] '
                '|| { echo "no daemon"; exit 1; }\n')
    kill = kill.replace('[ "$p" = "$BASHPID" ] ||', '[ "$p" = "$BASHPID" ] || [ "$p" = "$d" ] ||')
    rest = rest.replace("rm -rf /run/* /tmp/* /var/tmp/*",
                        f'set --; for f in /run/* /tmp/* /var/tmp/*; do case $f in {keep}) ;; *) [ -e "$f" ] && '
                        'set -- "$@" "$f";; esac; done; [ $# = 0 ] || rm -rf "$@"')
    return (keep_pid + kill + "link=$(ip -force -batch" + rest + "unset d\n").replace("{dev}", dev)

# How UmlHost.reset moves /ipl to the next cell's directory (``{dir}``, quoted): mounted over the cell before's,
# which stays beneath it (a daemon kept for a reload may hold a file open there) until the guest halts.  One exec
# instead of an `umount -l` and a `mount` (~20 CPU-ms each in a guest); a booted guest's few dozen cells leave as
# many mounts, a few hundred bytes of kernel memory each.
REMOUNT = "mount -t hostfs none /ipl -o {dir}\n"

# The host's half: the first look at a result file after a short sleep, the sleeps doubling up to POLL_MAX
# (a look is a stat); whether the guest still runs every ALIVE_EVERY seconds (a container's is an API call)
POLL_FIRST, POLL_MAX, ALIVE_EVERY = 0.001, 0.005, 0.25


def network_batch(host: HostAddressing, dev: str = "vec0", routes: Sequence[str] = ()) -> list[str]:
    """The ``ip -batch`` lines that give the peer its interfaces, addresses and ``routes`` (more batch lines: a
    case's tunnel routes, ``contract.route_batch``)."""
    lines = [
        "link set lo up",
        f"link set {dev} up",
        f"addr add {host.transit4} dev {dev}",
        f"addr add {host.protected_addr}/32 dev lo",
    ]
    if host.transit6:
        lines.append(f"addr add {host.transit6} dev {dev} nodad")
    if host.gateway4:
        lines.append(f"route add default via {host.gateway4}")
    return lines + list(routes)


def network_script(host: HostAddressing, hostname: str, dev: str = "vec0", kernel: bool = True,
                   routes: Sequence[str] = ()) -> str:
    """Shell lines that give the peer its modules (a kernel of its own), interfaces, addresses and routes.

    ``dev`` is the transit interface: a UML guest's ``vec0``, or the veth end itself for a
    daemon in a container on the host kernel (``kernel=False``: no modules to load, the
    container's hostname set by its engine).  The ``ip`` lines (network_batch, with ``routes``) are one batch
    (a fork and exec cost milliseconds under UML) that goes on past a failing line, as separate commands would.
    """
    lines = [
        f"echo {hostname} > /proc/sys/kernel/hostname",
        "modprobe -a xfrm_user xfrm_algo esp4 ah4 esp6 ah6 xfrm4_tunnel xfrm6_tunnel tunnel4 tunnel6 2>/dev/null || "
        "modprobe -a xfrm_user esp4 ah4",
        # every crypto module (and IPComp's), in the background, then no module loaded on demand: with the
        # modules in, each SA with an algorithm new to the guest still has the crypto API ask modprobe for every
        # template name it looks up before it builds the instance ("crypto-rfc3686(ctr(aes))" and its "-all",
        # 190 such runs of modprobe in one pair's 40 cells, each failing, each a fork and exec under UML): an
        # SA with rfc3686(ctr(aes)) or cbc(camellia) took 0.6-1.0 s to add on each side.  With the kernel's
        # modprobe path empty a lookup fails at once (kmod: -ENOENT); measured on one pair's 40 cells,
        # initiate 0.90 -> 0.40 CPU-s a cell.  The path is emptied only when the loading is done (until then
        # the kernel may still load on demand); a module outside these and the xfrm ones above is loaded by an
        # explicit modprobe (as the Delay step does sch_netem).  Builtins only to list them (no fork)
        "read -r ipl_rel < /proc/sys/kernel/osrelease",
        'ipl_mods=(/lib/modules/"$ipl_rel"/kernel/crypto/*.ko* /lib/modules/"$ipl_rel"/kernel/lib/crypto/*.ko*)',
        'ipl_mods=("${ipl_mods[@]##*/}"); ipl_mods=("${ipl_mods[@]%%.ko*}" xfrm_ipcomp ipcomp ipcomp6)',
        '[ -e /lib/modules/"$ipl_rel"/kernel/crypto ] && '
        '{ modprobe -a "${ipl_mods[@]}" > /dev/null 2>&1; echo > /proc/sys/kernel/modprobe; } &',
        "unset ipl_rel ipl_mods",
    ] if kernel else []
    lines += ["ip -force -batch - <<'EOF'", *network_batch(host, dev, routes), "EOF"]
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
    _wake: int | None = field(default=None)  # the write end of the pipe the guest's /dev/tty1 reads (see AGENT)

    @property
    def console_log(self) -> Path:
        return self.console or self.dir / "console.log"

    def kernel_command(self, root: Path, ipl_dir: Path, wake_fd: int | None = None) -> list[str]:
        """The UML command line: the guest's root and the peer directory as the kernel sees them; with ``wake_fd``
        (a descriptor the kernel inherits) the guest's /dev/tty1 reads from it (the agent's wake-ups)."""
        if self.image.kernel is None:
            raise LabError(f"the {self.image.impl} image of {self.name} was made without a UML kernel")
        return [str(self.image.kernel.binary), f"umid={self.umid}", f"mem={self.mem}", "root=/dev/root",
                "rootfstype=hostfs", f"rootflags={root}", "rw", "init=/sbin/ipseclab-init", "con=null", USERSPACE,
                "con0=null,fd:1", *([f"con1=fd:{wake_fd},null"] if wake_fd is not None else []),
                f"vec0:transport=raw,ifname={self.ifname},depth=128,gro=0", f"ipl_dir={ipl_dir}"]

    def prepare(self, init_script: str, wake: bool = False) -> None:
        """Write the guest's init script into a clean peer directory (stale results removed); ``wake``: its agent
        waits on /dev/tty1 for the host's wake-ups (see AGENT)."""
        # a reused run directory must not hand old command results to this guest's commands
        shutil.rmtree(self.dir / "cmd", ignore_errors=True)
        (self.dir / "cmd").mkdir(parents=True, exist_ok=True)
        for stale in ("ready", "init.log"):
            (self.dir / stale).unlink(missing_ok=True)
        (self.dir / "init.sh").write_text(INIT_HEAD + init_script + ("ipl_wake=1\n" if wake else "") + AGENT)

    def boot(self, init_script: str) -> None:
        """Write the guest's init script and start the kernel in the side's namespace (see wait_ready), with a
        pipe to its /dev/tty1 that :meth:`_submit` wakes the agent through."""
        self._close_wake()
        read_end: int | None = None
        if os.environ.get(WAKE_ENV, "1") != "0":  # else the agent polls its spool, as a container's guest does
            read_end, self._wake = os.pipe()
            os.set_blocking(self._wake, False)  # a wake-up never holds the host up (a full pipe has one pending)
        self.prepare(init_script, wake=read_end is not None)
        self._seq = 0  # a new agent counts its commands from 1
        self.booted_at = time.monotonic()
        self.console = self.dir / "console.log"
        try:
            self.proc = spawn(in_netns(self.ns, self.kernel_command(self.image.path, self.dir, read_end)),
                              self.console, pass_fds=() if read_end is None else (read_end,))
        finally:
            if read_end is not None:
                os.close(read_end)

    def _close_wake(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.close(self._wake)
            self._wake = None

    def reset(self, new_dir: Path, script: str, dev: str = "vec0", timeout: float = 60,
              clean: str | None = None, batch: Sequence[str] = ()) -> str:
        """Make the running guest as a fresh boot would leave it, for the next cell (see RESET), its network
        set up again by ``batch`` (network_batch's lines), with ``new_dir`` as its ``/ipl``; then run ``script``
        (the daemon's start or reload) there, its output in ``init.log`` as at boot.  Returns
        ``/proc/net/xfrm_stat`` as the reset left it (the kernel's counters run from boot: the cell's are what it
        adds); LabError if the script failed.

        The spool moves with ``/ipl``: the command is read from the old directory and its status is
        written into the new one (its output stays in the old directory, with what the batch printed).
        ``clean`` replaces RESET (a daemon kept for a reload: ``keep_daemon_reset``).
        """
        old = self.dir
        self.dir = new_dir
        self.prepare(script)
        (new_dir / "init.sh").write_text((new_dir / "init.sh").read_text().removesuffix(AGENT))
        lines = "".join(f"{line}\n" for line in batch)
        base = self._submit(old, (RESET.replace("{dev}", dev) if clean is None else clean).replace("{batch}", lines)
                            + REMOUNT.format(dir=shlex.quote(str(new_dir)))
                            + "exec > /ipl/init.log 2>&1\n. /ipl/init.sh\n: > /ipl/ready\n")
        # a ``clean`` that stops before REMOUNT (its daemon gone) writes its status into the old spool
        moved, stayed = new_dir / "cmd" / f"{base.name}.rc", old / "cmd" / f"{base.name}.rc"

        def ended() -> bool | None:
            return True if _status(moved) is not None or _status(stayed) is not None else None

        if self._poll(ended, timeout) and _status(moved) is None:
            raise LabError(f"UML guest {self.name}: its reset stopped with status {_status(stayed)} before /ipl "
                           "moved", output=tail(base.with_suffix(".out")), hint=f"see {base.with_suffix('.out')}")
        status = _status(moved)
        if status is None:
            what = "died" if not self.alive else f"was not reset within {timeout:.0f} s"
            raise LabError(f"UML guest {self.name} {what}", output=tail(new_dir / "init.log"),
                           hint=f"see {new_dir}/init.log")
        if status != "0" or not (new_dir / "ready").exists():
            raise LabError(f"UML guest {self.name}: starting the next cell failed", output=tail(new_dir / "init.log"),
                           hint=f"see {new_dir}/init.log")
        return base.with_suffix(".out").read_text(errors="replace").partition("=== xfrm_stat\n")[2]

    def exit_status(self) -> int | None:
        """None while the guest runs (or before boot), else how its kernel process ended."""
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = 60) -> float:
        """Block until the guest's init signalled ready; returns the seconds since boot() started it."""
        if self._poll(lambda: (self.dir / "ready").exists() or None, timeout):
            return time.monotonic() - self.booted_at
        if (status := self.exit_status()) is not None:
            raise LabError(f"UML guest {self.name} exited during boot (status {status})",
                           output=tail(self.dir / "init.log") or tail(self.console_log),
                           hint=f"see {self.dir}/init.log and console.log")
        raise LabError(f"UML guest {self.name} not ready after {timeout:.0f} s",
                       output=tail(self.dir / "init.log") or tail(self.console_log),
                       hint=f"see {self.dir}/init.log")

    @property
    def alive(self) -> bool:
        return self.booted_at > 0 and self.exit_status() is None

    def _submit(self, spool: Path, script: str) -> Path:
        """Hand the agent its next command (whole, by a rename) in ``spool``; the path of its results but
        the suffix.  The count moves on only once the file is there: the agent waits for that number."""
        base = spool / "cmd" / f"{self._seq + 1:05d}"
        tmp = base.with_suffix(".tmp")
        tmp.write_text(script + "\n")
        tmp.rename(base.with_suffix(".sh"))
        self._seq += 1
        if self._wake is not None:  # after the rename: the agent that wakes finds the file
            with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or the guest is gone
                os.write(self._wake, b"\n")
        return base

    def _poll(self, probe: Callable[[], T | None], timeout: float) -> T | None:
        """What ``probe`` returns once it is not None, looked at after sleeps from POLL_FIRST doubling up to
        POLL_MAX; None once ``timeout`` passed or the guest is found dead (looked at every ALIVE_EVERY s)."""
        started = time.monotonic()
        pause, alive_at = POLL_FIRST, started + ALIVE_EVERY
        while (found := probe()) is None:
            now = time.monotonic()
            if now - started > timeout:
                return None
            if now >= alive_at:
                if not self.alive:
                    return probe()  # a result written just before the end still counts
                alive_at = now + ALIVE_EVERY
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX)
        return found

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        """Run shell lines in the guest; returns (exit status, output).  LabError on timeout or failure."""
        if not self.alive:
            raise LabError(f"UML guest {self.name} is not running", output=tail(self.dir / "init.log"))
        rc, out = self.outcome(self.submit(script), timeout, script)
        if check and rc != 0:
            raise LabError(f"command in UML guest {self.name} failed with status {rc}", command=[script], output=out)
        return rc, out

    def submit(self, script: str) -> Path:
        """Hand shell lines to the agent and return at once: the command's spool path, for ``outcome``.  The agent
        runs commands one after another, so whatever is submitted later starts when this one has ended."""
        return self._submit(self.dir, script)

    def outcome(self, base: Path, timeout: float = 30, script: str = "") -> tuple[int, str]:
        """(exit status, output) of the command ``submit`` gave ``base``, once it ended; LabError if it did not
        within ``timeout`` or the guest died."""
        status = self._poll(lambda: _status(base.with_suffix(".rc")), timeout)
        if status is None:
            what = "died" if not self.alive else f"did not finish within {timeout:.0f} s"
            raise LabError(f"command in UML guest {self.name} {what}", command=[script or base.name],
                           output=tail(base.with_suffix(".out")), hint=f"see {self.dir}/init.log")
        return int(status or "1"), base.with_suffix(".out").read_text(errors="replace")

    def halt(self, timeout: float = 10) -> None:
        """Halt the guest cleanly if it answers, else stop its process group; never raises for a dead guest."""
        if self.booted_at == 0:
            return
        self.ask_to_halt(timeout)
        if self.proc is not None:
            stop(self.proc, grace=3)
        self._close_wake()

    def ask_to_halt(self, timeout: float) -> None:
        """Have the guest halt itself through the spool, and wait up to ``timeout`` for its kernel to end."""
        if self.alive:
            with contextlib.suppress(OSError):
                self._submit(self.dir, "busybox halt -f")
            deadline = time.monotonic() + timeout
            while self.alive and time.monotonic() < deadline:
                time.sleep(0.02)


def _status(rc_file: Path) -> str | None:
    """A command's status once the agent wrote it whole (it ends in a newline), else None."""
    try:
        text = rc_file.read_text()
    except FileNotFoundError:
        return None
    return text.strip() if text.endswith("\n") else None

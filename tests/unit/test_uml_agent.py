"""The UML spool (runtimes/uml.py) with its guest half run by this machine's shells: ``init.sh`` as a guest's
init starts it (``sh``, which hands over to bash), in PID, network and mount namespaces of its own, with a
symlink where a guest has its ``/ipl`` mount (the host's half writes ``/ipl`` paths; ``LocalGuest`` points
them at the symlink) and ``UmlHost`` as the lab drives a guest.  RESET's processes and ``ip`` batches run for
real in those namespaces; only its emptying of /run and /tmp is left out (those are this machine's)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipseclab.errors import LabError
from ipseclab.lab.runtimes import uml
from ipseclab.lab.runtimes.uml import IDLE_FIFO, UmlHost

NAMESPACES = ["unshare", "--pid", "--fork", "--mount-proc", "--net"]
if os.geteuid() != 0:
    NAMESPACES[1:1] = ["--user", "--map-root-user"]
EMPTYING = "rm -rf /run/* /tmp/* /var/tmp/*\n"


@dataclass(slots=True)
class LocalGuest(UmlHost):
    """A ``UmlHost`` whose guest half is a local shell; ``root`` stands for the guest's ``/ipl``."""

    root: Path = Path()
    fifo: Path = Path()
    wake_fifo: Path | None = None  # stands for the guest's /dev/tty1 (the wake-up console) when set

    def start(self, init_script: str) -> None:
        if self.wake_fifo is not None:  # the host's end, as UmlHost.boot keeps it: never blocks
            os.mkfifo(self.wake_fifo)
            self._wake = os.open(self.wake_fifo, os.O_RDWR | os.O_NONBLOCK)
        self.prepare(init_script, wake=self.wake_fifo is not None)
        init = self.dir / "init.sh"
        init.write_text(self.local(init.read_text()))
        self.root.symlink_to(self.dir)
        log = (self.dir / "init.log").open("w")
        self.proc = subprocess.Popen([*NAMESPACES, "sh", str(self.root / "init.sh")], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.booted_at = time.monotonic()
        self.wait_ready(10)

    def local(self, script: str) -> str:
        script = script.replace(IDLE_FIFO, str(self.fifo)).replace("/ipl", str(self.root))
        return script.replace("/dev/tty1", str(self.wake_fifo)) if self.wake_fifo is not None else script

    def _submit(self, spool: Path, script: str) -> Path:
        return UmlHost._submit(self, spool, self.local(script))

    def agent_pid(self) -> int:
        """The agent's pid on this machine (the namespace's first process, under unshare)."""
        assert self.proc is not None
        return int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def stop(self) -> None:
        """End the guest: its init (the PID namespace's first process, whose end ends every process in the
        namespace), then unshare.  Killing only unshare left the agent polling its spool for good (seen
        2026-12-01: 28 agents from earlier unit runs, 10% of a CPU taken from the interop matrix)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone, or unshare has not forked yet
                os.kill(self.agent_pid(), signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
        self._close_wake()


@pytest.fixture
def guest(tmp_path):
    g = LocalGuest("left", "ipl-test-left", None, "none", "vec0", tmp_path / "cell1",  # type: ignore[arg-type]
                   root=tmp_path / "guest-root", fifo=tmp_path / "agent.fifo")
    yield g
    try:
        agent = g.agent_pid() if g.proc is not None and g.proc.poll() is None else None
    except (OSError, IndexError, ValueError):
        agent = None
    g.stop()
    deadline = time.monotonic() + 5
    while agent is not None and _running(agent) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert agent is None or not _running(agent), f"the guest's agent (pid {agent}) still runs after stop()"


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (one waits for the host's init to reap it: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1] != "Z"
    except OSError:
        return False


def test_commands_run_in_order_with_their_output_and_status(guest):
    guest.start("echo init ran\n")
    assert "init ran" in (guest.dir / "init.log").read_text()
    assert guest.exec("echo one; echo two >&2") == (0, "one\ntwo\n")
    assert guest.exec("exit 3", check=False) == (3, "")  # a command's exit ends that command only
    assert guest.exec("echo $BASH_VERSION")[1].strip(), "commands run under bash"
    assert guest.exec("echo 'a\\tb'")[1] == "a\tb\n", "echo interprets escapes as dash's (the image's sh) does"
    with pytest.raises(LabError, match="failed with status 4"):
        guest.exec("echo why; exit 4")
    assert sorted(p.name for p in (guest.dir / "cmd").iterdir()) == [
        f"{n:05d}.{ext}" for n in range(1, 6) for ext in ("out", "rc", "sh")]
    assert (guest.dir / "cmd" / "00005.rc").read_text() == "4\n"


def test_a_command_does_not_inherit_the_idle_fifo_and_may_use_any_name(guest):
    guest.start("")
    assert guest.exec("[ -e /proc/$BASHPID/fd/9 ] && echo leaked; ipl_n=99; ipl_f=x; echo ok") == (0, "ok\n")
    assert guest.exec("echo next") == (0, "next\n"), "a command's variables stay in its subshell"


def test_the_idle_agent_runs_no_process(guest):
    guest.start("")
    guest.exec("true")
    children = Path(f"/proc/{guest.agent_pid()}/task/{guest.agent_pid()}/children")
    seen = set()
    for _ in range(40):  # 0.4 s: 40 of the agent's 10 ms waits
        seen.update(children.read_text().split())
        time.sleep(0.01)
    assert not seen, f"the idle agent started processes {sorted(seen)}"
    assert Path(f"/proc/{guest.agent_pid()}/exe").resolve().name == "bash"


def _switches(pid: int) -> int:
    """How often ``pid`` has gone to sleep (voluntary context switches): once per wait of the agent."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


@pytest.mark.parametrize("woken", [False, True])
def test_the_agent_sleeps_until_woken_where_the_host_can_wake_it(tmp_path, woken):
    """With the wake-up console (a UML guest booted by UmlHost) the idle agent sleeps in one read until the host
    hands it a command (0.5 s at most); without it (a container's guest) it looks for the next command every
    10 ms for 2 s after one.  Commands run the same either way."""
    g = LocalGuest("left", "ipl-test-left", None, "none", "vec0", tmp_path / "cell1",  # type: ignore[arg-type]
                   root=tmp_path / "guest-root", fifo=tmp_path / "agent.fifo",
                   wake_fifo=tmp_path / "wake.fifo" if woken else None)
    try:
        g.start("")
        for n in range(5):
            assert g.exec(f"echo {n}") == (0, f"{n}\n")
        before = _switches(g.agent_pid())
        time.sleep(1.0)
        slept = _switches(g.agent_pid()) - before
        if woken:
            assert slept <= 4, f"the woken agent went to sleep {slept} times in 1 s: it polls"
            started = time.monotonic()
            assert g.exec("echo late") == (0, "late\n")
            assert time.monotonic() - started < 0.4, "the command waited for the agent's 0.5 s timeout"
        else:
            assert slept >= 50, f"the polling agent went to sleep only {slept} times in 1 s"
    finally:
        g.stop()


def test_ipl_sleep_waits_without_a_process_at_boot_and_in_commands(guest):
    guest.start("t=$EPOCHREALTIME; ipl_sleep 0.2; echo boot waited $(( ${EPOCHREALTIME/./} - ${t/./} ))\n")
    waited = int((guest.dir / "init.log").read_text().split("boot waited ")[1].split()[0])
    assert 190_000 <= waited < 2_000_000, waited  # microseconds
    _, out = guest.exec("t=$EPOCHREALTIME; ipl_sleep 0.2 & pid=$!; sleep 0.05; ls /proc/$pid/task/$pid/children; "
                        "cat /proc/$pid/task/$pid/children; wait $pid; echo rc=$? $(( ${EPOCHREALTIME/./} - ${t/./} ))")
    lines = out.split()
    assert lines[-2] == "rc=0" and 190_000 <= int(lines[-1]) < 2_000_000, out
    assert out.split("\n")[1].startswith("rc=0"), f"ipl_sleep started a process: {out!r}"


def test_a_command_past_its_timeout_keeps_the_spool_in_step(guest):
    guest.start("")
    with pytest.raises(LabError, match="did not finish within"):
        guest.exec("read -t 0.5 _ <> " + str(guest.fifo) + "; echo late", timeout=0.1)
    assert guest.exec("echo next") == (0, "next\n")
    assert (guest.dir / "cmd" / "00001.out").read_text() == "late\n"


def test_a_guest_that_dies_during_a_command_is_reported(guest):
    guest.start("")
    agent = guest.agent_pid()
    killer = threading.Timer(0.3, os.kill, (agent, signal.SIGKILL))  # the guest's end, as a kernel's would be
    killer.start()
    with pytest.raises(LabError, match="died"):
        guest.exec("read -t 5 _ <> " + str(guest.fifo), timeout=10)
    killer.join()
    with pytest.raises(LabError, match="is not running"):
        guest.exec("true")


def test_status_is_read_only_once_whole(tmp_path):
    rc = tmp_path / "1.rc"
    assert uml._status(rc) is None
    rc.write_text("")
    assert uml._status(rc) is None
    rc.write_text("1")
    assert uml._status(rc) is None, "a status without its newline is still being written"
    rc.write_text("17\n")
    assert uml._status(rc) == "17"


def _state(guest: LocalGuest) -> dict[str, str]:
    """What a reset must clear, as ``ip`` shows it."""
    cmds = {"rules": "ip rule; ip -6 rule", "routes": "ip route show table all type unicast; "
            "ip -6 route show table all type unicast | grep -v fe80", "addrs": "ip -o addr show scope global",
            "neigh": "ip neigh show nud all | grep -v NOARP", "qdisc": "tc qdisc show dev vec0 root",
            "procs": "for p in /proc/[0-9]*; do p=${p#/proc/}; "  # builtins: no process of its own but this command's
            "[ $p = 1 ] || [ $p = $BASHPID ] || [ ! -e /proc/$p/exe ] || echo $p; done"}
    return {k: guest.exec(v, check=False)[1] for k, v in cmds.items()}


def test_reset_clears_the_cell_and_moves_the_spool(guest, tmp_path, monkeypatch):
    if EMPTYING not in uml.RESET:
        raise AssertionError("RESET no longer empties /run and /tmp as this test expects: check what it runs")
    monkeypatch.setattr(uml, "RESET", uml.RESET.replace(EMPTYING, ": emptying /run and /tmp left out\n"))
    monkeypatch.setattr(uml, "REMOUNT", "ln -sfn {dir} /ipl\n")
    net = ("ip link set vec0 up; ip link set lo up\n"
           "ip -batch - <<'EOF'\naddr add 198.51.100.10/24 dev vec0\naddr add 203.0.113.1/32 dev lo\n"
           "addr add 2001:db8:1::10/64 dev vec0 nodad\nEOF\n")
    # a guest's vec0 is there from boot, its other end outside
    guest.start("ip link add vec0 type veth peer name vec1; ip link set vec1 up\n" + net)
    boot = _state(guest)
    # what a cell leaves: rules and routes in table 220 (both families), neighbours, a qdisc, processes
    guest.exec("ip rule add pref 220 table 220; ip -6 rule add pref 220 table 220; ip rule add pref 100 from 192.0.2.1 "
               "table 7\nip route add 192.0.2.0/24 dev vec0 table 220; ip -6 route add 2001:db8:9::/64 dev vec0 table "
               "220; ip route add 192.0.2.128/25 dev vec0\nip neigh add 198.51.100.20 lladdr 02:00:00:00:00:01 dev vec0"
               " nud stale; ip -6 neigh add 2001:db8:1::20 lladdr 02:00:00:00:00:01 dev vec0 nud reachable\n"
               "tc qdisc add dev vec0 root pfifo\nip addr add 192.0.2.5/32 dev lo\n"
               "read -t 100 _ <> " + str(guest.fifo) + " & read -t 100 _ <> " + str(guest.fifo) + " &")
    dirty = _state(guest)
    assert all(dirty[k] != boot[k] for k in boot), {k: (boot[k], dirty[k]) for k in boot if dirty[k] == boot[k]}

    new = tmp_path / "cell2"
    n = f"{guest._seq + 1:05d}"  # the reset's command: read from the old spool, its status in the new one
    # the network comes back in RESET's own batch (as Lab.next_cell gives it network_batch's lines)
    batch = ["link set vec0 up", "link set lo up", "addr add 198.51.100.10/24 dev vec0",
             "addr add 203.0.113.1/32 dev lo",
             "addr add 2001:db8:1::10/64 dev vec0 nodad"]
    stat = guest.reset(new, "echo second cell\n", dev="vec0", timeout=20, batch=batch)
    assert guest.dir == new and (new / "ready").exists()
    assert "second cell" in (new / "init.log").read_text()
    assert [line.split()[0] for line in stat.splitlines()][:2] == ["XfrmInError", "XfrmInBufferError"], stat
    old = tmp_path / "cell1" / "cmd"
    assert (old / f"{n}.sh").exists() and (old / f"{n}.out").exists() and (new / "cmd" / f"{n}.rc").read_text() == "0\n"
    after = _state(guest)
    assert after == boot, {k: (boot[k], after[k]) for k in boot if after[k] != boot[k]}
    assert guest.exec("echo in the new spool") == (0, "in the new spool\n")
    assert (new / "cmd" / f"{guest._seq:05d}.out").read_text() == "in the new spool\n"


def test_a_reset_whose_start_fails_is_an_error(guest, tmp_path, monkeypatch):
    monkeypatch.setattr(uml, "RESET", "echo '=== xfrm_stat'\n")
    monkeypatch.setattr(uml, "REMOUNT", "ln -sfn {dir} /ipl\n")
    guest.start("")
    with pytest.raises(LabError, match="starting the next cell failed"):
        guest.reset(tmp_path / "cell2", "echo daemon missing; exit 1\n", timeout=10)
    assert "daemon missing" in (tmp_path / "cell2" / "init.log").read_text()
    assert guest.exec("echo still here") == (0, "still here\n")

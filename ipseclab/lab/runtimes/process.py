"""The ``process`` runtime: the ipseclab endpoint as a process in the side's namespace instead of a UML guest.

The endpoint needs no kernel IPsec (its data plane is ipseclab's own), so it runs on the host
kernel inside the namespace the topology made for that side: the namespace's end of the veth gets
the side's transit address, and ``python -m ipseclab.endpoint`` runs there, driven over its
stdin/stdout line protocol (``endpoint/runner.py``).  The lab talks to it only through that
process boundary, so ``lab/`` does not import the engine: the spec is plain JSON.

``EndpointHost`` offers what the lab uses of a ``UmlHost`` (``boot``, ``wait_ready``, ``alive``,
``halt``, ``dir``, ``exec``: commands run in the side's namespace, whose traffic the endpoint's TUN
device carries) plus ``command``; its peer driver is ``impls/ipseclab.py``.

Each endpoint is forked by a zygote the host starts once in the namespace (``endpoint/zygote.py``: the
modules imported once, ~0.3 CPU-s an endpoint saved on a booted pair's every cell);
``IPSECLAB_ENDPOINT_ZYGOTE=0`` starts each one as ``python -m ipseclab.endpoint`` instead (for a before/after,
``tests/bench/bench_endpoint_start.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ...errors import LabError
from ..proc import in_netns, require_tool, run, stop, tail
from ..topology import HostAddressing

SPEC = "endpoint.json"  # the endpoint's JSON spec in its directory, written by impls/ipseclab.py
ZYGOTE_ENV = "IPSECLAB_ENDPOINT_ZYGOTE"  # "0": every endpoint a process of its own, started from scratch


class ForkedEndpoint:
    """An endpoint the zygote forked: what the lab uses of a ``Popen`` (``pid``, ``stdin``, ``stdout``, ``poll``,
    ``wait``, ``kill``), its end seen through a pidfd (it is the zygote's child, not ours; the zygote keeps its
    status, so ``returncode`` is -1 once it ended)."""

    def __init__(self, pid: int, stdin: IO[str], stdout: IO[str]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self.returncode = -1
            os.close(self._pidfd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"endpoint {self.pid}", timeout or 0.0)
            self.poll()
        return -1

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


class Zygote:
    """The zygote process in a namespace (``endpoint/zygote.py``) and the socket it takes requests on; ``close``
    kills whatever endpoint it forked that still runs (the lab stops each one itself first: this is for a lab or
    a test that failed half-way)."""

    def __init__(self, ns: str, log: Path) -> None:
        """Start it in namespace ``ns`` ("": this process's), its own output into ``log``."""
        self.forked: list[ForkedEndpoint] = []
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", "ipseclab.endpoint.zygote", str(theirs.fileno())]
        try:
            with open(log, "a") as fh:
                self.proc = subprocess.Popen(
                    in_netns(ns, cmd) if ns else cmd,
                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, spec: Path, stderr: Path, timeout: float = 30) -> ForkedEndpoint:
        """A new endpoint running ``spec``, its stderr into the file ``stderr``; LabError if the zygote is gone."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        with open(stderr, "a") as err:  # a revived endpoint's after the killed one's
            try:
                self.sock.settimeout(timeout)
                socket.send_fds(self.sock, [json.dumps({"spec": str(spec)}).encode()], [in_r, out_w, err.fileno()])
                answer = json.loads(self.sock.recv(4096) or b"{}")
            except (OSError, ValueError) as exc:
                for fd in (in_w, out_r):
                    os.close(fd)
                raise LabError(f"the endpoint zygote did not answer: {exc}") from None
            finally:
                os.close(in_r)
                os.close(out_w)
        if "pid" not in answer:
            for fd in (in_w, out_r):
                os.close(fd)
            raise LabError(f"the endpoint zygote refused: {answer.get('error', 'it is gone')}")
        self.forked = [ep for ep in self.forked if ep.poll() is None]
        self.forked.append(ForkedEndpoint(int(answer["pid"]), os.fdopen(in_w, "w"), os.fdopen(out_r, "r")))
        return self.forked[-1]

    def close(self) -> None:
        for ep in self.forked:
            ep.kill()
        self.forked.clear()
        self.sock.close()  # the zygote ends on it
        stop(self.proc, grace=2)


@dataclass(slots=True)
class EndpointHost:
    """One endpoint process in namespace ``ns``, using ``ifname`` there; logs and keys in ``dir``."""

    name: str
    ns: str
    ifname: str
    addressing: HostAddressing
    dir: Path
    proc: subprocess.Popen[str] | ForkedEndpoint | None = None
    zygote: Zygote | None = None
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    events: list[dict[str, Any]] = field(default_factory=list)
    booted_at: float = 0.0
    killed: bool = False  # by a lifecycle Kill: its namespace keeps what the kill left, even once revived

    def boot(self, init_script: str = "") -> None:
        """Give the namespace's veth end the side's address and start the endpoint (see wait_ready)."""
        from pyroute2 import NetNS

        require_tool("ping")  # the lab's ping runs in this namespace, through the endpoint's TUN device
        addr, plen = self.addressing.transit4.split("/")
        with NetNS(self.ns) as nsr:
            index = nsr.link_lookup(ifname=self.ifname)[0]
            nsr.addr("add", index=index, address=addr, prefixlen=int(plen))
            # the host's address in its protected subnet, on lo as the daemons' guests have it: tunnel-mode
            # traffic from it is routed into the endpoint's TUN device
            lo = nsr.link_lookup(ifname="lo")[0]
            nsr.link("set", index=lo, state="up")
            nsr.addr("add", index=lo, address=self.addressing.protected_addr, prefixlen=32)
        if self.addressing.transit6:  # the topology turned IPv6 off on the veth ends; the endpoint's side needs it
            run(in_netns(self.ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{self.ifname}.disable_ipv6=0"]), timeout=10)
            run(["ip", "-n", self.ns, "-6", "addr", "add", self.addressing.transit6, "dev", self.ifname, "nodad"],
                timeout=10)
        if self.addressing.gateway4:
            with NetNS(self.ns) as nsr:
                nsr.route("add", dst="0.0.0.0/0", gateway=self.addressing.gateway4)
        if os.environ.get(ZYGOTE_ENV, "1") != "0":
            self.zygote = Zygote(self.ns, self.dir / "zygote.log")
        self._start(init_script)

    def restart(self, new_dir: Path, init_script: str = "") -> None:
        """For the next cell, after ``halt()`` (which ends whatever runs in the namespace, a capture there too):
        a new endpoint with ``new_dir``'s spec and logs, after the new cell's ``init_script``; the namespace keeps
        its transit and protected addresses, and loses what the cell before added on lo (see wait_ready)."""
        self.dir = new_dir
        self.lines = queue.Queue()
        self.events = []
        self.exec(f"ip addr flush dev lo scope global && ip addr add {self.addressing.protected_addr}/32 dev lo",
                  timeout=30)
        self._start(init_script)

    def revive(self) -> None:
        """A new endpoint in the same directory after ``kill`` (a lifecycle Revive): it starts with the cell's spec
        and no SA, keeps the key files' rows (``endpoint.runner``), and its output goes on in the same logs."""
        self._start("")

    def _start(self, init_script: str) -> None:
        if init_script:  # the driver's start_script: shell lines in the namespace before the endpoint starts
            self.exec(init_script, timeout=30)
        self.booted_at = time.monotonic()
        if self.zygote is not None and self.zygote.alive:
            self.proc = self.zygote.fork(self.dir / SPEC, self.dir / "endpoint.stderr")
        else:
            cmd = in_netns(self.ns, [sys.executable, "-m", "ipseclab.endpoint", str(self.dir / SPEC)])
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         stderr=open(self.dir / "endpoint.stderr", "a"),  # noqa: SIM115
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.dir / "endpoint.stdout", "a") as log:  # a revived endpoint's after the killed one's
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    continue

    def _next(self, deadline: float) -> dict[str, Any] | None:
        try:
            msg = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if msg.get("kind") == "event":
            self.events.append(msg)
        return msg

    def wait_ready(self, timeout: float = 20) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next(min(deadline, time.monotonic() + 0.2))
            if msg is not None and msg.get("kind") == "ready":
                return time.monotonic() - self.booted_at
            if not self.alive:
                break
        raise LabError(f"the ipseclab endpoint {self.name} did not start", output=tail(self.dir / "endpoint.stderr"),
                       hint=f"see {self.dir}/endpoint.stderr")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, cmd: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send one command; returns its answer (events that arrive meanwhile are kept in ``events``)."""
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise LabError(f"the ipseclab endpoint {self.name} is not running",
                           output=tail(self.dir / "endpoint.stderr"))
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next(deadline)
            if msg is None:
                break
            if msg.get("kind") == "error":
                raise LabError(f"the ipseclab endpoint refused {cmd['cmd']}: {msg.get('message')}")
            if msg.get("kind") == "answer" and msg.get("cmd") == cmd["cmd"]:
                return msg
        raise LabError(f"no answer from the ipseclab endpoint to {cmd['cmd']} within {timeout:.0f} s",
                       hint=f"see {self.dir}/endpoint.stdout")

    def wait_event(self, types: tuple[str, ...], timeout: float, since: int = 0,
                   where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The first event (seen already, from the ``since``-th on, or arriving) whose type is one of ``types``
        and that ``where`` takes."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[since:]:
                if e.get("type") in types and (where is None or where(e)):
                    return e
            if time.monotonic() >= deadline:
                raise LabError(f"the ipseclab endpoint reported none of {', '.join(types)} within {timeout:.0f} s",
                               output="\n".join(json.dumps(e) for e in self.events[-5:]),
                               hint=f"see {self.dir}/endpoint.stdout")
            self._next(deadline)

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        """Run shell lines in the endpoint's namespace (ping, a TCP transfer: through its TUN device)."""
        proc = run(in_netns(self.ns, ["sh", "-c", script]), timeout=timeout, check=False)
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise LabError(f"command in the {self.name} endpoint's namespace failed with status {proc.returncode}",
                           command=[script], output=out, hint=f"see {self.dir}/endpoint.stdout")
        return proc.returncode, out

    def kill(self) -> None:
        """End the endpoint at once (SIGKILL), as a crashed peer: no Delete, no goodbye."""
        self.killed = True
        if self.proc is not None and self.alive:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def _close_zygote(self, keep: bool) -> None:
        if not keep and self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def halt(self, timeout: float = 5, keep_zygote: bool = False) -> None:
        """Ask the endpoint to quit, then stop it and whatever else runs in the namespace, the zygote too unless
        ``keep_zygote`` (between two cells); never raises for a dead process."""
        if self.proc is None:
            self._close_zygote(keep_zygote)
            return
        if self.alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
            deadline = time.monotonic() + timeout
            while self.alive and time.monotonic() < deadline:
                time.sleep(0.05)
        stop(self.proc, grace=2)
        # after the endpoint's own exit (its counters.json): the zygote's close kills any endpoint still running
        self._close_zygote(keep_zygote)
        # what ``exec`` left running in the namespace (a listener, a background transfer): the lab started it
        pids = run(["ip", "netns", "pids", self.ns], timeout=10, check=False).stdout.split()
        spare = str(self.zygote.proc.pid) if self.zygote is not None else ""
        for pid in pids:
            if pid == spare:
                continue
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)

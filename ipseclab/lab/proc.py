"""Subprocesses of the lab: argument lists only, errors that name the command, the output and the fix.

Every external tool the lab uses (linux.uml, tcpdump, mmdebstrap, nft, ip netns exec) goes
through here, so that a failure always reads the same way and nothing is started without
being tracked for teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..errors import LabError

# tool -> (Debian package, what it is for)
TOOLS = {
    "patchelf": ("patchelf", "points the cached UML kernel at the C library it was built for"),
    "dpkg-deb": ("dpkg", "extracts the UML kernel's packages into the cache"),
    "mmdebstrap": ("mmdebstrap", "builds the peers' root filesystems"),
    "tcpdump": ("tcpdump", "captures every link of the lab"),
    "nft": ("nftables", "masquerades the left side in the NAT topology"),
    "ip": ("iproute2", "runs commands inside the lab's network namespaces"),
    "ping": ("iputils-ping", "pings through the ipseclab endpoint's TUN device from its namespace"),
}


def require_tool(name: str) -> str:
    """The path of a tool, or a LabError saying which Debian package provides it."""
    path = shutil.which(name)
    if path is None:
        pkg, why = TOOLS.get(name, (name, ""))
        raise LabError(f"{name} is not installed ({why})", hint=f"apt-get install {pkg}")
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (network namespaces, raw sockets for UML, tcpdump)",
                       hint="run it with sudo, or as root in CI")


def run(cmd: Sequence[str], timeout: float = 60, check: bool = True, hint: str = "",
        input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; LabError with its output when it fails or times out."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input,
                              cwd=cwd)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} not found", command=list(cmd), hint=hint) from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise LabError(f"{cmd[0]} did not finish within {timeout:.0f} s", command=list(cmd), output=out,
                       hint=hint) from None
    if check and proc.returncode != 0:
        raise LabError(f"{cmd[0]} failed with exit status {proc.returncode}", command=list(cmd),
                       output=proc.stdout + proc.stderr, hint=hint)
    return proc


def in_netns(ns: str, cmd: Sequence[str]) -> list[str]:
    """The argument list that runs ``cmd`` inside network namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *cmd]


def spawn(cmd: Sequence[str], log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session (so its whole group can be stopped), output to ``log``;
    ``pass_fds`` stay open in it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env, start_new_session=True, pass_fds=tuple(pass_fds))


class GroupLeader(Protocol):
    """What :func:`stop` needs of a process: a ``Popen``, or an endpoint the zygote forked (runtimes/process.py)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def stop(proc: GroupLeader, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Stop a process group started by :func:`spawn` (or a session leader like it): ``sig`` first, SIGKILL after
    ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages ('' when it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

"""Find and remove what ipseclab labs left behind: processes in lab namespaces, UML guests, the namespaces.

Only ipseclab's own resources are touched: namespaces named with the lab prefix, processes
running inside them (UML guests and tcpdump), and UML instances whose ``umid`` carries the
prefix.  Used by every teardown as a last sweep for its own run id, and by ``ipseclab lab
cleanup`` for runs that crashed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .netns import lab_namespaces, remove_namespaces
from .runtimes.docker import sweep_containers
from .topology import LAB_PREFIX


@dataclass(slots=True)
class Leftovers:
    """What a sweep found (and removed, unless it was a dry run)."""

    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    uml_dirs: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.pids or self.uml_dirs or self.containers)

    def describe(self) -> str:
        parts = []
        if self.namespaces:
            parts.append("namespaces " + " ".join(self.namespaces))
        if self.pids:
            parts.append("processes " + " ".join(map(str, self.pids)))
        if self.uml_dirs:
            parts.append("UML state " + " ".join(self.uml_dirs))
        if self.containers:
            parts.append("containers " + " ".join(self.containers))
        return "; ".join(parts) or "nothing"


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def lab_pids(run_id: str | None = None) -> list[int]:
    """Processes inside the lab's namespaces, and UML processes whose umid carries the lab prefix."""
    prefix = LAB_PREFIX + (f"{run_id}-" if run_id else "")
    inodes = {ino for ns in lab_namespaces(run_id) if (ino := _netns_inode(ns)) is not None}
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if inodes and os.stat(entry / "ns" / "net").st_ino in inodes:
                pids.append(int(entry.name))
                continue
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"linux.uml") and any(
            a.startswith(f"umid={prefix}".encode()) for a in cmdline
        ):
            pids.append(int(entry.name))
    return sorted(pids)


def sweep(run_id: str | None = None, dry_run: bool = False, containers: bool = True) -> Leftovers:
    """Kill the lab's processes, delete its namespaces and UML state directories (one run's, or all).

    ``containers=False`` leaves the Docker engine alone (a run that started none need not wake it).
    """
    found = Leftovers(lab_namespaces(run_id), lab_pids(run_id))
    if containers:
        found.containers = sweep_containers(run_id, dry_run=dry_run)  # labelled with the run id; removed now
    prefix = LAB_PREFIX + (f"{run_id}-" if run_id else "")
    uml_home = Path.home() / ".uml"
    if uml_home.is_dir():
        found.uml_dirs = sorted(str(p) for p in uml_home.iterdir() if p.name.startswith(prefix))
    if dry_run or not found:
        return found
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found.pids):
            time.sleep(0.05)
    remove_namespaces(found.namespaces)
    for d in found.uml_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return found

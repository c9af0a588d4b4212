"""The start-up probe: can the chosen UML kernel run init on this CPU?  Asked once, then cached.

A UML kernel that cannot run here fails every guest the same way, 2-3 s into each boot, with
an error that names the guest and not the cause.  So before the first case the lab boots the
kernel once with a trivial init (the host's root, read-only, and a three-line script that
prints a mark and powers off: about a second), and caches the verdict per kernel build and
CPU model in ``<cache>/probe.json``.  A kernel that cannot run stops the run before any
namespace or guest exists, with one line that names the cause and the fix, followed by the
console lines that show it.

The diagnosis (:func:`diagnose`) reads the console alone, so it is tested against a console
log kept from a host where it happened (``shared/evidence/uml-6.1-amx-host.console.log``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import LabError
from ..images import cache_root
from ..proc import spawn, stop
from ..topology import LAB_PREFIX
from .uml_kernel import INSTALL_HINT, USERSPACE, UmlKernel

MARK = "ipseclab-probe: init ran"
PROBE_INIT = f"""#!/bin/sh
echo '{MARK}'
mount -t proc proc /proc && echo o > /proc/sysrq-trigger
sleep 10
"""
FP_REGS = re.compile(r"ptrace set fp ?regs failed, errno = (\d+)")
PANIC = re.compile(r"Kernel panic - not syncing: .*")
INIT_RUN = re.compile(r"Run \S+ as init process")
VERSION = re.compile(r"Linux version (\S+)")


class KernelCannotRun(LabError):
    """The chosen UML kernel cannot boot a guest on this host: the diagnosis on one line, then the console lines."""

    def __init__(self, diagnosis: str, evidence: tuple[str, ...] = ()) -> None:
        super().__init__("\n".join([diagnosis, *(f"  console: {line}" for line in evidence)]))
        self.diagnosis = diagnosis
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """What of the host CPU matters to UML: its model and its flags (AMX widens the XSAVE area)."""

    model: str
    flags: frozenset[str]

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    def describe(self) -> str:
        return f"{self.model}, {'with' if self.amx else 'without'} AMX"


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    text = cpuinfo.read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return CpuInfo(model.group(1).strip() if model else "unknown CPU",
                   frozenset(flags.group(1).split()) if flags else frozenset())


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the probe found: ``ok``, or the one-line diagnosis and the console lines behind it."""

    ok: bool
    kernel: str  # kernel version
    cpu: str  # CpuInfo.describe()
    seconds: float
    diagnosis: str = ""
    evidence: tuple[str, ...] = ()
    probed_at: str = ""
    cached: bool = False

    def summary(self) -> str:
        if self.ok:
            how = "cached verdict" if self.cached else f"booted to init in {self.seconds:.1f} s"
            return f"UML {self.kernel} runs on this CPU ({self.cpu}; {how})"
        return self.diagnosis

    def error(self) -> KernelCannotRun:
        when = f" (verdict cached {self.probed_at}; `ipseclab kernel probe --again` re-runs it)" \
            if self.cached else ""
        return KernelCannotRun(self.diagnosis + when, self.evidence)


def diagnose(console: str, kernel_version: str, cpu: CpuInfo, *, exit_status: int | None = None,
             timed_out: bool = False) -> tuple[str, tuple[str, ...]]:
    """The one-line cause-and-fix of a probe boot that did not reach the mark, and the lines that show it."""
    lines = console.splitlines()
    version = kernel_version or next((m.group(1) for ln in lines if (m := VERSION.search(ln))), "unknown")
    evidence = tuple(ln.strip() for ln in lines if INIT_RUN.search(ln) or FP_REGS.search(ln) or PANIC.search(ln))
    fp = next((m for ln in lines if (m := FP_REGS.search(ln))), None)
    if fp is not None:
        errno = fp.group(1)
        if cpu.amx:
            cause = (f"UML kernel {version} cannot run on this CPU ({cpu.model}): the CPU has AMX (amx_tile), "
                     f"whose XSAVE area is larger than the buffer this kernel hands to PTRACE_SETREGSET, so the "
                     f"host refuses the guest's FP registers (errno {errno}) and init dies")
        else:
            cause = (f"UML kernel {version} cannot run on this CPU ({cpu.model}): the host refused the guest's FP "
                     f"registers (ptrace errno {errno}); this is how a host XSAVE area larger than the kernel "
                     f"expects (AMX and later extensions) shows, though this CPU reports no amx_tile flag")
        fix = f"{INSTALL_HINT} (Debian unstable's UML 7.2 sizes the buffer from the host and boots on AMX CPUs)"
        return f"{cause}; fix: {fix}", evidence
    panic = next((m.group(0) for ln in lines if (m := PANIC.search(ln))), None)
    if panic is not None:
        return (f"UML kernel {version} panicked before the probe's init ran ({panic.strip()}) on this CPU "
                f"({cpu.describe()}); fix: try another kernel: {INSTALL_HINT}"), evidence
    tail = tuple(ln.strip() for ln in lines[-5:] if ln.strip())
    if timed_out:
        return (f"UML kernel {version} did not reach init within the probe's time limit on this CPU "
                f"({cpu.describe()}); fix: look at the console lines below, or {INSTALL_HINT}"), evidence + tail
    return (f"UML kernel {version} exited (status {exit_status}) before the probe's init ran on this CPU "
            f"({cpu.describe()}); fix: look at the console lines below, or {INSTALL_HINT}"), evidence + tail


def _cache_file() -> Path:
    return cache_root() / "probe.json"


def _cache_key(kernel: UmlKernel, cpu: CpuInfo) -> str:
    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:12]
    return f"{kernel.binary}|{kernel.build_id()}|{cpu.model}|flags:{flags}|{USERSPACE}"


def _load_cache() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _from_cache(entry: object) -> Verdict | None:
    """A cached verdict, or None for anything that is not exactly what :func:`check_kernel` writes."""
    if not isinstance(entry, dict):
        return None
    ok, seconds, evidence = entry.get("ok"), entry.get("seconds"), entry.get("evidence", [])
    texts = [entry.get(k, "") for k in ("kernel", "cpu", "diagnosis", "probed_at")]
    if (not isinstance(ok, bool) or not isinstance(seconds, int | float) or not all(isinstance(t, str) for t in texts)
            or not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence)):
        return None
    kernel, cpu, diagnosis, probed_at = texts
    return Verdict(ok, kernel, cpu, float(seconds), diagnosis, tuple(evidence), probed_at, cached=True)


def boot_probe(kernel: UmlKernel, cpu: CpuInfo, timeout: float = 30) -> Verdict:
    """Boot ``kernel`` once with a trivial init and the host's root read-only; the verdict from its console."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipseclab-probe-") as tmp:
        init = Path(tmp) / "init"
        init.write_text(PROBE_INIT)
        init.chmod(0o755)
        console = Path(tmp) / "console.log"
        cmd = [str(kernel.binary), f"umid={LAB_PREFIX}probe-{os.getpid()}", "mem=64M", "root=/dev/root",
               "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}", "con=null", "con0=null,fd:1",
               USERSPACE]
        try:
            proc = spawn(cmd, console)
        except OSError as exc:
            return Verdict(False, kernel.version, cpu.describe(), 0.0,
                           f"UML kernel {kernel.version} at {kernel.binary} cannot be started ({exc}); "
                           f"fix: {INSTALL_HINT}")
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            stop(proc, grace=2)  # the whole process group: UML's helper processes too
        text = console.read_text(errors="replace")
    seconds = time.monotonic() - started
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    if MARK in text:
        return Verdict(True, kernel.version, cpu.describe(), seconds, probed_at=now)
    diagnosis, evidence = diagnose(text, kernel.version, cpu, exit_status=proc.returncode, timed_out=timed_out)
    return Verdict(False, kernel.version, cpu.describe(), seconds, diagnosis, evidence, now)


def check_kernel(kernel: UmlKernel, *, again: bool = False, cpu: CpuInfo | None = None) -> Verdict:
    """The probe's verdict for ``kernel`` on this CPU: from the cache, or booted now (and cached)."""
    cpu = cpu or host_cpu()
    key = _cache_key(kernel, cpu)
    cache = _load_cache()
    if not again and (cached := _from_cache(cache.get(key))) is not None:
        return cached
    verdict = boot_probe(kernel, cpu)
    if not verdict.ok and not any(FP_REGS.search(e) or PANIC.search(e) for e in verdict.evidence):
        return verdict  # a timeout, a kill or a failed spawn may not happen again: not cached
    cache[key] = {k: v for k, v in asdict(verdict).items() if k != "cached"}
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        tmp.rename(path)
    except OSError:
        pass  # an unwritable cache only costs a second next time
    return verdict


def require_bootable(kernel: UmlKernel) -> Verdict:
    """The verdict if ``kernel`` runs here; otherwise KernelCannotRun with the diagnosis."""
    verdict = check_kernel(kernel)
    if not verdict.ok:
        raise verdict.error()
    return verdict

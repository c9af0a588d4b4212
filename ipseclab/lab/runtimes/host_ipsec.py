"""Whether the host kernel can carry the peers' IPsec itself, found by trying; what the docker runtime does then.

The docker runtime runs a kernel-IPsec peer (strongSwan, Libreswan, OpenIKED) either directly in its
container on the host kernel (``host``) or booting the peer's own kernel under User-Mode Linux inside
the container (``uml``).  Reading ``/proc/config.gz`` is not enough to choose (a module may be missing,
a template not built, a container's kernel not the one that was configured), so each run asks the
kernel: in a throwaway network namespace it adds the SAs the peers install (ESP with AES-CBC and
HMAC-SHA2-256, ESP with AES-GCM (RFC 4106), AH with HMAC-SHA2-256) with ``ip xfrm state add``, and opens
a PF_KEY socket (OpenIKED's way to the kernel), then removes the namespace.  The kernel's own error
text is kept: it is why the run used UML, recorded in ``lab.json``.

``IPSECLAB_KERNEL_IPSEC`` (``auto``, the default; ``host``; ``uml``) or ``--kernel-ipsec`` forces
the choice; ``host`` on a kernel that fails a probe is refused before anything starts.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass

from ...errors import LabError
from ..topology import LAB_PREFIX
from . import KERNEL_IPSEC_ENV as ENV
from . import KERNEL_IPSEC_MODES

# (what, the xfrm state's arguments after ``src A dst B``): the transforms the default matrix's peers install;
# keys are fixed junk: the SA never carries a packet, the namespace has no interface
_SRC, _DST = "198.51.100.1", "198.51.100.2"
XFRM_PROBES: tuple[tuple[str, list[str]], ...] = (
    ("ESP cbc(aes)+hmac(sha256)", ["proto", "esp", "spi", "0x1001", "mode", "tunnel",
                                   "enc", "cbc(aes)", "0x" + "11" * 16, "auth-trunc", "hmac(sha256)", "0x" + "22" * 32,
                                   "128"]),
    ("ESP rfc4106(gcm(aes))", ["proto", "esp", "spi", "0x1002", "mode", "tunnel",
                               "aead", "rfc4106(gcm(aes))", "0x" + "33" * 20, "128"]),
    ("AH hmac(sha256)", ["proto", "ah", "spi", "0x1003", "mode", "tunnel",
                         "auth-trunc", "hmac(sha256)", "0x" + "44" * 32, "128"]),
)
PFKEY_PROBE = "PF_KEY socket"
_PFKEY = "import socket; socket.socket(15, socket.SOCK_RAW, 2).close()"  # AF_KEY, PF_KEY_V2


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: what was tried, and the kernel's error text ("" when it worked)."""

    probe: str
    ok: bool
    error: str = ""

    def line(self) -> str:
        return f"{self.probe}: ok" if self.ok else f"{self.probe}: {self.error}"


@dataclass(frozen=True, slots=True)
class HostIpsec:
    """What the host kernel did with each probe."""

    results: tuple[ProbeResult, ...]

    @property
    def esp_ah(self) -> bool:
        """Whether every ESP and AH probe worked (what strongSwan and Libreswan need)."""
        xfrm = [r for r in self.results if r.probe != PFKEY_PROBE]
        return bool(xfrm) and all(r.ok for r in xfrm)

    def failed(self, esp_ah_only: bool = False) -> ProbeResult | None:
        """The first failed probe (of ESP and AH only, with ``esp_ah_only``), or None."""
        return next((r for r in self.results if not r.ok and not (esp_ah_only and r.probe == PFKEY_PROBE)), None)

    def summary(self) -> str:
        return "; ".join(r.line() for r in self.results)


@dataclass(frozen=True, slots=True)
class KernelIpsec:
    """How the docker runtime's kernel peers get IPsec: ``host`` (the host kernel) or ``uml``, and why."""

    mode: str
    reason: str


def probe_host_ipsec() -> HostIpsec:
    """Try the probes in a network namespace of our own (``ipl-probe-<id>``, removed before returning).

    Never raises for what the kernel refuses: that is the answer.  A namespace that cannot be made
    is a failed probe too (its error is the reason).
    """
    from pyroute2 import netns

    from ..netns import remove_namespaces
    from ..proc import in_netns, run

    ns = f"{LAB_PREFIX}probe-{uuid.uuid4().hex[:6]}"
    results: list[ProbeResult] = []
    try:
        try:
            netns.create(ns)
        except OSError as exc:
            return HostIpsec((ProbeResult("network namespace", False, f"cannot create {ns}: {exc}"),))
        tries = [(what, ["ip", "-n", ns, "xfrm", "state", "add", "src", _SRC, "dst", _DST, *args])
                 for what, args in XFRM_PROBES]
        tries.append((PFKEY_PROBE, in_netns(ns, [sys.executable, "-c", _PFKEY])))
        for what, cmd in tries:
            try:
                done = run(cmd, timeout=10, check=False)
            except LabError as exc:  # ip missing, or hanging
                results.append(ProbeResult(what, False, str(exc)))
                continue
            lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
            error = "" if done.returncode == 0 else (lines[-1] if lines else f"exit status {done.returncode}")
            results.append(ProbeResult(what, done.returncode == 0, error))
    finally:
        remove_namespaces([ns])
    return HostIpsec(tuple(results))


def asked_mode(requested: str | None = None) -> str:
    """``requested``, else ``$IPSECLAB_KERNEL_IPSEC``, else ``auto``; LabError for anything else."""
    asked = requested or os.environ.get(ENV) or "auto"
    if asked not in KERNEL_IPSEC_MODES:
        raise LabError(f"unknown kernel IPsec mode {asked!r} ({ENV} or --kernel-ipsec)",
                       hint=f"use one of {', '.join(KERNEL_IPSEC_MODES)}")
    return asked


def decide(asked: str, found: HostIpsec) -> KernelIpsec:
    """The mode for this run from what was asked and what the probes found (pure: no I/O).

    ``auto`` takes the host kernel only when every probe passed (PF_KEY too: OpenIKED needs it), so a
    kernel that would fail one peer boots UML for all.  A forced ``host`` is refused only when ESP or
    AH fails (what every kernel peer needs); a failed PF_KEY probe is named in the reason.
    """
    if asked == "host":
        failed = found.failed(esp_ah_only=True)
        if failed is not None:
            # one line: what was asked, the probe that failed with the kernel's words, and the fix
            raise LabError(f"{ENV}=host, but the host kernel failed the {failed.probe} probe (ip xfrm state add in "
                           f"a scratch namespace: {failed.error}); load ESP/AH on the host (modprobe -a esp4 ah4 esp6 "
                           f"ah6) or use {ENV}=auto")
        return KernelIpsec("host", f"host asked; host kernel probes: {found.summary()}: each kernel peer runs in "
                                   "its container on the host kernel")
    if asked == "uml":
        return KernelIpsec("uml", f"uml asked: each kernel peer boots its own kernel under User-Mode Linux in its "
                                  f"container (host kernel probes: {found.summary()})")
    failed = found.failed()
    if failed is None:
        return KernelIpsec("host", f"the host kernel has ESP/AH ({found.summary()}): each kernel peer runs in its "
                                   "container on the host kernel")
    return KernelIpsec("uml", f"the host kernel failed the {failed.probe} probe ({failed.error}): each kernel peer "
                              "boots its own kernel under User-Mode Linux in its container")

"""Which runtime boots the peers, decided at start-up from what the host kernel can do.

``uml`` (User-Mode Linux, each peer with its own kernel ESP/AH) works everywhere and is the
default.  ``docker`` runs each kernel peer as a container of its docker image (``docker.py``):
on the host kernel where the host kernel has ESP/AH, else booting the peer's kernel under UML
inside (``host_ipsec.py`` tries the kernel each run and records why).  ``netns`` (chroot plus
namespaces on the host kernel) is not implemented; where it would apply the lab says so and
still uses ``uml``.  ``process`` (``process.py``) is how the ipseclab endpoint runs in any runtime.

The modules here: ``uml.py`` (a UML guest), ``uml_kernel.py`` (which UML kernel), ``uml_probe.py``
(can it boot on this CPU), ``docker.py`` (a peer's container), ``docker_images.py`` (images through
the Docker SDK), ``host_ipsec.py`` (the host kernel's ESP/AH), ``process.py`` (the endpoint process).
This module imports only the standard library at import time (the pytest plugin reads RUNTIMES).
"""

from __future__ import annotations

import gzip
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import LabError


@dataclass(frozen=True, slots=True)
class RuntimeChoice:
    """The runtime of a run and why; under docker, how kernel peers get IPsec and the probes that decided it."""

    name: str
    reason: str
    kernel_ipsec: str = "uml"  # "uml": kernel peers boot their own kernel; "host": they use the host kernel's
    kernel_ipsec_reason: str = ""
    host_ipsec_probes: list[str] = field(default_factory=list)  # each probe's line: "ESP ...: ok" or the error

    def boots_uml(self, placement: str) -> bool:
        """Whether a peer of this placement boots a UML kernel in this run."""
        return placement == "kernel" and self.kernel_ipsec == "uml"


def host_kernel_has_esp() -> tuple[bool, str]:
    """Whether the host kernel has ESP and AH (built in or as modules), and how we know."""
    config = Path("/proc/config.gz")
    if config.exists():
        text = gzip.decompress(config.read_bytes()).decode(errors="replace")
        opts = dict(ln.split("=", 1) for ln in text.splitlines() if ln.startswith("CONFIG_") and "=" in ln)
        esp, ah = opts.get("CONFIG_INET_ESP"), opts.get("CONFIG_INET_AH")
        if esp in ("y", "m") and ah in ("y", "m"):
            return True, f"CONFIG_INET_ESP={esp}, CONFIG_INET_AH={ah} in /proc/config.gz"
        return False, "CONFIG_INET_ESP/CONFIG_INET_AH not set in /proc/config.gz"
    mods = Path("/lib/modules") / platform.release() / "kernel" / "net" / "ipv4"
    if any(mods.glob("esp4.ko*")) and any(mods.glob("ah4.ko*")):
        return True, f"esp4 and ah4 modules in {mods}"
    return False, f"no /proc/config.gz and no esp4/ah4 modules in {mods}"


RUNTIMES = ("auto", "uml", "docker")
KERNEL_IPSEC_MODES = ("auto", "host", "uml")  # how the docker runtime's kernel peers get IPsec (host_ipsec.py)
KERNEL_IPSEC_ENV = "IPSECLAB_KERNEL_IPSEC"
KERNEL_IPSEC_HELP = ("under --runtime docker, whether kernel peers use the host kernel's ESP/AH (host) or boot their "
                     "own kernel under UML in the container (uml); auto (default; $IPSECLAB_KERNEL_IPSEC overrides) "
                     "tries the host kernel first")


def choose_runtime(requested: str | None = None, kernel_ipsec: str | None = None) -> RuntimeChoice:
    """The runtime the lab uses on this host, with the reason (recorded in every run's lab.json).

    ``requested`` (else ``$IPSECLAB_RUNTIME``, else ``uml``): ``uml``, ``docker`` (LabError when no
    engine answers), or ``auto`` (docker when an engine answers, else uml).  Under docker,
    ``kernel_ipsec`` (else ``$IPSECLAB_KERNEL_IPSEC``, else ``auto``) and the host kernel's probes
    decide whether kernel peers use the host kernel's IPsec (``host_ipsec.decide``); a forced
    ``host`` the kernel cannot meet is a LabError here, before anything starts.
    """
    from . import host_ipsec
    from .docker_images import engine, engine_answers

    asked = requested or os.environ.get("IPSECLAB_RUNTIME") or "uml"
    if asked not in RUNTIMES:
        raise LabError(f"unknown runtime {asked!r}", hint=f"use one of {', '.join(RUNTIMES)}")
    ipsec_asked = host_ipsec.asked_mode(kernel_ipsec)
    if asked == "docker" or (asked == "auto" and engine_answers()):
        from .remote import remote_engine

        remote = remote_engine()
        if remote:
            # a lab in this process bind-mounts run directories and names the containers' network namespaces:
            # both need the engine's own machine; `ipseclab interop` ships the whole lab there (remote.py)
            raise LabError(f"a lab in this process needs the Docker engine on this machine; DOCKER_HOST={remote} is "
                           "another one", hint="`ipseclab interop --runtime docker` runs the matrix on that engine's "
                                               "machine; for this, unset DOCKER_HOST or use --runtime uml")
        engine().close()  # a one-line error naming DOCKER_HOST when no engine answers
        found = host_ipsec.probe_host_ipsec()
        mode = host_ipsec.decide(ipsec_asked, found)
        return RuntimeChoice("docker", f"{asked} asked: each kernel peer is a container of its docker image; "
                                       f"{mode.reason}", mode.mode, mode.reason, [r.line() for r in found.results])
    if ipsec_asked == "host":
        raise LabError(f"{KERNEL_IPSEC_ENV}=host needs the docker runtime (kernel peers on the host kernel in their "
                       f"containers); this run's runtime is uml ({asked} asked)",
                       hint="use --runtime docker, or leave the kernel IPsec mode at auto")
    has_esp, why = host_kernel_has_esp()
    if asked == "auto":
        return RuntimeChoice("uml", "auto asked and no Docker engine answers: each peer runs its own kernel "
                                    "under User-Mode Linux")
    if has_esp:
        return RuntimeChoice("uml", f"host kernel has ESP/AH ({why}); the netns runtime is not implemented, "
                                    "so peers still run under User-Mode Linux")
    return RuntimeChoice("uml", f"host kernel lacks ESP/AH ({why}): each peer runs its own kernel under "
                                "User-Mode Linux")

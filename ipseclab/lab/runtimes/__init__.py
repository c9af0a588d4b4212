"""Which runtime boots the peers, decided at start-up from what the host kernel can do.

``uml`` (User-Mode Linux, each peer with its own kernel ESP/AH) works everywhere and is the
default.  ``docker`` runs each kernel peer as a container of its docker image that boots the
peer's kernel under UML inside (``lab.docker_host``).  ``netns`` (chroot plus namespaces on the
host kernel) would only work where the host kernel has ESP and AH; it is not implemented yet,
so where it would apply the lab says so and still uses ``uml``.
"""

from __future__ import annotations

import gzip
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ...errors import LabError


@dataclass(frozen=True, slots=True)
class RuntimeChoice:
    name: str
    reason: str


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


def choose_runtime(requested: str | None = None) -> RuntimeChoice:
    """The runtime the lab uses on this host, with the reason (recorded in every run's lab.json).

    ``requested`` (else ``$IPSECLAB_RUNTIME``, else ``uml``): ``uml``, ``docker`` (LabError when no
    engine answers), or ``auto`` (docker when an engine answers, else uml).
    """
    from .docker_images import engine, engine_answers

    asked = requested or os.environ.get("IPSECLAB_RUNTIME") or "uml"
    if asked not in RUNTIMES:
        raise LabError(f"unknown runtime {asked!r}", hint=f"use one of {', '.join(RUNTIMES)}")
    has_esp, why = host_kernel_has_esp()
    kernel = (f"the host kernel has ESP/AH ({why}), but using it from containers is not implemented yet"
              if has_esp else f"the host kernel lacks ESP/AH ({why})")
    if asked == "docker" or (asked == "auto" and engine_answers()):
        remote = os.environ.get("DOCKER_HOST", "")
        if remote and not remote.startswith("unix://"):
            # the lab bind-mounts run directories and names the containers' network namespaces: both
            # need the engine's own host
            raise LabError(f"the docker runtime needs the Docker engine on this machine; DOCKER_HOST={remote} is "
                           "another one", hint="unset DOCKER_HOST (or point it at a local unix socket), or run "
                                               "ipseclab on the engine's machine")
        engine().close()  # a one-line error naming DOCKER_HOST when no engine answers
        return RuntimeChoice("docker", f"{asked} asked: each kernel peer is a container of its docker image "
                                       f"that boots the peer's own kernel under User-Mode Linux, since {kernel}")
    if asked == "auto":
        return RuntimeChoice("uml", "auto asked and no Docker engine answers: each peer runs its own kernel "
                                    "under User-Mode Linux")
    if has_esp:
        return RuntimeChoice("uml", f"host kernel has ESP/AH ({why}); the netns runtime is not implemented, "
                                    "so peers still run under User-Mode Linux")
    return RuntimeChoice("uml", f"host kernel lacks ESP/AH ({why}): each peer runs its own kernel under "
                                "User-Mode Linux")

"""Which runtime boots the peers, decided at start-up from what the host kernel can do.

``uml`` (User-Mode Linux, each peer with its own kernel ESP/AH) works everywhere and is what
the lab uses.  ``netns`` (chroot plus namespaces on the host kernel) would only work where
the host kernel has ESP and AH; it is not implemented yet, so where it would apply the lab
says so and still uses ``uml``.
"""

from __future__ import annotations

import gzip
import os
import platform
from dataclasses import dataclass
from pathlib import Path


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


def choose_runtime() -> RuntimeChoice:
    """The runtime the lab uses on this host, with the reason (recorded in every run's lab.json)."""
    forced = os.environ.get("IPSECLAB_RUNTIME")
    if forced and forced != "uml":
        return RuntimeChoice("uml", f"IPSECLAB_RUNTIME={forced} asked, but only the uml runtime is implemented")
    has_esp, why = host_kernel_has_esp()
    if has_esp:
        return RuntimeChoice("uml", f"host kernel has ESP/AH ({why}); the netns runtime is not implemented, "
                                    "so peers still run under User-Mode Linux")
    return RuntimeChoice("uml", f"host kernel lacks ESP/AH ({why}): each peer runs its own kernel under "
                                "User-Mode Linux")

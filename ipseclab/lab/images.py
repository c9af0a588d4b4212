"""Peer images: root filesystems built with mmdebstrap from ``containers/<impl>/packages.txt``, cached by content.

One image per implementation (Debian's libreswan conflicts with strongswan-libcharon).
The cache key is a hash of everything that goes into the image: the package list, the
guest init script, the UML kernel (version and package) whose modules are copied in, and
this builder's version, so switching kernels builds new images.  A second run finds the
directory and starts in milliseconds.

The same package list feeds ``containers/<impl>/Dockerfile`` (the docker runtime's images:
``ipseclab.lab.runtimes.docker_images``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LabError
from .proc import require_tool, run

if TYPE_CHECKING:
    from .runtimes.uml_kernel import UmlKernel

BUILDER_VERSION = "1"
SUITE = "bookworm"
REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
# The guest's PID 1 (mounts the basics and the peer's own host directory, then runs the peer's script);
# the docker images copy the same file.
GUEST_INIT = (CONTAINERS / "common" / "ipseclab-init").read_text()


def cache_root() -> Path:
    """Where built images live: $IPSECLAB_CACHE, else /var/cache/ipseclab as root, else ~/.cache/ipseclab."""
    env = os.environ.get("IPSECLAB_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/ipseclab")
    return Path.home() / ".cache" / "ipseclab"


def packages(impl: str) -> list[str]:
    """The Debian packages of an implementation's image (``containers/<impl>/packages.txt``)."""
    path = CONTAINERS / impl / "packages.txt"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        known = sorted(p.name for p in CONTAINERS.iterdir() if (p / "packages.txt").exists() and p.name != "runner")
        raise LabError(f"no image definition for {impl!r} ({path} missing)",
                       hint=f"known implementations: {', '.join(known)}") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


@dataclass(frozen=True, slots=True)
class Image:
    """A root filesystem ready to boot under UML with ``kernel`` (whose modules it holds).

    For container peers ``key`` is the docker image's tag and ``path`` the container's root
    (``/``); ``kernel`` is None for a container that runs its daemon on the host kernel.
    """

    impl: str
    key: str
    path: Path
    kernel: UmlKernel | None


def image_key(impl: str, kernel: UmlKernel) -> str:
    h = hashlib.sha256()
    kernel_id = f"{kernel.version} {kernel.package}"
    for part in (BUILDER_VERSION, SUITE, kernel_id, GUEST_INIT, "\n".join(packages(impl))):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_image(impl: str, kernel: UmlKernel, log_dir: Path | None = None, timeout: float = 600) -> Image:
    """The image of ``impl`` for ``kernel``, from the cache or built now (mmdebstrap, then modules and init)."""
    key = image_key(impl, kernel)
    root = cache_root() / "images"
    target = root / f"{impl}-{key}"
    if (target / ".ipseclab-image").exists():
        return Image(impl, key, target, kernel)
    require_tool("mmdebstrap")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{impl}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs building the same image wait for each other
        if (target / ".ipseclab-image").exists():
            return Image(impl, key, target, kernel)
        tmp = root / f".{impl}-{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        proc = run(["mmdebstrap", "--variant=apt", "--include=" + ",".join(packages(impl)), SUITE, str(tmp)],
                   timeout=timeout, check=False)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"image-{impl}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LabError(f"building the {impl} image with mmdebstrap failed",
                           command=["mmdebstrap", "--variant=apt", "--include=...", SUITE, str(tmp)],
                           output=proc.stdout + proc.stderr,
                           hint="check that Debian's package mirrors are reachable (apt-get update works)")
        modules = tmp / "lib" / "modules"
        modules.mkdir(parents=True, exist_ok=True)
        shutil.copytree(kernel.modules, modules / kernel.modules.name, symlinks=True)
        init = tmp / "sbin" / "ipseclab-init"
        init.write_text(GUEST_INIT)
        init.chmod(0o755)
        (tmp / ".ipseclab-image").write_text(f"{impl} {key} built in {time.monotonic() - started:.1f} s\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return Image(impl, key, target, kernel)

"""Peer images for the docker runtime, through the Docker SDK (no ``docker`` CLI, no registry).

No registry is reachable, so nothing is pulled: the base ``ipseclab/bookworm-base:<hash>`` is a
Debian root filesystem made here with ``mmdebstrap --variant=apt`` (the same suite and the host's
apt sources, as the UML images) and imported; then ``containers/<impl>/Dockerfile`` is built on it
with ``containers/`` as the build context (so the peers share ``containers/common/``).

Every image is tagged with a hash of its inputs (the base's tag, the Dockerfile, the package
list, the shared files) and labelled ``ipseclab=1``, so a second run finds the tag and builds
nothing, ``ipseclab images list`` shows exactly ipseclab's, and ``prune`` removes the ones
whose inputs changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import LabError
from ..images import CONTAINERS, SUITE, cache_root, packages
from ..proc import require_tool, run

if TYPE_CHECKING:
    import docker

LABEL = "ipseclab"
BASE_REPO = "ipseclab/bookworm-base"
BUILDER_VERSION = "1"


NOT_PEERS = ("runner",)  # containers/runner/ is the remote lab's host (runtimes/remote.py), not a peer


def image_names() -> list[str]:
    """Every peer image defined under ``containers/`` (a folder with a Dockerfile)."""
    return sorted(p.parent.name for p in CONTAINERS.glob("*/Dockerfile") if p.parent.name not in NOT_PEERS)


def engine(timeout: int = 120) -> docker.DockerClient:
    """A client for the Docker engine ($DOCKER_HOST or the local socket); LabError if none answers."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "the local socket /var/run/docker.sock")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise LabError(f"no Docker engine answers at {where} ({type(exc).__name__}: {str(exc)[:200]})",
                       hint="start the engine (systemctl start docker), set DOCKER_HOST, or use --runtime uml") \
            from None
    return client


def engine_answers() -> bool:
    try:
        engine().close()
    except LabError:
        return False
    return True


def _hash(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def base_tag() -> str:
    return f"{BASE_REPO}:{_hash(BUILDER_VERSION, SUITE, 'mmdebstrap --variant=apt')}"


def image_tag(impl: str) -> str:
    """``ipseclab/<impl>:<hash of every input>``."""
    folder = CONTAINERS / impl
    if not (folder / "Dockerfile").exists():
        packages(impl)  # names the known implementations in its error
        raise LabError(f"no Dockerfile for {impl!r} in {folder}")
    common = sorted((CONTAINERS / "common").iterdir())
    inputs: list[str | bytes] = [base_tag(), (folder / "Dockerfile").read_bytes(), "\n".join(packages(impl))]
    inputs += [p.name + ":" + p.read_text() for p in common if p.is_file()]
    return f"ipseclab/{impl}:{_hash(BUILDER_VERSION, *inputs)}"


def _exists(client: docker.DockerClient, tag: str) -> bool:
    from docker.errors import ImageNotFound

    with engine_errors(f"looking up {tag}"):
        try:
            client.images.get(tag)
        except ImageNotFound:
            return False
    return True


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Anything the engine or its connection raises while doing ``what``, as one LabError line."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        yield
    except (DockerException, RequestException) as exc:
        raise LabError(f"{what} failed: {type(exc).__name__}: {str(exc)[:300]}",
                       hint="check the Docker engine (docker info); ipseclab images list shows ipseclab's") from None


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """One build of ``name`` at a time on this machine (two labs starting at once wait for each other)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".docker-{name.replace('/', '_').replace(':', '_')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_base(client: docker.DockerClient, log_dir: Path | None = None) -> str:
    """The base image: found by its tag, or made now (mmdebstrap to a tarball, imported with a label)."""
    tag = base_tag()
    if _exists(client, tag):
        return tag
    require_tool("mmdebstrap")
    with build_lock(tag), tempfile.TemporaryDirectory(prefix="ipseclab-base-") as tmp:
        if _exists(client, tag):  # built by another run while this one waited
            return tag
        tarball = Path(tmp) / "base.tar"
        proc = run(["mmdebstrap", "--variant=apt", SUITE, str(tarball)], timeout=600, check=False)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / "image-bookworm-base.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise LabError("building the base root filesystem with mmdebstrap failed",
                           command=["mmdebstrap", "--variant=apt", SUITE, str(tarball)],
                           output=proc.stdout + proc.stderr,
                           hint="check that Debian's package mirrors are reachable (apt-get update works)")
        repository, _, version = tag.partition(":")
        with engine_errors(f"importing {tag}"):
            client.api.import_image_from_file(str(tarball), repository=repository, tag=version,
                                              changes=[f"LABEL {LABEL}=1 {LABEL}.role=base"])
    return tag


@dataclass(frozen=True, slots=True)
class DockerImage:
    impl: str
    tag: str
    built_in: float  # seconds; 0.0 when the tag was already there


def build(impl: str, log_dir: Path | None = None, client: docker.DockerClient | None = None) -> DockerImage:
    """The image of ``impl``: found by its tag, or built now on the base (which is made first if missing)."""
    client = client or engine()
    tag = image_tag(impl)
    if _exists(client, tag):
        return DockerImage(impl, tag, 0.0)
    started = time.monotonic()
    base = build_base(client, log_dir)
    with build_lock(tag):
        if _exists(client, tag):  # built by another run while this one waited
            return DockerImage(impl, tag, 0.0)
        _build(client, impl, tag, base, log_dir)
    return DockerImage(impl, tag, time.monotonic() - started)


def _build(client: docker.DockerClient, impl: str, tag: str, base: str, log_dir: Path | None) -> None:
    from docker.errors import BuildError, DockerException

    log: list[str] = []
    try:
        _, stream = client.images.build(
            path=str(CONTAINERS), dockerfile=f"{impl}/Dockerfile", tag=tag, buildargs={"BASE": base},
            labels={LABEL: "1", f"{LABEL}.role": "peer", f"{LABEL}.impl": impl}, rm=True, forcerm=True,
            network_mode="host", timeout=900)
        log = [str(chunk.get("stream", chunk.get("status", ""))) for chunk in stream]
    except BuildError as exc:
        log = [str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log]
        raise LabError(f"building the {impl} docker image failed: {exc.msg}", output="".join(log)[-3000:],
                       hint=f"see {CONTAINERS / impl / 'Dockerfile'}; Debian's mirrors must be reachable") from None
    except DockerException as exc:
        raise LabError(f"building the {impl} docker image failed: {exc}") from None
    finally:
        if log_dir is not None and log:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"docker-image-{impl}.log").write_text("".join(log))


def listed(client: docker.DockerClient | None = None) -> list[dict[str, Any]]:
    """ipseclab's images: tag, role, size, created, and whether the current inputs still name it."""
    client = client or engine()
    current = {base_tag()} | {image_tag(i) for i in image_names()}
    out = []
    with engine_errors("listing ipseclab's images"):
        images = client.images.list(filters={"label": f"{LABEL}=1"})
    for image in images:
        labels = image.labels or {}
        for tag in image.tags or [f"<untagged {image.short_id}>"]:
            out.append({"tag": tag, "id": image.short_id, "role": labels.get(f"{LABEL}.role", "?"),
                        "size_mb": round(image.attrs.get("Size", 0) / 1e6), "created": image.attrs.get("Created", ""),
                        "current": tag in current})
    return sorted(out, key=lambda r: r["tag"])


def prune(everything: bool = False, client: docker.DockerClient | None = None) -> tuple[list[str], list[str]]:
    """Remove ipseclab's images whose inputs changed (all of them with ``everything``).

    Returns (removed, kept): an image a container still uses (a running lab's) is kept.
    """
    from docker.errors import APIError

    client = client or engine()
    removed, kept = [], []
    for row in listed(client):
        if not (everything or not row["current"]):
            continue
        with engine_errors(f"removing {row['tag']}"):
            try:
                client.images.remove(row["tag"] if not row["tag"].startswith("<") else row["id"])
            except APIError as exc:
                if exc.status_code != 409:  # 409: in use by a container
                    raise
                kept.append(row["tag"])
                continue
        removed.append(row["tag"])
    return removed, kept

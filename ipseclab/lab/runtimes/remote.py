"""The matrix on a remote Docker engine (``DOCKER_HOST=tcp://...`` or ``ssh://...``): the lab runs over there.

A lab is more than its containers: it names the containers' network namespaces (``ip netns attach``),
wires veths and a NAT router between them, captures on those veths and bind-mounts run directories
and the UML kernel into the peers.  All of that needs the engine's own machine, so with a remote engine
``ipseclab interop`` does not drive the lab from here.  It ships itself there instead:

1. The peer images are built on the remote engine as for a local one (``docker_images``: the base
   root filesystem is made here with mmdebstrap and imported; the Dockerfiles build there).
2. A **runner image** (``containers/runner/``) is built there too: Debian with the lab's tools
   (iproute2, nftables, tcpdump, tshark, patchelf), ipseclab's dependencies as wheels downloaded here
   (the remote machine needs Debian's mirror, as for the peer images, but not PyPI), and this
   ipseclab's own source (the package, the test cases, ``containers/``).
3. One **runner container** is the lab's host on that machine (``RUNNER_CAPABILITIES``: it creates
   namespaces and veths, names other containers' namespaces, mounts), the engine's socket mounted (it starts the
   peer containers as siblings, as a local run does), no network of its own (``network_mode=none``: the
   lab's traffic stays in the namespaces it creates), and ``/var/lib/ipseclab-remote`` mounted at the
   same path, so that the directories it bind-mounts into peers name the same files on the host (the
   UML kernel cache and the run directories).  Every container is labelled ``ipseclab=1``; the peers
   the runner starts also carry ``ipseclab.parent=<this run>`` so that this side can sweep them.
4. ``ipseclab interop --runtime docker`` runs in the runner with the same cases, pairs and shard; its
   output streams here; afterwards the whole output directory (results, pcaps, key files, logs) is
   copied back into the local ``--out`` and the remote copy is removed.  Paths in the results name the
   local copies.  Ctrl-C here interrupts the remote run (which tears its lab down) before the copy.

A Lab object in this process (the pytest plugin's fixtures) still needs a local engine: that is
``choose_runtime``'s one-line refusal.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import LabError
from ..images import CONTAINERS, cache_root
from .docker_images import BUILDER_VERSION, LABEL, build, build_base, engine, engine_errors, image_names

if TYPE_CHECKING:
    import docker

REMOTE_ROOT = "/var/lib/ipseclab-remote"  # on the engine's machine, mounted at the same path in the runner
RUNNER = "runner"  # containers/runner/: not a peer image
RUNNER_REPO = "ipseclab/runner"
PARENT_ENV = "IPSECLAB_PARENT_RUN"  # read by runtimes.docker.run_labels: the peers a runner starts carry it
PARENT_LABEL = f"{LABEL}.parent"
PIDFILE = "/tmp/ipseclab-interop.pid"  # in the runner's own filesystem: the remote interop's pid, for interrupt()
# the runner is the lab's host: namespaces and mounts (SYS_ADMIN), links, addresses, nftables (NET_ADMIN), raw
# sockets and captures (NET_RAW), and naming the peer containers' namespaces (SYS_PTRACE, with the host's PIDs);
# not --privileged, which also needs capabilities an engine in a sandbox may not have
RUNNER_CAPABILITIES = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"]
# and, as on the lab's own machine: mounts and namespaces need the default AppArmor/seccomp profiles lifted, and
# the per-namespace sysctls (IPv6 off on the links, forwarding on the NAT router) a writable /proc/sys
RUNNER_SECURITY = ["apparmor=unconfined", "seccomp=unconfined"]  # and /proc unmasked: RemoteRun.start


def remote_engine(docker_host: str | None = None) -> str | None:
    """``$DOCKER_HOST`` when it names an engine on another machine (anything but a unix socket), else None."""
    value = os.environ.get("DOCKER_HOST", "") if docker_host is None else docker_host
    if not value or value.startswith(("unix://", "npipe://")):
        return None
    return value


def _requirements() -> list[str]:
    """ipseclab's runtime requirements (the extras left out), pinned to the versions installed here, so the
    runner runs what this machine tested."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    try:
        reqs = [r.split(";")[0].strip() for r in requires("ipseclab") or [] if "extra ==" not in r]
        names = [re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0] for r in reqs]
        return sorted(f"{name}=={version(name)}" for name in names)
    except PackageNotFoundError as exc:
        raise LabError(f"package metadata is missing ({exc}), so the remote runner's dependencies are unknown",
                       hint="install ipseclab with its dependencies (make setup) in this environment") from None


def wheels(log: Callable[[str], None] = print) -> Path:
    """ipseclab's dependencies as CPython 3.11 x86-64 wheels (the runner's Python), downloaded once into the cache.

    Downloaded here rather than on the remote machine so that the remote engine needs Debian's mirror
    (as the peer images do) but not PyPI.
    """
    reqs = _requirements()
    key = hashlib.sha256("\n".join([BUILDER_VERSION, *reqs]).encode()).hexdigest()[:16]
    dest = cache_root() / "wheels" / key
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    log(f"remote: downloading ipseclab's dependencies as wheels for the runner ({', '.join(reqs)})")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
           "--python-version", "3.11", "--implementation", "cp", *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise LabError("downloading ipseclab's dependencies for the remote runner failed", command=cmd,
                       output=proc.stdout + proc.stderr, hint="pip must reach PyPI (or its mirror) from this machine")
    (dest / ".complete").write_text("\n".join(reqs) + "\n")
    return dest


def _source_dirs() -> list[tuple[str, Path]]:
    """(where under src/, directory) for what the runner imports and reads: the package, the cases, containers/."""
    import ipseclab

    package = Path(ipseclab.__file__).resolve().parent
    out = [("ipseclab", package)]
    cases_module = None
    for name in ("ipseclab.testcases", "testcases"):
        with contextlib.suppress(ImportError):
            cases_module = importlib.import_module(name)
            break
    if cases_module is None or cases_module.__file__ is None:
        raise LabError("the test cases (testcases) cannot be imported, so they cannot be shipped to the runner")
    cases = Path(cases_module.__file__).resolve().parent
    if not cases.is_relative_to(package):
        out.append((cases_module.__name__.replace(".", "/"), cases))
    if not (CONTAINERS / RUNNER / "Dockerfile").exists():
        raise LabError(f"no {CONTAINERS / RUNNER / 'Dockerfile'}: this ipseclab has no containers/ folder",
                       hint="run ipseclab from a checkout of its repository for a remote engine")
    out.append(("containers", CONTAINERS))
    return out


def _add_tree(tar: tarfile.TarFile, src: Path, arcname: str, digest: Any) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        name = f"{arcname}/{rel.as_posix()}"
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), path.stat().st_mode & 0o755, 0
        tar.addfile(info, io.BytesIO(data))


def runner_context(wheel_dir: Path) -> tuple[bytes, str]:
    """The runner's build context (a tar) and its tag, ``ipseclab/runner:<hash of every input>``."""
    from .docker_images import base_tag

    digest = hashlib.sha256(f"{BUILDER_VERSION}\0{base_tag()}\0".encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_tree(tar, CONTAINERS / RUNNER, "runner", digest)
        _add_tree(tar, wheel_dir, "wheels", digest)
        for where, directory in _source_dirs():
            _add_tree(tar, directory, f"src/{where}", digest)
    return buf.getvalue(), f"{RUNNER_REPO}:{digest.hexdigest()[:16]}"


def build_runner(client: docker.DockerClient, log_dir: Path, log: Callable[[str], None] = print) -> str:
    """The runner image on the remote engine: found by its tag or built (layers cached by the engine)."""
    from docker.errors import BuildError, ImageNotFound

    context, tag = runner_context(wheels(log))
    with engine_errors(f"looking up {tag}"), contextlib.suppress(ImageNotFound):
        client.images.get(tag)
        return tag
    base = build_base(client, log_dir)
    log(f"remote: building the runner image {tag} on the engine")
    lines: list[str] = []
    try:
        with engine_errors(f"building {tag}"):
            _, stream = client.images.build(
                fileobj=io.BytesIO(context), custom_context=True, dockerfile="runner/Dockerfile", tag=tag,
                buildargs={"BASE": base}, labels={LABEL: "1", f"{LABEL}.role": RUNNER}, rm=True, forcerm=True,
                network_mode="host", timeout=1200)
            lines = [str(c.get("stream", c.get("status", ""))) for c in stream]
    except BuildError as exc:
        lines = [str(c.get("stream", c.get("error", ""))) for c in exc.build_log]
        raise LabError(f"building the runner image failed: {exc.msg}", output="".join(lines)[-3000:],
                       hint=f"see {CONTAINERS / RUNNER / 'Dockerfile'}; the engine's machine must reach Debian's "
                            "mirrors") from None
    finally:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "docker-image-runner.log").write_text("".join(lines))
    return tag


@dataclass
class RemoteRun:
    """One ``ipseclab interop`` on a remote engine: the runner container, its output, and their removal."""

    client: docker.DockerClient
    run_id: str
    container: Any = None

    @property
    def remote_dir(self) -> str:
        return f"{REMOTE_ROOT}/runs/{self.run_id}"

    def start(self, tag: str) -> None:
        from docker.errors import APIError

        api = self.client.api
        name = f"ipseclab-runner-{self.run_id}"
        try:
            host_config = api.create_host_config(
                pid_mode="host", network_mode="none", cap_add=RUNNER_CAPABILITIES, security_opt=RUNNER_SECURITY,
                devices=["/dev/net/tun:/dev/net/tun:rwm"],
                binds={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                       REMOTE_ROOT: {"bind": REMOTE_ROOT, "mode": "rw"}},
                tmpfs={"/dev/shm": "rw,exec,size=1g", "/run": "rw,exec"})
            # what `docker run --security-opt systempaths=unconfined` sends (the SDK has no parameter for it):
            # nothing masked, nothing read-only in /proc, so the lab can set its links' sysctls
            host_config["MaskedPaths"] = []
            host_config["ReadonlyPaths"] = []
            created = api.create_container(
                tag, ["sleep", "infinity"], name=name, hostname="ipseclab-runner", host_config=host_config,
                labels={LABEL: "1", f"{LABEL}.run": self.run_id, f"{LABEL}.role": RUNNER})
            self.container = self.client.containers.get(created["Id"])
            self.container.start()
        except APIError as exc:
            # a container that was created but failed to start exists and must go too
            with contextlib.suppress(APIError):
                self.client.containers.get(name).remove(force=True)
            self.container = None
            raise LabError(f"starting the runner container on the remote engine failed: {exc.explanation}",
                           hint=f"the engine must allow the capabilities {', '.join(RUNNER_CAPABILITIES)}, the host's "
                                f"PID namespace and bind mounts of /var/run/docker.sock and {REMOTE_ROOT}") from None

    def exec(self, cmd: list[str], out: Callable[[bytes], None] | None = None,
             env: dict[str, str] | None = None) -> int:
        """Run ``cmd`` in the runner, streaming its output to ``out``; its exit status."""
        api = self.client.api
        with engine_errors(f"running {cmd[0]} in the runner"):
            exec_id = api.exec_create(self.container.id, cmd, environment=env or {}, stdout=True, stderr=True)
            for chunk in api.exec_start(exec_id, stream=True):
                if out is not None:
                    out(chunk)
            return int(api.exec_inspect(exec_id).get("ExitCode") or 0)

    def ship_kernel(self, kernels: str, log: Callable[[str], None]) -> None:
        """This machine's UML kernel into the remote cache, once per version (the runner has no network,
        and the kernel this machine probed is the one to run); the peers' containers bind-mount it there."""
        from .uml_kernel import install_kernel, installed_kernels

        local = installed_kernels() or [install_kernel()]
        kernel = local[0]
        if kernel.install_dir is None:
            raise LabError(f"the UML kernel here ({kernel.describe()}) is not in ipseclab's cache, so it cannot be "
                           "shipped to the remote engine", hint="run `ipseclab kernel install` (root) first")
        target = f"{kernels}/{kernel.install_dir.name}"
        if self.exec(["test", "-x", f"{target}/usr/bin/linux.uml"]) == 0:
            return
        log(f"remote: copying the UML kernel {kernel.install_dir.name} to the engine's machine (once)")
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w") as tar:
                tar.add(kernel.install_dir, arcname=kernel.install_dir.name)
            tmp.seek(0)
            with engine_errors("copying the UML kernel to the runner"):
                if not self.container.put_archive(kernels, tmp):
                    raise LabError("the engine refused the UML kernel's archive")
        relocate = ("from pathlib import Path; from ipseclab.lab.runtimes.uml_kernel import relocate_kernel; "
                    f"print('remote: kernel', relocate_kernel(Path({target!r})).describe())")
        if self.exec(["python3", "-c", relocate], lambda b: log(b.decode(errors="replace").rstrip())) != 0:
            raise LabError(f"the UML kernel copied to {target} on the engine's machine could not be set up there")

    def interrupt(self, wait: float = 90) -> None:
        """SIGINT to the remote ipseclab, which stops the matrix and tears its lab down (LabInterrupted); waits
        (bounded) until it has, so the runner is not removed under a teardown in progress."""
        with contextlib.suppress(LabError):
            # by its pid file, never by name: the runner sees the host's processes (pid_mode=host), so a pattern
            # would also hit other users' ipseclab runs on that machine
            self.exec(["sh", "-c", f"kill -INT $(cat {PIDFILE})"])
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.exec(["sh", "-c", f"kill -0 $(cat {PIDFILE})"]) == 0:
                time.sleep(0.5)

    def fetch(self, local: Path) -> None:
        """Copy the remote output directory into ``local`` (its contents, not the directory itself)."""
        local.mkdir(parents=True, exist_ok=True)
        with engine_errors("copying the run's output back"), tempfile.TemporaryFile() as tmp:
            stream, _ = self.container.get_archive(f"{self.remote_dir}/out")
            for chunk in stream:
                tmp.write(chunk)
            tmp.seek(0)
            with tarfile.open(fileobj=tmp) as tar:
                for member in tar.getmembers():
                    parts = Path(member.name).parts
                    member.name = str(Path(*parts[1:])) if len(parts) > 1 else "."
                tar.extractall(local, members=[m for m in tar.getmembers() if m.name != "."], filter="data")
        _relocate(local, f"{self.remote_dir}/out", str(local))

    def remove(self) -> list[str]:
        """Remove the remote copy, the runner, and any peer container the runner left; the names removed."""
        from .docker import remove_container

        if self.container is not None:
            with contextlib.suppress(LabError):
                self.exec(["rm", "-rf", self.remote_dir])
            remove_container(self.container)
        left = []
        with contextlib.suppress(LabError), engine_errors("sweeping the runner's peers"):
            for c in self.client.containers.list(all=True, filters={"label": f"{PARENT_LABEL}={self.run_id}"}):
                left.append(c.name)
                remove_container(c)
        return left


def _relocate(local: Path, remote: str, here: str) -> None:
    """Results name the runner's paths; make them name the local copies."""
    for name in ("results.json", "results.md", "results.xml"):
        path = local / name
        if path.exists():
            path.write_text(path.read_text().replace(remote, here))


def _check_arch(client: docker.DockerClient) -> None:
    with engine_errors("asking the engine what it runs on"):
        info = client.info()
    arch = str(info.get("Architecture", ""))
    if arch not in ("x86_64", "amd64"):
        raise LabError(f"the remote engine runs on {arch or 'an unknown architecture'}; the runner's wheels and "
                       "the UML kernel are x86-64 only", hint="use an x86-64 machine's engine")


def run_interop(forwarded: list[str], out: Path, junit: Path | None,
                write: Callable[[bytes], None] | None = None, log: Callable[[str], None] = print) -> int:
    """``ipseclab interop ARGS`` on the remote engine's machine; the results and artifacts land in ``out``."""
    write = write or _write_stdout
    where = remote_engine()
    client = engine()
    _check_arch(client)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    log(f"remote: engine {where}; the lab runs there in runner container ipseclab-runner-{run_id}")
    logs = out / "remote"
    for impl in image_names():
        if impl != RUNNER:
            image = build(impl, logs, client)
            if image.built_in:
                log(f"remote: built {image.tag} in {image.built_in:.1f} s")
    tag = build_runner(client, logs, log)
    run = RemoteRun(client, run_id)
    status = 1
    try:
        run.start(tag)
        cache = f"{REMOTE_ROOT}/cache"
        env = {"IPSECLAB_CACHE": cache, PARENT_ENV: run_id, "PYTHONUNBUFFERED": "1"}
        run.exec(["mkdir", "-p", run.remote_dir, f"{cache}/kernels"])
        run.ship_kernel(f"{cache}/kernels", log)
        cmd = ["sh", "-c", f'echo $$ > {PIDFILE} && exec "$@"', "interop",
               "python3", "-m", "ipseclab.cli", "interop", "--runtime", "docker", "--out", f"{run.remote_dir}/out",
               *forwarded]
        try:
            with _sigterm_interrupts():
                status = run.exec(cmd, write, env)
        except KeyboardInterrupt:
            log("remote: interrupted; stopping the remote run (it tears its lab down)")
            run.interrupt()
            status = 130
        run.fetch(out)
        if junit is not None and (out / "results.xml").exists():
            junit.write_text((out / "results.xml").read_text())
        log(f"remote: the run's results, pcaps, keys and logs are in {out}")
    finally:
        left = run.remove()
        if left:
            log(f"remote: removed containers the runner left: {', '.join(left)}")
    return status


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM here stops the remote run as Ctrl-C does (a CI job's cancel sends SIGTERM)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()

"""Peers as containers: the ``docker`` runtime's kernel peers (UML inside) and userspace-IPsec peers.

The container is made from ``ipseclab/<impl>:<hash>`` (``runtimes.docker_images``) with no network of
Docker's (``network_mode=none``): the lab gives the container's network namespace the side's
name (``ip netns attach``), so the topology's veth end lands inside it exactly as it lands in
the UML runtime's namespace, captures and addresses unchanged.  Inside, ``/ipl/launch.sh``
waits for that interface and execs the UML kernel with the container's own root as the guest's
root (hostfs), so the guest's writes stay in the container's layer.  The kernel binary and its
modules are bind-mounted read-only from the host's cache; ``/dev/shm`` is an executable tmpfs
(UML maps its memory file there; Docker's default is noexec).

Why UML inside the container: a kernel without ESP/AH (these machines') cannot install a kernel
peer's SAs.  Where the host kernel has them (``host_ipsec.py`` tries it each run), a kernel peer's
container runs its daemon on the host kernel directly instead (``uml=False``); ``lab.json`` says
which was used and why (``runtime.kernel_ipsec``, the probes' lines).

A peer whose IPsec is in userspace (``placement = "container"``: strongSwan's kernel-libipsec)
needs no kernel of its own: its container runs ``/ipl/init.sh`` on the host kernel directly,
with ``/dev/net/tun`` for the daemon's TUN device, in any runtime.

Either way the peer is driven through the same ``/ipl`` spool as a UML guest (``UmlHost.exec``);
the container's output (the UML console) is streamed into ``console.log``.  Every container is
labelled ``ipseclab=1``, ``ipseclab.run=<run id>`` and removed on every teardown path
(``cleanup.sweep`` finds them by label).  Capabilities: all dropped but NET_ADMIN and NET_RAW
(and NET_BIND_SERVICE for a daemon on the host kernel, which binds UDP 500 itself).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import LabError
from .docker_images import LABEL, engine
from .uml import UmlHost

IPL = Path("/ipl")
CAPABILITIES = ["NET_ADMIN", "NET_RAW"]
DAEMON_CAPABILITIES = [*CAPABILITIES, "NET_BIND_SERVICE"]  # an IKE daemon on the host kernel binds UDP 500

LAUNCH = """# written by ipseclab.lab.runtimes.docker: wait for the lab's veth end, then boot the peer's kernel
i=0
while ! ip -o link show dev {ifname} >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 600 ] && {{ echo "ipseclab: interface {ifname} never arrived in the container"; exit 3; }}
  sleep 0.05
done
exec {command}
"""


def run_labels(run_id: str, side: str = "") -> dict[str, str]:
    labels = {LABEL: "1", f"{LABEL}.run": run_id}
    if side:
        labels[f"{LABEL}.side"] = side
    parent = os.environ.get("IPSECLAB_PARENT_RUN")  # set by a remote run's runner (runtimes/remote.py)
    if parent:
        labels[f"{LABEL}.parent"] = parent
    return labels


@dataclass(slots=True)
class ContainerHost(UmlHost):
    """A peer in a container of its docker image: UML inside (``uml``) or the daemon on the host kernel."""

    tag: str = ""
    run_id: str = ""
    uml: bool = True
    container: Any = None
    _logs: threading.Thread | None = field(default=None)
    _status: int | None = field(default=None)

    def boot(self, init_script: str) -> None:
        """Start the container (the kernel waits inside for its interface: see :meth:`pid`)."""
        from docker.errors import APIError, ImageNotFound
        from docker.types import Mount

        self.prepare(init_script)
        mounts = [Mount(str(IPL), str(self.dir), type="bind")]
        options: dict[str, Any]
        kernel = self.image.kernel
        if self.uml and kernel is not None:
            command = shlex.join(self.kernel_command(Path("/"), IPL))
            (self.dir / "launch.sh").write_text(LAUNCH.format(ifname=shlex.quote(self.ifname), command=command))
            # a cached kernel brings its own C library in its directory; any other binary uses the image's
            kernel_files = kernel.install_dir or kernel.binary
            mounts += [Mount(str(kernel_files), str(kernel_files), type="bind", read_only=True),
                       Mount(f"/lib/modules/{kernel.version}", str(kernel.modules), type="bind", read_only=True)]
            options = {"tmpfs": {"/dev/shm": "rw,exec,size=1g"},
                       "environment": {"IPSECLAB_START": "launch.sh", "TMPDIR": "/dev/shm"}}
        elif self.uml:
            raise LabError(f"the {self.name} container was asked to boot UML without a kernel")
        else:
            # the daemon itself: its init script waits for the interface as a UML guest's would not need to
            (self.dir / "wait-init.sh").write_text(LAUNCH.format(ifname=shlex.quote(self.ifname),
                                                                command="/bin/sh /ipl/init.sh > /ipl/init.log 2>&1"))
            options = {"devices": ["/dev/net/tun:/dev/net/tun:rwm"], "environment": {"IPSECLAB_START": "wait-init.sh"}}
        caps = CAPABILITIES if self.uml else DAEMON_CAPABILITIES
        client = engine()
        started = time.monotonic()
        try:
            self.container = client.containers.run(
                self.tag, detach=True, name=self.umid, hostname=self.name, network_mode="none",
                cap_drop=["ALL"], cap_add=caps, mounts=mounts, labels=run_labels(self.run_id, self.name),
                **options)
        except ImageNotFound:
            raise LabError(f"docker image {self.tag} is missing", hint="ipseclab images build") from None
        except APIError as exc:
            hint = ("a container of that name exists: `ipseclab lab cleanup` removes ipseclab's leftovers"
                    if exc.status_code == 409 else "see the engine's message above")
            raise LabError(f"starting the {self.name} container ({self.tag}) failed: {exc.explanation}",
                           hint=hint) from None
        self.booted_at = started  # only now: a container that never started is not "alive"
        self._logs = threading.Thread(target=self._stream_logs, name=f"logs-{self.umid}", daemon=True)
        self._logs.start()

    def _stream_logs(self) -> None:
        with contextlib.suppress(Exception), open(self.console_log, "ab") as fh:
            for chunk in self.container.logs(stream=True, follow=True):
                fh.write(chunk)
                fh.flush()

    def pid(self) -> int:
        """The container's init process on the host (its network namespace is the side's)."""
        self.container.reload()
        pid = int(self.container.attrs["State"]["Pid"])
        if not pid:
            status = self.container.attrs["State"].get("ExitCode")
            raise LabError(f"the {self.name} container exited during start (status {status})",
                           output=self.container.logs(tail=20).decode(errors="replace"),
                           hint=f"see {self.console_log}")
        return pid

    def exit_status(self) -> int | None:
        if self._status is not None:
            return self._status
        if self.container is None:
            return None
        from docker.errors import DockerException, NotFound
        from requests import RequestException

        try:
            self.container.reload()
        except NotFound:
            self._status = -1
            return self._status
        except (DockerException, RequestException) as exc:
            raise LabError(f"the Docker engine did not answer about the {self.name} container: {exc}") from None
        state = self.container.attrs["State"]
        if state.get("Running") or state.get("Status") == "created":
            return None
        self._status = int(state.get("ExitCode", -1))
        return self._status

    def halt(self, timeout: float = 10) -> None:
        """Halt a UML guest through the spool, then remove the container whatever state it is in."""
        if self.container is None:
            return
        if self.uml:
            with contextlib.suppress(LabError):
                self.ask_to_halt(timeout)
        remove_container(self.container)
        if self._logs is not None:
            self._logs.join(timeout=2)


def remove_container(container: Any) -> None:
    from docker.errors import DockerException
    from requests import RequestException

    with contextlib.suppress(DockerException, RequestException):
        container.remove(force=True)


def sweep_containers(run_id: str | None = None, dry_run: bool = False) -> list[str]:
    """ipseclab's containers (one run's, or all), removed unless ``dry_run``; [] when no engine answers."""
    import os

    from docker.errors import DockerException

    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return []
    try:
        client = engine(timeout=15)
        label = f"{LABEL}.run={run_id}" if run_id else f"{LABEL}=1"
        found = client.containers.list(all=True, filters={"label": label})
    except (LabError, DockerException):
        return []
    names = [c.name for c in found]
    if not dry_run:
        for c in found:
            remove_container(c)
    return names

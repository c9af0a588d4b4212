"""The ipseclab endpoint as a lab peer: a process in the side's namespace instead of a UML guest.

The endpoint needs no kernel IPsec (its data plane is ipseclab's own), so it runs on the host
kernel inside the namespace the topology made for that side: the namespace's end of the veth gets
the side's transit address, and ``python -m ipseclab.endpoint`` runs there, driven over its
stdin/stdout line protocol (``endpoint/runner.py``).  The lab talks to it only through that
process boundary, so ``lab/`` does not import the engine: the spec is plain JSON.

``EndpointHost`` offers what the lab uses of a ``UmlHost`` (``boot``, ``wait_ready``, ``alive``,
``halt``, ``dir``) plus ``command``; ``IpseclabDriver`` is the peer driver.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LabError
from .keys import StrongswanIkeKeys
from .peerconfig import PeerConfig
from .proc import in_netns, run, stop, tail
from .topology import HostAddressing

SPEC = "endpoint.json"


@dataclass(slots=True)
class EndpointHost:
    """One endpoint process in namespace ``ns``, using ``ifname`` there; logs and keys in ``dir``."""

    name: str
    ns: str
    ifname: str
    addressing: HostAddressing
    dir: Path
    proc: subprocess.Popen[str] | None = None
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    events: list[dict[str, Any]] = field(default_factory=list)
    booted_at: float = 0.0

    def boot(self, init_script: str = "") -> None:
        """Give the namespace's veth end the side's address and start the endpoint (see wait_ready)."""
        from pyroute2 import NetNS

        addr, plen = self.addressing.transit4.split("/")
        with NetNS(self.ns) as nsr:
            index = nsr.link_lookup(ifname=self.ifname)[0]
            nsr.addr("add", index=index, address=addr, prefixlen=int(plen))
        if self.addressing.transit6:  # the topology turned IPv6 off on the veth ends; the endpoint's side needs it
            run(in_netns(self.ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{self.ifname}.disable_ipv6=0"]), timeout=10)
            run(["ip", "-n", self.ns, "-6", "addr", "add", self.addressing.transit6, "dev", self.ifname, "nodad"],
                timeout=10)
        if self.addressing.gateway4:
            with NetNS(self.ns) as nsr:
                nsr.route("add", dst="0.0.0.0/0", gateway=self.addressing.gateway4)
        self.booted_at = time.monotonic()
        cmd = in_netns(self.ns, [sys.executable, "-m", "ipseclab.endpoint", str(self.dir / SPEC)])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     stderr=open(self.dir / "endpoint.stderr", "w"),  # noqa: SIM115
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.dir / "endpoint.stdout", "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    continue

    def _next(self, deadline: float) -> dict[str, Any] | None:
        try:
            msg = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if msg.get("kind") == "event":
            self.events.append(msg)
        return msg

    def wait_ready(self, timeout: float = 20) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next(min(deadline, time.monotonic() + 0.2))
            if msg is not None and msg.get("kind") == "ready":
                return time.monotonic() - self.booted_at
            if not self.alive:
                break
        raise LabError(f"the ipseclab endpoint {self.name} did not start", output=tail(self.dir / "endpoint.stderr"),
                       hint=f"see {self.dir}/endpoint.stderr")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, cmd: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send one command; returns its answer (events that arrive meanwhile are kept in ``events``)."""
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise LabError(f"the ipseclab endpoint {self.name} is not running",
                           output=tail(self.dir / "endpoint.stderr"))
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next(deadline)
            if msg is None:
                break
            if msg.get("kind") == "error":
                raise LabError(f"the ipseclab endpoint refused {cmd['cmd']}: {msg.get('message')}")
            if msg.get("kind") == "answer" and msg.get("cmd") == cmd["cmd"]:
                return msg
        raise LabError(f"no answer from the ipseclab endpoint to {cmd['cmd']} within {timeout:.0f} s",
                       hint=f"see {self.dir}/endpoint.stdout")

    def wait_event(self, types: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """The first event (seen already or arriving) whose type is one of ``types``."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("type") in types:
                    return e
            if time.monotonic() >= deadline:
                raise LabError(f"the ipseclab endpoint reported none of {', '.join(types)} within {timeout:.0f} s",
                               output="\n".join(json.dumps(e) for e in self.events[-5:]),
                               hint=f"see {self.dir}/endpoint.stdout")
            self._next(deadline)

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        raise LabError("the ipseclab endpoint has no shell: use its commands (EndpointHost.command)")

    def halt(self, timeout: float = 5) -> None:
        """Ask the endpoint to quit, then stop it; never raises for a dead process."""
        if self.proc is None:
            return
        if self.alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
            deadline = time.monotonic() + timeout
            while self.alive and time.monotonic() < deadline:
                time.sleep(0.05)
        stop(self.proc, grace=2)


class IpseclabDriver:
    """ipseclab's own endpoint as a peer (see the module docstring)."""

    impl = "ipseclab"
    image: str | None = None
    placement = "process"
    gives_ike_keys = True  # the endpoint writes its own ikev2_decryption_table

    def check_topology(self, kind: str) -> None:
        return None  # direct, and NAT (RFC 7296 2.23 detection, IKE and ESP on UDP 4500)

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        why = []
        if cfg.encap:
            why.append("forced UDP encapsulation (it encapsulates when it detects a NAT)")
        if cfg.local_address.version == 6 and (cfg.protocol == "ah" or cfg.mode == "transport"):
            why.append("AH or transport mode over IPv6 transit")
        if cfg.auth != "psk":
            why.append(f"{cfg.auth} authentication")
        if why:
            raise ConfigError(f"the ipseclab endpoint does not do {', '.join(why)} yet")

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        self.check_supported(cfg)
        local = str(cfg.local_address)
        remote = str(cfg.remote_address) if cfg.remote_address is not None else None
        psk = cfg.psk if isinstance(cfg.psk, str) else cfg.psk.decode()
        esn = "-esn" if cfg.esn else ""
        ike = {
            "local_id": str(cfg.local_id or local),
            "remote_id": str(cfg.remote_id or remote),  # PeerConfig requires remote_id without remote_address
            "psk": psk,
            "ike_proposals": list(cfg.ike_proposals),
            "esp_proposals": [p + esn for p in cfg.esp_proposals],
            "ah_proposals": [p + esn for p in cfg.ah_proposals],
            "protocol": cfg.protocol,
            "local_ts": [str(n) for n in cfg.local_ts] or [f"{local}/32"],
            "remote_ts": [str(n) for n in cfg.remote_ts] or ([f"{remote}/32"] if remote else ["0.0.0.0/0"]),
            "mode": cfg.mode,
            "local_endpoint": [local, 500],
            "remote_endpoint": [remote, 500] if remote else None,
            "fragmentation": cfg.fragmentation != "no",
        }
        spec = {"ike": ike, "local": local, "remote": remote, "initiator": cfg.role == "initiator",
                "out_dir": str(directory)}
        (directory / SPEC).write_text(json.dumps(spec, indent=2) + "\n")

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return ""

    def initiate(self, host: Any, cfg: PeerConfig, timeout: float) -> str:
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        host.command({"cmd": "initiate"})
        event = host.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed"), timeout)
        if event["type"] != "ChildSaEstablished":
            raise LabError(f"the ipseclab endpoint could not establish the SA: {event.get('reason')}",
                           output=json.dumps(event), hint=f"see {host.dir}/events.jsonl")
        return (f"ipseclab: CHILD_SA {event.get('mode')} spi in {event.get('spi_in', 0):#010x} "
                f"out {event.get('spi_out', 0):#010x} established (events in {host.dir}/events.jsonl)")

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # the engine's Child SA is in the data plane before the IKE_AUTH response goes out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # the endpoint writes its own ikev2_decryption_table (see Lab._collect_keys)

"""Peer drivers: how each implementation is configured, started, driven and read inside a lab guest.

A driver writes the peer's configuration into its host directory (seen as ``/ipl`` in the
guest), gives the shell lines that start the daemon at boot, initiates the SA, and reads the
keys the daemon logged.  Sockets and runtime state live on the guest's tmpfs ``/run``
(unix sockets do not work on hostfs); logs and configs live in ``/ipl`` so they survive the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError, LabError
from .endpoint_host import IpseclabDriver
from .keys import StrongswanIkeKeys, parse_charon_log
from .peerconfig import PeerConfig
from .topology import HostAddressing
from .uml import UmlHost

VICI = "/run/charon.vici"
PLUTO_CTL = "/run/pluto/pluto.ctl"

_WAIT_FOR = """i=0; while [ ! -S {path} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
[ -S {path} ] || {{ echo "{what} did not create {path}"; exit 1; }}
"""


def route_lines(cfg: PeerConfig, host: HostAddressing) -> str:
    """Routes for tunnel mode: the remote protected subnets through vec0, from our protected address."""
    if cfg.mode != "tunnel":
        return ""
    via = f" via {host.gateway4}" if host.gateway4 else " dev vec0"
    return "".join(f"ip route add {net}{via} src {host.protected_addr}\n"
                   for net in cfg.remote_ts if net.version == 4)


class PeerDriver(Protocol):
    impl: str

    def check_supported(self, cfg: PeerConfig) -> None: ...

    def check_topology(self, kind: str) -> None: ...

    def write_config(self, cfg: PeerConfig, directory: Path) -> None: ...

    def start_script(self, cfg: PeerConfig, host: HostAddressing) -> str: ...

    def initiate(self, host: Any, cfg: PeerConfig, timeout: float) -> str: ...

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]: ...


class StrongswanDriver:
    """strongSwan 5.9.8: charon in the foreground, controlled with swanctl over vici."""

    impl = "strongswan"

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig) -> None:
        from .render_strongswan import render_strongswan_conf, render_swanctl_conf

        render_strongswan_conf(cfg, vici_socket=VICI, log_path="/ipl/charon.log")
        render_swanctl_conf(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        from .render_strongswan import write_strongswan_config

        write_strongswan_config(cfg, directory, vici_socket=VICI, log_path="/ipl/charon.log")

    def start_script(self, cfg: PeerConfig, host: HostAddressing) -> str:
        return (
            route_lines(cfg, host)
            + "export STRONGSWAN_CONF=/ipl/strongswan.conf\n"
            + "/usr/lib/ipsec/charon > /ipl/charon.stdout 2>&1 &\n"
            + _WAIT_FOR.format(path=VICI, what="charon")
            + f"swanctl --load-all --file /ipl/swanctl.conf --uri unix://{VICI} || exit 1\n"
        )

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        rc, out = host.exec(f"swanctl --initiate --child {cfg.name} --uri unix://{VICI} --timeout {int(timeout)}",
                            timeout=timeout + 10, check=False)
        if rc != 0 or "initiate completed successfully" not in out:
            raise LabError("strongSwan could not establish the SA", command=["swanctl", "--initiate"],
                           output=out, hint=f"see {host.dir}/charon.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        log = directory / "charon.log"
        return parse_charon_log(log.read_text(errors="replace")) if log.exists() else []


class LibreswanDriver:
    """Libreswan 4.10: pluto with its NSS database on the guest's tmpfs, controlled with whack."""

    impl = "libreswan"

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig) -> None:
        from .render_libreswan import render_ipsec_conf, render_ipsec_secrets

        render_ipsec_conf(cfg, log_path="/ipl/pluto.log")
        render_ipsec_secrets(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        from .render_libreswan import write_libreswan_config

        write_libreswan_config(cfg, directory, log_path="/ipl/pluto.log")

    def start_script(self, cfg: PeerConfig, host: HostAddressing) -> str:
        return (
            route_lines(cfg, host)
            + "mkdir -p /run/pluto /run/nss\n"
            + "ipsec initnss --nssdir /run/nss > /ipl/initnss.log 2>&1 || exit 1\n"
            + "/usr/libexec/ipsec/pluto --config /ipl/ipsec.conf --nssdir /run/nss --rundir /run/pluto "
              "--secretsfile /ipl/ipsec.secrets --logfile /ipl/pluto.log || exit 1\n"
            + _WAIT_FOR.format(path=PLUTO_CTL, what="pluto")
            + f"ipsec whack --ctlsocket {PLUTO_CTL} --listen\n"
            + f"ipsec auto --config /ipl/ipsec.conf --ctlsocket {PLUTO_CTL} --add {cfg.name} || exit 1\n"
        )

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        rc, out = host.exec(f"timeout {int(timeout)} ipsec whack --ctlsocket {PLUTO_CTL} --initiate --name {cfg.name}",
                            timeout=timeout + 10, check=False)
        if rc != 0 or ("established Child SA" not in out and "IPsec SA established" not in out):
            raise LabError("Libreswan could not establish the SA", command=["ipsec", "whack", "--initiate"],
                           output=out, hint=f"see {host.dir}/pluto.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # Libreswan's IKE keys: see docs/architecture.md (the strongSwan side supplies them)


_DRIVERS: dict[str, PeerDriver] = {"strongswan": StrongswanDriver(), "libreswan": LibreswanDriver(),
                                   "ipseclab": IpseclabDriver()}


def driver(impl: str) -> PeerDriver:
    try:
        return _DRIVERS[impl]
    except KeyError:
        raise ConfigError(f"unknown implementation {impl!r}; known: {', '.join(_DRIVERS)}") from None

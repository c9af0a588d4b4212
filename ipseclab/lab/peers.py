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


def route_lines(cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
    """Routes for tunnel mode: the remote protected subnets through ``dev``, from our protected address."""
    if cfg.mode != "tunnel":
        return ""
    via = f" via {host.gateway4}" if host.gateway4 else f" dev {dev}"
    return "".join(f"ip route add {net}{via} src {host.protected_addr}\n"
                   for net in cfg.remote_ts if net.version == 4)


class PeerDriver(Protocol):
    """The adapter contract: what the lab needs from an IKEv2 implementation (see docs/architecture.md).

    ``impl`` names it (``--pair``); ``image`` is its folder under ``containers/`` (None: no image);
    ``placement`` says where it runs: ``kernel`` (it needs kernel ESP/AH: a UML guest, or UML in a
    container), ``container`` (userspace IPsec: a container on the host kernel, any runtime) or
    ``process`` (a process in the side's namespace).  ``check_supported`` raises ConfigError naming
    what it cannot do (the cell is then UNSUPPORTED); ``start_script`` gives the shell lines that
    start the daemon (``dev`` is its transit interface) and load the connection; ``initiate``
    raises LabError when the SA does not come up; ``ike_keys`` returns the IKE keys it logged
    (or [] when it cannot: say so in its docstring).
    """

    impl: str
    image: str | None
    placement: str
    gives_ike_keys: bool  # whether ike_keys() can return the IKE SA keys (Wireshark's IKE check needs one side's)

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None: ...

    def check_topology(self, kind: str) -> None: ...

    def write_config(self, cfg: PeerConfig, directory: Path) -> None: ...

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str: ...

    def initiate(self, host: Any, cfg: PeerConfig, timeout: float) -> str: ...

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]: ...

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        """As the responder, return once the Child SA is installed (some answer IKE_AUTH first)."""


class StrongswanDriver:
    """strongSwan 5.9.8: charon in the foreground, controlled with swanctl over vici."""

    impl = "strongswan"
    image: str | None = "strongswan"
    placement = "kernel"
    gives_ike_keys = True  # charon logs them at level 4
    libipsec = False  # kernel-libipsec (userspace ESP through a TUN device) instead of the kernel's XFRM

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        from .render_strongswan import render_strongswan_conf, render_swanctl_conf

        render_strongswan_conf(cfg, vici_socket=VICI, log_path="/ipl/charon.log", libipsec=self.libipsec)
        render_swanctl_conf(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        from .render_strongswan import write_strongswan_config

        write_strongswan_config(cfg, directory, vici_socket=VICI, log_path="/ipl/charon.log", libipsec=self.libipsec)

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return (
            route_lines(cfg, host, dev)
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

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # charon installs the Child SA before it answers IKE_AUTH


class LibreswanDriver:
    """Libreswan 4.10: pluto with its NSS database on the guest's tmpfs, controlled with whack."""

    impl = "libreswan"
    image: str | None = "libreswan"
    placement = "kernel"
    gives_ike_keys = False  # see docs/architecture.md

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        from .render_libreswan import render_ipsec_conf, render_ipsec_secrets

        render_ipsec_conf(cfg, log_path="/ipl/pluto.log")
        render_ipsec_secrets(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        from .render_libreswan import write_libreswan_config

        write_libreswan_config(cfg, directory, log_path="/ipl/pluto.log")

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return (
            route_lines(cfg, host, dev)
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

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # pluto installs the Child SA before it answers IKE_AUTH


class StrongswanLibipsecDriver(StrongswanDriver):
    """strongSwan 5.9.8 with kernel-libipsec: ESP in charon itself, through a TUN device, on any host kernel.

    Built only through the adapter contract (the strongswan image, ``placement = "container"``),
    it shows what another implementation needs.  What 5.9.8's kernel-libipsec cannot do is
    refused, so those cells are UNSUPPORTED with the reason: it does ESP in tunnel mode only, and
    it always encapsulates ESP in UDP (it fakes NAT detection), so a case that promises plain ESP
    between the hosts cannot be met.
    """

    impl = "strongswan-libipsec"
    image = "strongswan"
    placement = "container"
    libipsec = True

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        why = []
        if cfg.protocol != "esp":
            why.append("AH")
        if cfg.mode != "tunnel":
            why.append("transport mode")
        if not cfg.encap and topology != "nat":
            why.append("plain ESP between the hosts (it always encapsulates ESP in UDP)")
        if cfg.esn:
            why.append("ESN")
        if why:
            raise ConfigError(f"strongSwan's kernel-libipsec does not do {', '.join(why)}")
        super().check_supported(cfg, topology)


IKED_SOCK = "/run/iked.sock"


class OpenikedDriver:
    """OpenIKED 7.2 (OpenBSD's iked, Debian's openiked): PF_KEY on Linux, so ``af_key`` in the guest.

    Built only through the adapter contract.  The initiator's policy is ``active`` (iked starts
    the exchange as soon as it runs), so :meth:`initiate` waits for the kernel SAs the
    exchange installs.  It does not log its IKE keys, so the other side must supply them.
    """

    impl = "openiked"
    image: str | None = "openiked"
    placement = "kernel"
    gives_ike_keys = False

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT (iked does NAT-T)

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        from .render_openiked import render_iked_conf

        render_iked_conf(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        from .render_openiked import write_iked_conf

        write_iked_conf(cfg, directory)

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return (
            route_lines(cfg, host, dev)
            + "modprobe af_key || exit 1\n"
            + "mkdir -p /var/lib/openiked/empty /run\n"
            # -d: foreground, log to stderr; -vv: exchanges and SAs in the log
            + f"iked -d -vv -f /ipl/iked.conf -s {IKED_SOCK} > /ipl/iked.log 2>&1 &\n"
            + _WAIT_FOR.format(path=IKED_SOCK, what="iked")
            # the control socket comes before the configuration is loaded; an exchange that starts
            # earlier is freed by the load ("sa_free: reload"): wait for its last line
            + "i=0; while ! grep -q 'config_getstatic: .*stickyaddress' /ipl/iked.log && [ $i -lt 200 ]; "
              "do sleep 0.05; i=$((i+1)); done\n"
        )

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        # the active policy initiates by itself: wait for both SAs of the Child SA in the kernel
        return self._child_sas(host, timeout)

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        self._child_sas(host, timeout)  # iked answers IKE_AUTH, then installs the Child SA

    def _child_sas(self, host: UmlHost, timeout: float) -> str:
        """Wait for both SAs of the Child SA in the guest's kernel; LabError if they do not come."""
        script = (f"i=0; while [ $(ip xfrm state | grep -c '^src') -lt 2 ] && [ $i -lt {int(timeout * 10)} ]; "
                  "do sleep 0.1; i=$((i+1)); done; ip xfrm state | grep -c '^src'; "
                  f"ikectl -s {IKED_SOCK} show sa 2>&1 | head -20")
        rc, out = host.exec(script, timeout=timeout + 10, check=False)
        count = out.strip().splitlines()[0] if out.strip() else "0"
        if rc != 0 or not count.isdigit() or int(count) < 2:
            raise LabError("OpenIKED could not establish the SA", command=["iked (active policy)"], output=out,
                           hint=f"see {host.dir}/iked.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # iked does not log its IKE SA keys


_DRIVERS: dict[str, PeerDriver] = {}


def register(drv: PeerDriver) -> None:
    """Add an implementation to the lab (``--pair NAME:...``); see :class:`PeerDriver` for the contract."""
    if drv.placement not in ("kernel", "container", "process"):
        raise ConfigError(f"{drv.impl}: placement must be kernel, container or process, not {drv.placement!r}")
    if drv.placement != "process" and not drv.image:
        raise ConfigError(f"{drv.impl}: a {drv.placement} peer needs an image (a folder under containers/)")
    _DRIVERS[drv.impl] = drv


for _drv in (StrongswanDriver(), LibreswanDriver(), IpseclabDriver(), StrongswanLibipsecDriver(), OpenikedDriver()):
    register(_drv)


def implementations() -> list[str]:
    return list(_DRIVERS)


def driver(impl: str) -> PeerDriver:
    try:
        return _DRIVERS[impl]
    except KeyError:
        raise ConfigError(f"unknown implementation {impl!r}; known: {', '.join(_DRIVERS)}") from None

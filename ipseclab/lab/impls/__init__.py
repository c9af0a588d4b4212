"""The implementations the lab knows, by the name ``--pair`` uses: the registry of peer drivers.

Each implementation lives in one module here (``strongswan.py``: renderer, drivers for charon with
kernel IPsec and with kernel-libipsec, and the charon log reader for its IKE keys; ``libreswan.py``;
``openiked.py``; ``ipseclab.py``: our own endpoint as a peer), with its image in
``containers/<image>/``.  The contract every driver meets is :class:`.contract.PeerDriver`.  To
add one: write its module (or your own package), then :func:`register` an instance.
"""

from __future__ import annotations

from ...errors import ConfigError
from .contract import PLACEMENTS, PeerDriver
from .ipseclab import IpseclabDriver
from .libreswan import LibreswanDriver
from .openiked import OpenikedDriver
from .strongswan import StrongswanDriver, StrongswanLibipsecDriver

_DRIVERS: dict[str, PeerDriver] = {}


def register(drv: PeerDriver) -> None:
    """Add an implementation to the lab (``--pair NAME:...``); see :class:`PeerDriver` for the contract."""
    if drv.placement not in PLACEMENTS:
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


__all__ = ["PeerDriver", "driver", "implementations", "register"]

"""Start a packet lab against live peers from a REPL (or a test): ``start(case, initiator, responder)``.

::

    >>> from ipseclab.repl import start
    >>> lab = start("esp-tunnel", initiator="strongswan", responder="libreswan")
    >>> lab.initiate("left"); lab.ping("left")       # the daemons negotiate and carry traffic
    >>> lab.sas("right"), lab.counters("right")      # the kernel's SAs as EspSA objects, its counters
    >>> lab.send(pkt, side="left"); lab.sniff("esp", timeout=2)
    >>> lab.down()                                   # or leave the REPL: every lab started here is torn down

The verbs are :class:`~ipseclab.lab.live.LiveLab`'s (see its module docstring); this module turns what a
person types (a case name, or two :class:`~ipseclab.lab.peerconfig.PeerConfig`) into a lab
specification, once for the REPL and for the pytest plugin's ``ipseclab_lab`` fixture alike.
"""

from __future__ import annotations

import atexit
import sys
import weakref
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnsupportedError
from .lab.lab import LabSpec
from .lab.live import LiveIkeSa, LiveLab, Mark, PeerCounters, sa_from_xfrm
from .lab.peerconfig import PeerConfig

TOPOLOGIES = ("direct", "nat")
_STARTED: weakref.WeakSet[LiveLab] = weakref.WeakSet()


def lab_spec(case: Any, initiator: str = "strongswan", responder: str = "libreswan", runtime: str = "",
             topology: str | None = None, *, need_ike_keys: bool = False) -> LabSpec:
    """The lab for a test case (an object or its name) or a pair of PeerConfig (initiator's, responder's).

    ConfigError names a bad argument (an unknown case or implementation, a topology the case does not
    declare); UnsupportedError gives the drivers' reason when they cannot do it.  ``need_ike_keys``: also
    refuse a pair where neither side gives its IKE keys (a case's trace check needs them).
    """
    from .interop import case_configs, unsupported_reason
    from .lab.impls import driver
    from .lab.topology import make_topology
    from .testcases import by_name
    from .testcases.base import TestCase

    for impl in (initiator, responder):
        driver(impl)  # ConfigError naming the known implementations
    if isinstance(case, str):
        case = by_name(case)
    if isinstance(case, TestCase):
        if topology is not None and topology != case.topology:
            raise ConfigError(f"case {case.name} declares the {case.topology} topology, not {topology}")
        why = unsupported_reason(case, initiator, responder, ike_keys=need_ike_keys)
        if why:
            raise UnsupportedError(why)
        left, right = case_configs(case, make_topology(case.topology, "probe"))
        return LabSpec(left, right, case.topology, initiator, responder, runtime)
    if isinstance(case, tuple) and len(case) == 2 and all(isinstance(c, PeerConfig) for c in case):
        topo = topology or "direct"
        if topo not in TOPOLOGIES:
            raise ConfigError(f"topology {topo!r}: use {' or '.join(TOPOLOGIES)}")
        left, right = case
        for impl, cfg in ((initiator, left), (responder, right)):
            try:
                driver(impl).check_topology(topo)
                driver(impl).check_supported(cfg, topo)
            except UnsupportedError:
                raise
            except ConfigError as exc:
                raise UnsupportedError(str(exc)) from None
        return LabSpec(left, right, topo, initiator, responder, runtime)
    raise ConfigError("give a test case, its name, or a pair of PeerConfig (initiator's, responder's), "
                      f"not {type(case).__name__}")


def start(case: Any, initiator: str = "strongswan", responder: str = "libreswan", *, runtime: str = "",
          topology: str | None = None, run_dir: Path | str | None = None) -> LiveLab:
    """Boot a lab and return it up (the daemons loaded, nothing negotiated yet): see the module docstring.

    ``case`` is a test case's name (``ipseclab interop --list``), a case, or a pair of PeerConfig;
    ``runtime`` as ``--runtime``; ``run_dir`` keeps the pcaps, key files and logs (default ``runs/...``
    under the current directory).  The lab is torn down by ``lab.down()``, by ``with lab:``, and when
    the interpreter exits.
    """
    spec = lab_spec(case, initiator, responder, runtime, topology)
    lab = LiveLab(spec, run_dir=Path(run_dir) if run_dir else None)
    lab.interactive = hasattr(sys, "ps1") or bool(sys.flags.interactive)  # Ctrl-C at a prompt keeps the lab up
    try:
        lab.up()
    except BaseException:
        lab.down()
        raise
    _STARTED.add(lab)
    return lab


@atexit.register
def _down_all() -> None:
    for lab in list(_STARTED):
        lab.down()


__all__ = ["LiveIkeSa", "LiveLab", "Mark", "PeerCounters", "lab_spec", "sa_from_xfrm", "start"]

"""The sans-I/O IKEv2 engine: ``IkeConnection`` takes datagrams and ``now``, gives datagrams and events.

No sockets, no clock, no subprocesses here (see docs/architecture.md); ``endpoint/`` drives it.
"""

from . import loopback
from .config import IkeConfig, identity
from .connection import EngineCounters, IkeConnection
from .events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    DatagramDropped,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    NatDetected,
)
from .limits import DEFAULT_BUDGET, MemoryBudget
from .state import IkeState, Role

__all__ = [
    "DEFAULT_BUDGET",
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "DatagramDropped",
    "EngineCounters",
    "Event",
    "IkeConfig",
    "IkeConnection",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaFailed",
    "IkeState",
    "MemoryBudget",
    "NatDetected",
    "Role",
    "identity",
    "loopback",
]

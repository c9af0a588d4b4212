"""The sans-I/O IKEv2 engine: ``IkeConnection`` takes datagrams and ``now``, gives datagrams and events.

No sockets, no clock, no subprocesses here (see docs/architecture.md); ``endpoint/`` drives it.
"""

from . import loopback
from .child import ChildSa, ChildState
from .config import IkeConfig, identity
from .connection import Datagram, EngineCounters, IkeConnection
from .events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaOutbound,
    DatagramDropped,
    DeadPeer,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaKeysDerived,
    IkeSaRekeyed,
    IkeSaRekeyFailed,
    NatDetected,
    OldIkeSaDeleted,
    Reauthenticated,
    ReauthenticationFailed,
)
from .limits import DEFAULT_BUDGET, MemoryBudget
from .reauth import Reauthentication
from .responder import Responder, ResponderCounters, ResponderEvent
from .state import IkeState, Role

__all__ = [
    "DEFAULT_BUDGET",
    "ChildSa",
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "ChildSaOutbound",
    "ChildState",
    "Datagram",
    "DatagramDropped",
    "DeadPeer",
    "EngineCounters",
    "Event",
    "IkeConfig",
    "IkeConnection",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaFailed",
    "IkeSaKeysDerived",
    "IkeSaRekeyFailed",
    "IkeSaRekeyed",
    "IkeState",
    "MemoryBudget",
    "NatDetected",
    "OldIkeSaDeleted",
    "Reauthenticated",
    "Reauthentication",
    "ReauthenticationFailed",
    "Responder",
    "ResponderCounters",
    "ResponderEvent",
    "Role",
    "identity",
    "loopback",
]

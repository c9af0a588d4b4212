"""Child SAs as objects with their own small state table (in the manner of ``state.py`` and h11).

A Child SA belongs to the connection, not to an IKE SA: an IKE rekey moves them all to the new IKE SA by
doing nothing to them (RFC 7296 2.18).  Its states, read top to bottom:

* CREATING: our CREATE_CHILD_SA request (or the peer's, until answered) is out; INSTALLED once agreed.
* INSTALLED: the pair carries traffic.  Rekeying it (ours or the peer's REKEY_SA, 1.3.3) makes it REKEYING:
  it still carries traffic until the new pair replaces it; a failed rekey puts it back to INSTALLED.
* DELETING: we sent its Delete (as the initiator of a rekey must, for the old pair, 2.8); DELETED once
  answered, or once the peer deletes it.

``transition`` raises LocalProtocolError naming a step the table does not allow, so an engine bug shows up as
an impossible step instead of a half-updated Child SA.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..errors import LocalProtocolError
from .events import ChildSaEstablished


class ChildState(StrEnum):
    CREATING = "creating"
    INSTALLED = "installed"
    REKEYING = "rekeying"
    DELETING = "deleting"
    DELETED = "deleted"


class ChildTrigger(StrEnum):
    INSTALL = "install the agreed pair"
    FAIL = "give up creating it"
    REKEY = "start rekeying it"
    REKEY_FAILED = "keep it after a failed rekey"
    SEND_DELETE = "send its Delete"
    RECV_DELETE = "receive its Delete"
    DELETE_ANSWERED = "receive the answer to its Delete"


C, CT = ChildState, ChildTrigger

CHILD_TRANSITIONS: dict[tuple[ChildState, ChildTrigger], ChildState] = {
    (C.CREATING, CT.INSTALL): C.INSTALLED,
    (C.CREATING, CT.FAIL): C.DELETED,
    (C.INSTALLED, CT.REKEY): C.REKEYING,
    (C.REKEYING, CT.REKEY_FAILED): C.INSTALLED,
    (C.INSTALLED, CT.SEND_DELETE): C.DELETING,
    (C.REKEYING, CT.SEND_DELETE): C.DELETING,
    (C.INSTALLED, CT.RECV_DELETE): C.DELETED,
    (C.REKEYING, CT.RECV_DELETE): C.DELETED,
    (C.DELETING, CT.RECV_DELETE): C.DELETED,  # both sides deleted it at once
    (C.DELETING, CT.DELETE_ANSWERED): C.DELETED,
}

LIVE = frozenset((C.INSTALLED, C.REKEYING))  # states in which the pair carries traffic


def child_transition(state: ChildState, trigger: ChildTrigger) -> ChildState:
    try:
        return CHILD_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"a Child SA in state {state} cannot {trigger}") from None


@dataclass(slots=True, eq=False)
class ChildSa:
    """One Child SA pair; ``spi_in`` (ours, 4 bytes) names it.  ``sa`` is its ChildSaEstablished once agreed."""

    protocol: int
    spi_in: bytes
    mode: str
    state: ChildState = ChildState.CREATING
    spi_out: bytes = b""
    sa: ChildSaEstablished | None = None
    installed_at: float = 0.0
    rekey_at: float | None = None  # soft lifetime: rekey it then
    expire_at: float | None = None  # hard lifetime: delete it then
    rekey: Any = None  # our CREATE_CHILD_SA rekeying it, while in flight (create_child_sa.Pending)
    volume_rekeyed: bool = False  # its soft volume limit was reached and acted on
    outbound: bool = True  # our outbound traffic goes on it (see ChildSaEstablished.outbound)

    @property
    def key(self) -> int:
        return int.from_bytes(self.spi_in, "big")

    def step(self, trigger: ChildTrigger) -> None:
        self.state = child_transition(self.state, trigger)

"""What a lifecycle case asks the lab to do after the first Child SA is up: steps as data, in order.

Cases declare; the runner (``ipseclab.interop_steps``) performs each step on the running lab and
records when it started and ended, and what it saw, in the run directory's ``steps.json``; the case's
check reads that record beside the trace.  Each step names the driver actions it needs on which side
(``needs``), so a pair that cannot be driven through it is UNSUPPORTED before anything boots.

Actions a driver may offer (``PeerDriver.actions``): ``rekey`` (rekey now), ``child`` (start an
additional Child SA), ``kill`` (end its daemon), ``shell`` (run commands on its host: traffic control,
kernel SA state, TCP tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["left", "right"]


@dataclass(frozen=True)
class Ping:
    """Start pinging from ``side`` for at most ``seconds`` (every ``interval`` s, ``size`` bytes of payload) and
    go on at once; through the first Child SA (``child=0``) or the additional one ``child=k``.  A ping still
    running when the steps are done is stopped then; the record says which of its echoes had time to be answered
    (those sent half a second, plus the round trip of any ``Delay``, before the stop)."""

    seconds: float
    side: Side = "left"
    interval: float = 0.2
    size: int = 56
    child: int = 0

    def needs(self) -> dict[str, str]:
        return {self.side: "shell"} if self.child else {}


@dataclass(frozen=True)
class Wait:
    """Let time pass (the daemons' timers run: rekeys, DPD)."""

    seconds: float

    def needs(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Until:
    """Wait until the capture next to the responder shows ``event`` done after the previous ``Until``'s, then
    ``settle`` seconds more (the traffic goes on: the check looks at it); at most ``within`` seconds in all.

    Events (``ipseclab.interop_wire``, read off the clear headers): ``child-rekey`` (a Child SA rekey ``side``
    started: answered, the old SA's Delete answered, ESP both ways on new SPIs), ``ike-rekey`` (an IKE SA rekey
    ``side`` started, answered, the old SA's Delete answered), ``collision`` (both sides' rekeys answered, both
    Deletes answered, the last ESP each way on new SPIs), ``restart`` (a new IKE SA ``side`` set up, its IKE_AUTH
    answered, ESP both ways on new SPIs).  A timeout is recorded, not raised: the case's check reads the
    decrypted trace and names what is missing."""

    event: Literal["child-rekey", "ike-rekey", "collision", "restart"]
    side: Side = "left"
    settle: float = 0.0
    within: float = 30.0

    def needs(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class Rekey:
    """Have ``side`` rekey its first Child SA (``what="child"``) or its IKE SA (``"ike"``) now; ``"both"``:
    both sides at the same moment (one thread each), the way to make two rekeys cross."""

    side: Side | Literal["both"]
    what: Literal["child", "ike"] = "child"

    def needs(self) -> dict[str, str]:
        sides = ("left", "right") if self.side == "both" else (self.side,)
        return {side: "rekey" for side in sides}


@dataclass(frozen=True)
class StartChild:
    """Have ``side`` start the additional Child SA ``index`` (the config's ``extra_children``, from 1)."""

    side: Side = "left"
    index: int = 1

    def needs(self) -> dict[str, str]:
        return {self.side: "child"}


@dataclass(frozen=True)
class Kill:
    """Kill ``side``'s daemon (SIGKILL) and flush its kernel SAs and policies: a peer that crashed."""

    side: Side = "right"

    def needs(self) -> dict[str, str]:
        return {self.side: "kill"}


@dataclass(frozen=True)
class Revive:
    """Start ``side``'s daemon (or endpoint) again after a Kill, with the cell's configuration and nothing of its
    SAs: a peer back from a crash, which knows no IKE SA."""

    side: Side = "right"

    def needs(self) -> dict[str, str]:
        return {self.side: "revive"}


@dataclass(frozen=True)
class WaitSasGone:
    """Wait up to ``within`` seconds for ``side``'s kernel to hold no SA (its daemon gave the peer up)."""

    side: Side = "left"
    within: float = 30.0

    def needs(self) -> dict[str, str]:
        return {self.side: "shell"}


@dataclass(frozen=True)
class Delay:
    """Delay every packet both hosts send on their transit interface by ``ms`` (netem in each guest)."""

    ms: int

    def needs(self) -> dict[str, str]:
        return {"left": "shell", "right": "shell"}


@dataclass(frozen=True)
class TcpTransfer:
    """``left`` downloads ``nbytes`` of random data from an HTTP server on ``right`` (busybox httpd and
    wget) through the Child SA; the record holds both SHA-256 sums and the byte count received."""

    nbytes: int

    def needs(self) -> dict[str, str]:
        return {"left": "shell", "right": "shell"}


Step = Ping | Wait | Until | Rekey | StartChild | Kill | Revive | WaitSasGone | Delay | TcpTransfer

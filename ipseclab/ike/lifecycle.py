"""Every deadline the engine owns besides retransmissions, and what it does when one passes.

The timer rule: ``IkeConnection.get_timer()`` is the earliest of all of them, so a driver sleeps until then and
calls ``handle_timer(now)``; nothing else in the engine waits on time.  The deadlines:

* retransmission of our request on each IKE SA (current and old ones finishing their Delete), RFC 7296 2.1;
* NAT keepalives every ``keepalive_interval`` while we are behind a NAT (RFC 3948 4);
* a responder's half-open IKE SA (IKE_SA_INIT answered, no IKE_AUTH) expires after ``half_open_timeout``;
* dead peer detection: an empty INFORMATIONAL once the peer has been silent for ``dpd_delay`` (2.4); when its
  retransmissions go unanswered the connection emits ``DeadPeer`` and fails;
* lifetimes, strongSwan's shape: a soft deadline (rekey) at ``*_rekey_time`` minus a random jitter of up to
  ``rekey_jitter`` (so two peers configured alike do not rekey at once, 2.8.1), and a hard one (delete) at
  ``*_life_time``; for Child SAs and for the IKE SA.

Volume limits of Child SAs (``child_rekey_bytes``, ``child_life_packets``, ...) are not deadlines: the driver
reports the data plane's counters (``IkeConnection.child_usage``) and ``on_usage`` acts at once.

Jitter comes from the connection's ``rng``, never from a clock or the global random module.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from ..errors import LocalProtocolError
from .child import ChildSa, ChildState
from .state import IkeState

if TYPE_CHECKING:
    from .connection import IkeConnection


def _jitter(conn: IkeConnection) -> float:
    if conn.config.rekey_jitter <= 0:
        return 0.0
    return int.from_bytes(conn.rng(4), "big") / 2**32 * conn.config.rekey_jitter


def schedule_child(conn: IkeConnection, child: ChildSa, now: float) -> None:
    """A newly installed Child SA's soft and hard deadlines."""
    cfg = conn.config
    child.rekey_at = now + cfg.child_rekey_time - _jitter(conn) if cfg.child_rekey_time else None
    child.expire_at = now + cfg.child_life_time if cfg.child_life_time else None


def schedule_ike(conn: IkeConnection, now: float) -> None:
    """The current IKE SA's soft and hard deadlines, and the keepalive schedule (it was just established)."""
    cfg = conn.config
    conn.ike_rekey_at = now + cfg.ike_rekey_time - _jitter(conn) if cfg.ike_rekey_time else None
    conn.ike_expire_at = now + cfg.ike_life_time if cfg.ike_life_time else None
    if conn.neg.nat_local and cfg.keepalive_interval and conn.next_keepalive is None:
        conn.next_keepalive = now + cfg.keepalive_interval


def next_deadline(conn: IkeConnection) -> float | None:
    """The earliest deadline of the connection (None: nothing scheduled)."""
    times = [out.deadline for sa in conn.ike_sas() for out in sa.in_flight.values()]
    if conn.state == IkeState.INIT_DONE and conn.half_open_until is not None:
        times.append(conn.half_open_until)
    if conn.state == IkeState.ESTABLISHED:
        cfg = conn.config
        if conn.next_keepalive is not None:
            times.append(conn.next_keepalive)
        if cfg.dpd_delay and not conn.ike.busy():
            times.append(conn.last_heard + cfg.dpd_delay)
        for t in (conn.ike_rekey_at, conn.ike_expire_at):
            if t is not None:
                times.append(t)
        for child in conn.children.values():
            if child.state == ChildState.INSTALLED and child.rekey_at is not None:
                times.append(child.rekey_at)
            if child.state in (ChildState.INSTALLED, ChildState.REKEYING) and child.expire_at is not None:
                times.append(child.expire_at)
    return min(times) if times else None


def on_timer(conn: IkeConnection, now: float) -> None:
    """Everything due at ``now`` (retransmissions are done by the connection before this)."""
    if conn.state == IkeState.INIT_DONE and conn.half_open_until is not None and now >= conn.half_open_until:
        conn.fail(f"half-open: no IKE_AUTH request within {conn.config.half_open_timeout} s of IKE_SA_INIT", 0)
        return
    if conn.state != IkeState.ESTABLISHED:
        return
    cfg = conn.config
    if conn.next_keepalive is not None and now >= conn.next_keepalive:
        conn.keepalive()
        conn.next_keepalive = now + cfg.keepalive_interval
    if conn.ike_expire_at is not None and now >= conn.ike_expire_at:
        conn.ike_expire_at = conn.ike_rekey_at = None
        conn.close(now)  # hard lifetime: the IKE SA and its Child SAs go
        return
    if conn.ike_rekey_at is not None and now >= conn.ike_rekey_at:
        conn.ike_rekey_at = None
        _try(conn.rekey_ike, now)
    for child in list(conn.children.values()):
        if child.expire_at is not None and now >= child.expire_at and child.state in (ChildState.INSTALLED,
                                                                                       ChildState.REKEYING):
            child.expire_at = child.rekey_at = None
            _try(partial(conn.delete_child, child.key), now)
        elif child.rekey_at is not None and now >= child.rekey_at and child.state == ChildState.INSTALLED:
            child.rekey_at = None
            _try(partial(conn.rekey_child, child.key), now)
    if cfg.dpd_delay and not conn.ike.busy() and now >= conn.last_heard + cfg.dpd_delay:
        conn.check_liveness(now)


def on_usage(conn: IkeConnection, child: ChildSa, octets: int, packets: int, now: float) -> None:
    """Rekey or delete a Child SA whose traffic passed its soft or hard volume limit (checked, then acted on)."""
    cfg = conn.config

    def past(limit: int | None, value: int) -> bool:
        return limit is not None and value >= limit

    if child.state in (ChildState.INSTALLED, ChildState.REKEYING) and (
            past(cfg.child_life_bytes, octets) or past(cfg.child_life_packets, packets)):
        _try(partial(conn.delete_child, child.key), now)
    elif child.state == ChildState.INSTALLED and not child.volume_rekeyed and (
            past(cfg.child_rekey_bytes, octets) or past(cfg.child_rekey_packets, packets)):
        child.volume_rekeyed = True  # once: the counters keep growing until the new pair takes over
        _try(partial(conn.rekey_child, child.key), now)


def _try(action: Callable[[float], object], now: float) -> None:
    """A scheduled action that cannot run now (the window's queue is full) is skipped, not raised to the driver."""
    with suppress(LocalProtocolError):
        action(now)

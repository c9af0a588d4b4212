"""How much memory an IKE SA may hold on the peer's behalf, alone and together with the others.

Two things grow with what the peer sends: RFC 7383 fragments waiting for the rest of their message, and the
last response kept for a retransmitted request (RFC 7296 2.1).  Fragments are stored only after their ICV
verified, so only a peer with the keys can fill them; a cached response is our own message.  Both are still
bounded, because an authenticated peer can be hostile or broken, and a process may hold thousands of SAs:

==========================  ==============  ==========================================================
what                        default         when it is reached
==========================  ==============  ==========================================================
fragments, per SA           65,536 bytes    the partial message is discarded and the fragment dropped
fragments, all SAs          16,777,216 b.   (``dropped_over_limit``); the peer has to send it again
cached response, per SA     65,536 bytes    the response is sent but not kept: a retransmission of its
cached responses, all SAs   67,108,864 b.   request is dropped, the peer's retransmissions run out
==========================  ==============  ==========================================================

64 KiB per SA is six times strongSwan's default limit for a whole IKE message (``charon.max_packet``, 10,000
bytes); at most two messages are ever reassembled per SA (the peer's request and the response to ours), each
of at most 64 fragments (``packets.fragment.MAX_FRAGMENTS``).  Bytes are those of the decrypted fragment
contents and of the cached datagrams, not Python's object overhead (a few hundred bytes per SA).

The totals hold over every connection that shares one :class:`MemoryBudget`.  By default every
``IkeConnection`` of a process shares :data:`DEFAULT_BUDGET`, so a driver that makes one connection per peer
is bounded without doing anything; tests and drivers that want their own limits pass their own budget.  A
connection's share goes back to the budget when the connection is garbage-collected.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

KIB = 1024


@dataclass(slots=True)
class MemoryBudget:
    """Byte limits per SA and over all SAs sharing this budget (see the module docstring for the defaults)."""

    fragment_bytes_per_sa: int = 64 * KIB
    fragment_bytes_total: int = 16 * KIB * KIB
    response_bytes_per_sa: int = 64 * KIB
    response_bytes_total: int = 64 * KIB * KIB
    _fragments: int = field(default=0, init=False, repr=False)
    _responses: int = field(default=0, init=False, repr=False)

    @property
    def stored_fragment_bytes(self) -> int:
        """Fragment bytes held now by every connection sharing this budget."""
        return self._fragments

    @property
    def cached_response_bytes(self) -> int:
        """Cached response bytes held now by every connection sharing this budget."""
        return self._responses

    def open_account(self, owner: object) -> Account:
        """An account for one connection; what it holds is given back when ``owner`` is garbage-collected."""
        account = Account(self)
        weakref.finalize(owner, account.close)
        return account


@dataclass(slots=True)
class Account:
    """What one connection holds against its :class:`MemoryBudget`."""

    budget: MemoryBudget
    fragment_bytes: int = 0
    response_bytes: int = 0

    def allows_fragment(self, size: int) -> bool:
        """Whether ``size`` more fragment bytes fit, for this SA and for all of them."""
        b = self.budget
        return (self.fragment_bytes + size <= b.fragment_bytes_per_sa
                and b._fragments + size <= b.fragment_bytes_total)

    def allows_response(self, size: int) -> bool:
        """Whether a cached response of ``size`` bytes fits in place of the one held now."""
        b = self.budget
        return size <= b.response_bytes_per_sa and b._responses - self.response_bytes + size <= b.response_bytes_total

    def set_fragments(self, size: int) -> None:
        self.budget._fragments += size - self.fragment_bytes
        self.fragment_bytes = size

    def set_response(self, size: int) -> None:
        self.budget._responses += size - self.response_bytes
        self.response_bytes = size

    def close(self) -> None:
        self.set_fragments(0)
        self.set_response(0)


DEFAULT_BUDGET = MemoryBudget()

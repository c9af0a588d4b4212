"""Anti-replay window (RFC 4303 3.4.3, Appendix A) and ESN high-order bit inference (RFC 4304).

The window is a Python int used as a bitmap: bit ``i`` stands for sequence number
``top - i``.  Sliding is one shift and a mask, a duplicate test is one shift and an
AND, and the memory is the bitmap's own bits (``size / 8`` bytes plus the int header),
so a 4096-packet window costs about half a kilobyte.

``check`` and ``update`` are split on purpose: the receiver checks *before* the ICV
(cheap rejection of replays), and updates only *after* the ICV and every other check
passed, so a forged or broken packet never moves the window (RFC 4303 3.4.3).
"""

from __future__ import annotations

import sys

from ..errors import ConfigError, ReplayError

_M32 = 0xFFFFFFFF
MAX_WINDOW = 1 << 31  # Appendix A assumes a window narrower than 2^31


class ReplayWindow:
    """The receive side of one SA: highest authenticated sequence number and the bitmap below it.

    ``size`` 0 disables the replay check (RFC 4303 3.4.3 allows it) but still tracks
    the top, which ESN inference needs.  Sequence numbers here are the full 64-bit
    values with ESN, the 32-bit ones without.
    """

    __slots__ = ("_bits", "_mask", "esn", "size", "top")

    def __init__(self, size: int = 64, esn: bool = False) -> None:
        if not 0 <= size < MAX_WINDOW:
            raise ConfigError(f"replay window size must be 0 (disabled) to {MAX_WINDOW - 1} packets, got {size}")
        self.size = size
        self.esn = esn
        self.top = 0  # T: the highest sequence number authenticated so far (0: none yet)
        self._bits = 0
        self._mask = (1 << size) - 1

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, esn={self.esn}, top={self.top})"

    @property
    def bottom(self) -> int:
        """B: the lowest sequence number still inside the window (1 at the start)."""
        return max(1, self.top - self.size + 1) if self.size else self.top + 1

    def infer(self, seq_lo: int) -> int:
        """The full sequence number of a received packet from its low 32 bits (RFC 4303 Appendix A2.2).

        Without ESN this is ``seq_lo`` itself.  With ESN, the window's top T picks
        the subspace: Case A (Tl >= W - 1, window inside one subspace) and Case B
        (the window spans two).  A disabled window (size 0) infers with W = 1.
        Case B's Th - 1 at the very start (Th = 0) means a sequence number of
        subspace 0, since no earlier subspace exists.
        """
        if not self.esn:
            return seq_lo
        w = self.size or 1
        t = self.top
        tl = t & _M32
        th = t >> 32
        bl = (tl - w + 1) & _M32
        if tl >= w - 1:  # Case A
            return ((th if seq_lo >= bl else th + 1) << 32) | seq_lo
        # Case B
        return ((th - 1 if th else 0) << 32 if seq_lo >= bl else th << 32) | seq_lo

    def check(self, seq: int) -> None:
        """Raise ReplayError if ``seq`` is 0, a duplicate, or left of the window; never changes the window."""
        if seq <= 0:
            raise ReplayError("sequence number 0 is never sent (the counter starts at 1)")
        size = self.size
        if not size:
            return
        t = self.top
        if seq > t:
            return
        d = t - seq
        if d >= size:
            raise ReplayError(f"sequence number {seq} is left of the replay window [{t - size + 1}, {t}]")
        if (self._bits >> d) & 1:
            raise ReplayError(f"sequence number {seq} was already received (duplicate)")

    def update(self, seq: int) -> None:
        """Record an authenticated ``seq``: slide the window right of it, or mark it inside.

        Call only after the ICV verified.  Raises ReplayError (and changes nothing) if
        ``seq`` would not pass :meth:`check`, so a caller that skipped it stays safe.
        """
        t = self.top
        size = self.size
        if seq > t:
            if size:
                d = seq - t
                self._bits = (((self._bits << d) | 1) & self._mask) if d < size else 1
            self.top = seq
            return
        self.check(seq)
        if size:
            self._bits |= 1 << (t - seq)

    def advance(self, seq: int, top: int) -> None:
        """:meth:`update` for the common case ``seq > top`` where ``top`` is :attr:`top` (read by the caller)."""
        size = self.size
        if size:
            d = seq - top
            self._bits = (((self._bits << d) | 1) & self._mask) if d < size else 1
        self.top = seq

    def advance_span(self, first: int, last: int) -> None:
        """:meth:`advance` of ``first``, ``first + 1``, ... ``last`` in turn, for ``top < first <= last``.

        The bits of the old top move ``last - top`` places (a shift then a mask, as one advance after
        another would leave them) and the ``last - first + 1`` numbers received are set below the new top.
        """
        size = self.size
        if size:
            d = last - self.top
            bits = (self._bits << d) | ((1 << min(last - first + 1, size)) - 1) if d < size else (1 << min(
                last - first + 1, size)) - 1
            self._bits = bits & self._mask
        self.top = last

    def resume(self, top: int) -> None:
        """Join an SA in its middle: ``top`` is taken as the highest sequence number so far, none below it seen.

        For a receiver that starts late (a capture that begins mid-SA): ESN inference then picks the
        subspace around ``top`` instead of subspace 0.  Only for a window that has received nothing.
        """
        if self.top or self._bits:
            raise ConfigError("resume() is for a window that has received nothing yet")
        if not 0 <= top < (1 << 64 if self.esn else 1 << 32):
            raise ConfigError(f"sequence number {top} is out of range")
        self.top = top

    def seen(self, seq: int) -> bool:
        """Whether ``seq`` is marked as received inside the window (False outside it)."""
        d = self.top - seq
        return 0 <= d < self.size and bool((self._bits >> d) & 1)

    def memory_bytes(self) -> int:
        """Bytes held by the bitmap when every bit is set (what a busy window costs)."""
        return sys.getsizeof(self._mask)

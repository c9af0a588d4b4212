"""What ESP and AH SAs share: mode, counters, sequence numbers, selectors, and the Scapy face.

The byte methods (``protect``/``unprotect``) are the data plane; ``encrypt``/``decrypt``
are thin wrappers that take and return Scapy packets at the REPL (the names Scapy's own
``SecurityAssociation`` uses), importing Scapy only when called.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NoReturn

from ..errors import ConfigError, IntegrityError, ReplayError, SelectorMismatchError, SequenceExhaustedError
from .iphdr import OuterHeader
from .replay import ReplayWindow
from .ts import Selectors, packet_flow

SEQ_MAX_32 = (1 << 32) - 1
SEQ_MAX_64 = (1 << 64) - 1
SEQ_HI = struct.Struct("!I")


class Mode(StrEnum):
    """IPsec mode (RFC 4301 4.1)."""

    TUNNEL = "tunnel"
    TRANSPORT = "transport"


@dataclass(slots=True)
class SaCounters:
    """Per-SA counters, in the spirit of ``ip -s xfrm state`` (bytes count the protected payload).

    Every refused packet raises a distinct error type *and* bumps one counter here.
    """

    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    dummies_out: int = 0
    dummies_in: int = 0
    keepalives_in: int = 0
    replay_drops: int = 0
    integrity_failures: int = 0
    decode_errors: int = 0
    padding_errors: int = 0
    unknown_spi: int = 0
    selector_mismatches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SaBase:
    """State common to EspSA and AhSA: SPI, mode, tunnel header, outbound counter, replay window."""

    __slots__ = ("_outer", "_seq_max", "counters", "esn", "mode", "selectors", "seq", "spi", "window")

    protocol_name = "?"

    def __init__(
        self,
        spi: int,
        mode: Mode | str,
        tunnel: tuple[str, str] | None,
        esn: bool,
        replay_window: int,
        seq: int,
        ttl: int,
        ident: int,
    ) -> None:
        if not 0 < spi <= 0xFFFFFFFF:
            raise ConfigError(f"SPI {spi:#x}: must be 1..0xffffffff (0 never goes on the wire, RFC 4303 2.1)")
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise ConfigError(f"mode {mode!r}: use 'tunnel' or 'transport'") from None
        if self.mode is Mode.TUNNEL and tunnel is None:
            raise ConfigError("tunnel mode needs the outer addresses: tunnel=(src, dst)")
        self.spi = spi
        self.esn = esn
        self._seq_max = SEQ_MAX_64 if esn else SEQ_MAX_32
        if not 0 <= seq <= self._seq_max:
            raise ConfigError(f"initial sequence number {seq} is out of range")
        self.seq = seq  # the last sequence number sent (0: none yet)
        self.window = ReplayWindow(replay_window, esn)
        self.counters = SaCounters()
        self.selectors: Selectors | None = None
        self._outer = OuterHeader(tunnel[0], tunnel[1], ttl, ident) if tunnel is not None else None

    @property
    def tunnel(self) -> tuple[str, str] | None:
        """The outer (src, dst) of a tunnel-mode SA."""
        return (self._outer.src, self._outer.dst) if self._outer is not None else None

    def _exhausted(self) -> SequenceExhaustedError:
        bits = 64 if self.esn else 32
        return SequenceExhaustedError(
            f"{self.protocol_name} SA {self.spi:#010x} has sent sequence number 2^{bits}-1: it must be rekeyed "
            f"(RFC 4303 3.3.3{'' if self.esn else '; ESN would extend it'})"
        )

    def _accept(self, result: bytes, seq: int, payload_len: int) -> bytes:
        """The last steps of every successful receive: selectors, then the window (only now), then counters."""
        if self.selectors is not None:
            self._check_selectors(result)
        self.window.update(seq)
        self.counters.packets_in += 1
        self.counters.bytes_in += payload_len
        return result

    def _refuse_icv(self, seq: int, exc: IntegrityError, verify_with: Callable[[int], object]) -> NoReturn:
        """Count and raise an ICV that failed under the inferred sequence number ``seq``.

        With ESN, RFC 4303 Appendix A2.2 infers a sequence number left of the window as one in
        the next subspace (2^32 further right), so a replayed old packet fails the ICV and would
        be counted as a forgery.  When ``verify_with(high bits - 1)`` verifies (it raises
        IntegrityError otherwise), the packet is genuine and left of the window: a replay, counted
        and raised as one.  The window is not touched either way, and the second ICV costs only
        packets that already failed one.
        """
        w = self.window
        if self.esn and w.size and seq > w.top and seq >> 32:
            try:
                verify_with((seq >> 32) - 1)
            except IntegrityError:
                pass
            else:
                self.counters.replay_drops += 1
                old = seq - (1 << 32)
                raise ReplayError(
                    f"sequence number {old} is left of the replay window [{w.bottom}, {w.top}] (ESN)"
                ) from None
        self.counters.integrity_failures += 1
        raise exc

    def _check_selectors(self, packet: bytes) -> None:
        sel = self.selectors
        if sel is not None and not sel.inbound(packet_flow(packet)):
            self.counters.selector_mismatches += 1
            raise SelectorMismatchError(
                f"packet {_flow_text(packet)} on SA {self.spi:#010x} is outside its selectors {sel}"
            )

    # -- the Scapy face ---------------------------------------------------------------------------

    def protect(self, packet: bytes) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def unprotect(self, packet: bytes) -> bytes | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def encrypt(self, pkt: Any) -> Any:
        """Protect a Scapy IP/IPv6 packet (or bytes); returns the same kind. The REPL face of :meth:`protect`."""
        data, scapy = to_bytes(pkt)
        out = self.protect(data)
        return to_scapy(out) if scapy else out

    def decrypt(self, pkt: Any) -> Any:
        """Verify and strip a Scapy packet (or bytes); None for dummies and keepalives.  See :meth:`unprotect`."""
        data, scapy = to_bytes(pkt)
        out = self.unprotect(data)
        if out is None or not scapy:
            return out
        return to_scapy(out)


def _flow_text(packet: bytes) -> str:
    import ipaddress

    f = packet_flow(packet)
    fam = ipaddress.IPv4Address if f.version == 4 else ipaddress.IPv6Address
    return f"{fam(f.src)}:{f.sport} -> {fam(f.dst)}:{f.dport} proto {f.proto}"


def to_bytes(pkt: Any) -> tuple[bytes, bool]:
    """(IP packet bytes, whether it came as a Scapy packet).  Link layers in front of IP are dropped."""
    if isinstance(pkt, bytes | bytearray | memoryview):
        return bytes(pkt), False
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    layer = pkt
    while layer is not None and not isinstance(layer, IP | IPv6):
        nxt = layer.payload
        layer = nxt if nxt is not None and len(nxt.fields_desc) else None
    if layer is None:
        raise ConfigError(f"{pkt.summary()} has no IP or IPv6 layer")
    return bytes(layer), True


def to_scapy(data: bytes) -> Any:
    """A Scapy IP or IPv6 packet for these bytes, with Scapy's ESP/AH/UDP-4500 bindings loaded."""
    import scapy.layers.ipsec  # noqa: F401  (registers ESP, AH and the UDP 4500 binding)
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    return IP(data) if data[0] >> 4 == 4 else IPv6(data)

"""One hierarchy for every error ipseclab raises on purpose.

Callers catch :class:`IpsecLabError` to handle anything the library reports
deliberately; anything else escaping is a bug.  The split follows h11: a
*local* protocol error is our own misuse (a caller asked for something the
protocol forbids), a *remote* protocol error is the peer's (or the wire's)
fault.  Protocol errors carry the IKEv2 Notify type (IANA "IKEv2 Notify
Message Error Types") that the engine should answer with, as a plain int so
this module depends on nothing else in the package.
"""

from __future__ import annotations


class IpsecLabError(Exception):
    """Base of every error raised deliberately by ipseclab."""


class ConfigError(IpsecLabError):
    """A user-supplied configuration or argument is invalid; the message says which and how to fix it."""


class UnsupportedError(ConfigError):
    """A peer cannot do what was asked (a lab cell is UNSUPPORTED); the message is the driver's reason."""


class ProtocolError(IpsecLabError):
    """A violation of IKEv2/ESP/AH rules.

    ``notify`` is the IKEv2 error Notify type to report (0 when none applies); ``from_peer`` says the
    peer reported it (an error notify we received) rather than our own check finding it.
    """

    def __init__(self, message: str, notify: int = 0, *, from_peer: bool = False) -> None:
        super().__init__(message)
        self.notify = notify
        self.from_peer = from_peer


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer (or the bytes on the wire) broke the protocol."""


class DecodeError(RemoteProtocolError):
    """Bytes that do not parse as the expected structure (truncated, bad length, bad field).

    ``offset`` is the byte offset in the message where decoding failed, when known.
    """

    def __init__(self, message: str, offset: int | None = None, notify: int = 7) -> None:
        # 7 = INVALID_SYNTAX
        where = f" (at byte {offset})" if offset is not None else ""
        super().__init__(message + where, notify=notify)
        self.offset = offset


class CryptoError(IpsecLabError):
    """A cryptographic operation could not be performed (bad key length, bad parameters)."""


class CertificateError(CryptoError):
    """A certificate that cannot be used: expired, not chaining to a configured CA, not naming the identity."""


class UnsupportedTransformError(CryptoError):
    """A transform id (or key length) that ipseclab does not implement, or not for this protocol."""


class IntegrityError(RemoteProtocolError):
    """An ICV or AEAD tag did not verify: wrong keys, or a modified packet."""

    def __init__(self, message: str) -> None:
        super().__init__(message, notify=0)


class ReplayError(RemoteProtocolError):
    """A sequence number already seen, or left of the anti-replay window."""


class KeyFileError(IpsecLabError):
    """A Wireshark key file (ikev2_decryption_table, esp_sa) that cannot be read."""


class PcapError(IpsecLabError):
    """A capture file that cannot be read as pcap or pcapng."""


class LabError(IpsecLabError):
    """A lab operation failed: which command, what it printed, and what to do about it."""

    def __init__(self, message: str, command: list[str] | None = None, output: str = "", hint: str = "") -> None:
        parts = [message]
        if command:
            parts.append("command: " + " ".join(command))
        if output:
            parts.append("output: " + output.strip()[-2000:])
        if hint:
            parts.append("hint: " + hint)
        super().__init__("\n".join(parts))
        self.command = command
        self.output = output
        self.hint = hint


class CheckFailed(IpsecLabError, AssertionError):
    """A test case's check found the run did not do what the case promises; the message is the evidence.

    The interop suite's own failure type, raised explicitly: a bare ``assert`` disappears under
    ``python -O`` and every cell would pass.  Also an AssertionError, so that pytest (and any caller that
    treats assertions as failures) reports it as a failure, not an error.  ``evidence`` holds structured
    facts (frames, SPIs, counters) for the results.
    """

    def __init__(self, message: str, **evidence: object) -> None:
        super().__init__(message)
        self.evidence = evidence


# --- ESP/AH data plane (ipseclab.esp): one type per way a packet can be refused --------------------


class TruncatedPacketError(DecodeError):
    """An ESP/AH packet (or the IP/UDP header around it) shorter than its own fields say it is."""


class PaddingError(DecodeError):
    """ESP padding that is not 1, 2, 3, ... (RFC 4303 2.4) or a Pad Length longer than the payload.

    Raised only after the ICV verified: an authentic packet from a broken sender.
    """


class UnknownSpiError(RemoteProtocolError):
    """A packet for an SPI no inbound SA has (RFC 4303 3.4.2: discard and audit)."""

    def __init__(self, message: str, spi: int = 0) -> None:
        super().__init__(message, notify=11)  # 11 = INVALID_SPI
        self.spi = spi


class SelectorMismatchError(RemoteProtocolError):
    """A decrypted packet whose addresses/ports are outside the traffic selectors of the SA it came in on."""


class NoPolicyError(LocalProtocolError):
    """An outbound (or clear inbound) packet that no SPD entry allows (RFC 4301 5.1: discard)."""


class SequenceExhaustedError(LocalProtocolError):
    """The SA has sent 2^32-1 packets (2^64-1 with ESN) and must be rekeyed (RFC 4303 3.3.3)."""

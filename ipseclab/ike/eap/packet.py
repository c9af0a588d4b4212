"""EAP packets (RFC 3748 4): Code, Identifier, Length, and for Request/Response a Type and its data.

The EAP payload of IKEv2 (RFC 7296 3.16) carries exactly one of these; ``decode`` checks the Length field
against the bytes, so a method never sees a truncated or padded packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ...errors import DecodeError

_HDR = struct.Struct("!BBH")


class EapCode(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    """EAP method types (IANA "Method Types") that ike.eap speaks."""

    IDENTITY = 1
    NAK = 3
    MD5_CHALLENGE = 4
    MSCHAPV2 = 26


METHOD_TYPES = {"md5": EapType.MD5_CHALLENGE, "mschapv2": EapType.MSCHAPV2}
METHOD_NAMES = {v: k for k, v in METHOD_TYPES.items()}


@dataclass(frozen=True, slots=True)
class EapPacket:
    code: int
    identifier: int
    type: int = 0  # Request and Response only
    data: bytes = b""

    def encode(self) -> bytes:
        if self.code in (EapCode.SUCCESS, EapCode.FAILURE):
            return _HDR.pack(self.code, self.identifier, 4)
        return _HDR.pack(self.code, self.identifier, 5 + len(self.data)) + bytes((self.type,)) + self.data

    def describe(self) -> str:
        if self.code in (EapCode.SUCCESS, EapCode.FAILURE):
            return f"EAP-{EapCode(self.code).name}"
        kind = EapCode(self.code).name.title() if self.code in (1, 2) else f"code {self.code}"
        try:
            t = EapType(self.type).name
        except ValueError:
            t = str(self.type)
        return f"EAP {kind}/{t}"


def decode(data: bytes) -> EapPacket:
    """One EAP packet; DecodeError if its Length does not match or a Request/Response has no Type."""
    if len(data) < 4:
        raise DecodeError(f"EAP packet of {len(data)} bytes, shorter than its 4-byte header")
    code, ident, length = _HDR.unpack_from(data)
    if length != len(data):
        raise DecodeError(f"EAP Length {length} does not match the {len(data)} bytes of the EAP payload")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != 4:
            raise DecodeError(f"EAP-{EapCode(code).name} with {length - 4} bytes of data")
        return EapPacket(code, ident)
    if code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise DecodeError(f"EAP code {code}")
    if length < 5:
        raise DecodeError("EAP Request/Response without a Type")
    return EapPacket(code, ident, data[4], data[5:])

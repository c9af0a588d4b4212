"""UDP port 4500 demultiplexing (RFC 3948 section 2, RFC 7296 2.23).

On port 4500 one socket carries three things: IKE messages behind a four-byte
zero non-ESP marker, ESP packets (whose SPI is never zero), and one-byte 0xFF
NAT keepalives.  These helpers work on the UDP payload bytes.
"""

from __future__ import annotations

from enum import Enum

from ..errors import DecodeError

NON_ESP_MARKER = b"\x00\x00\x00\x00"
KEEPALIVE = b"\xff"
IKE_PORT = 500
NATT_PORT = 4500


class Udp4500Kind(Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


def classify_udp4500(payload: bytes) -> tuple[Udp4500Kind, bytes]:
    """Split a port-4500 UDP payload into its kind and content (IKE without the marker, ESP as is)."""
    if payload == KEEPALIVE:
        return Udp4500Kind.KEEPALIVE, b""
    if len(payload) < 4:
        raise DecodeError(f"{len(payload)}-byte UDP payload on port 4500 is neither keepalive, IKE nor ESP", 0)
    if payload[:4] == NON_ESP_MARKER:
        return Udp4500Kind.IKE, payload[4:]
    if len(payload) < 8:
        raise DecodeError("ESP-in-UDP packet shorter than its SPI and sequence number", 0)
    return Udp4500Kind.ESP, payload


def ike_udp_payload(message: bytes, port: int) -> bytes:
    """The UDP payload that carries an IKE message from/to ``port``: with the non-ESP marker on 4500."""
    return NON_ESP_MARKER + message if port == NATT_PORT else message


def ike_from_udp(payload: bytes, port: int) -> bytes | None:
    """The IKE message in a UDP payload on ``port``, or None when it is ESP or a keepalive."""
    if port != NATT_PORT:
        return payload
    kind, content = classify_udp4500(payload)
    return content if kind is Udp4500Kind.IKE else None

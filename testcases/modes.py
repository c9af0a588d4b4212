"""Modes and encapsulations: ESP tunnel, ESP transport, AH transport, and ESP tunnel through a NAT."""

from __future__ import annotations

from .base import TestCase

ESP_TUNNEL = TestCase(
    name="esp-tunnel",
    description="ESP tunnel mode between the protected subnets (AES-CBC-128/HMAC-SHA2-256)",
)
ESP_TRANSPORT = TestCase(
    name="esp-transport",
    description="ESP transport mode host to host",
    mode="transport",
)
AH_TRANSPORT = TestCase(
    name="ah-transport",
    description="AH transport mode host to host (HMAC-SHA2-256-128)",
    protocol="ah",
    mode="transport",
    child_proposal="sha256",
)
ESP_TUNNEL_NAT = TestCase(
    name="esp-tunnel-nat",
    description="ESP tunnel with the initiator behind a masquerading NAT router: NAT-T on UDP 4500",
    topology="nat",
)

CASES = [ESP_TUNNEL, ESP_TRANSPORT, AH_TRANSPORT, ESP_TUNNEL_NAT]

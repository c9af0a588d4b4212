"""Modes and encapsulations: ESP tunnel and transport, AH transport, over IPv4 and IPv6 transit; ESP tunnel
through a NAT and in UDP without one (TCP in transport mode through a NAT: tcp-transport-nat, lifecycle.py)."""

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
ESP_TUNNEL_UDP = TestCase(
    name="esp-tunnel-udp",
    description="ESP tunnel forced into UDP 4500 without a NAT (RFC 3948; strongSwan encap=yes, "
                "Libreswan encapsulation=yes; what strongSwan's kernel-libipsec always does)",
    encap=True,
)

ESP_TUNNEL_IPV6 = TestCase(
    name="esp-tunnel-ipv6",
    description="ESP tunnel over IPv6 transit carrying the IPv4 protected subnets (AES-GCM-16-256)",
    transit="ipv6",
    ike_proposal="aes256gcm16-prfsha384-ecp384",
    child_proposal="aes256gcm16",
)

ESP_TRANSPORT_IPV6 = TestCase(
    name="esp-transport-ipv6",
    description="ESP transport mode host to host over IPv6 transit (ping6 inside ESP)",
    mode="transport",
    transit="ipv6",
)
AH_TRANSPORT_IPV6 = TestCase(
    name="ah-transport-ipv6",
    description="AH transport mode host to host over IPv6 transit (the ICV covers the IPv6 header, RFC 4302 3.3.3.1.2)",
    protocol="ah",
    mode="transport",
    transit="ipv6",
    child_proposal="sha256",
)
CASES = [ESP_TUNNEL, ESP_TRANSPORT, AH_TRANSPORT, ESP_TUNNEL_NAT, ESP_TUNNEL_UDP, ESP_TUNNEL_IPV6,
         ESP_TRANSPORT_IPV6, AH_TRANSPORT_IPV6]

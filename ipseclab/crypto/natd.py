"""NAT detection hashes (RFC 7296 2.23): SHA-1(SPIi | SPIr | IP | port)."""

from __future__ import annotations

import hashlib
import ipaddress


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
                       port: int) -> bytes:
    """The NAT_DETECTION_SOURCE_IP / _DESTINATION_IP notify data for one address and UDP port.

    In IKE_SA_INIT requests the responder SPI is still zero, and that zero is hashed.
    """
    ip = ipaddress.ip_address(address)
    return hashlib.sha1(spi_i + spi_r + ip.packed + port.to_bytes(2, "big")).digest()

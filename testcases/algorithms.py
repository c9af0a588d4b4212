"""Negotiated algorithms: suites other than the modes cases' default, through every pair.

The check is the same as for every case, and it is what proves the negotiation: Wireshark and
ipseclab decrypt the run only with key tables that name the algorithms the peers agreed on, so a
peer that chose something else fails the case.
"""

from __future__ import annotations

from .base import TestCase

AES_GCM_CURVE25519 = TestCase(
    name="aes-gcm-curve25519",
    description="AES-GCM-16-128 IKE SA with PRF-HMAC-SHA2-256 and Curve25519; AES-GCM-16-128 ESP",
    ike_proposal="aes128gcm16-prfsha256-curve25519",
    child_proposal="aes128gcm16",
)
AES_CBC_SHA384_ECP384 = TestCase(
    name="aes-cbc-sha384-ecp384",
    description="AES-CBC-256/HMAC-SHA2-384 IKE SA with ECP-384; AES-CBC-256/HMAC-SHA2-384-192 ESP",
    ike_proposal="aes256-sha384-ecp384",
    child_proposal="aes256-sha384",
)
AES_CBC_SHA1_ECP256 = TestCase(
    name="aes-cbc-sha1-ecp256",
    description="AES-CBC-128/HMAC-SHA2-256 IKE SA with ECP-256; AES-CBC-128/HMAC-SHA1-96 ESP (the legacy "
                "suite every peer installs, OpenIKED's PF_KEY path on Linux included)",
    ike_proposal="aes128-sha256-ecp256",
    child_proposal="aes128-sha1",
)

CASES = [AES_GCM_CURVE25519, AES_CBC_SHA384_ECP384, AES_CBC_SHA1_ECP256]

"""Negotiated algorithms: suites other than the modes cases' default, through every pair.

Every case here also checks, from the trace, that the transforms and KE group the peers agreed on
are the declared ones (``check_negotiation``: the IKE_SA_INIT response's SA and KE payloads and the
IKE_AUTH response's decrypted SA payload, read by Wireshark, not our key files).  One case per
algorithm family that both strongSwan and Libreswan negotiate (issue 10): AES-CTR, AES-CCM,
Camellia, 3DES, ChaCha20-Poly1305, AES-GMAC, AES-CMAC.  What Libreswan lacks (AES-CCM and
AES-CMAC in IKE, Camellia-CTR/CCM) is left out of the IKE proposals so that both can run; a
daemon that cannot do a cell refuses it in its driver (UNSUPPORTED, with its reason).  The IKE SA
of every case is one Wireshark 4.0 decrypts (it has no Camellia or ChaCha20-Poly1305 for IKEv2),
since the Child SA's proposal is read from the decrypted IKE_AUTH response; ESP packets of
algorithms Wireshark lacks are checked by ipseclab's own decryption of the run.
"""

from __future__ import annotations

from .base import TestCase

AES_GCM_CURVE25519 = TestCase(
    name="aes-gcm-curve25519",
    description="AES-GCM-16-128 IKE SA with PRF-HMAC-SHA2-256 and Curve25519; AES-GCM-16-128 ESP",
    ike_proposal="aes128gcm16-prfsha256-curve25519",
    child_proposal="aes128gcm16",
    check_negotiation=True,
)
AES_CBC_SHA384_ECP384 = TestCase(
    name="aes-cbc-sha384-ecp384",
    description="AES-CBC-256/HMAC-SHA2-384 IKE SA with ECP-384; AES-CBC-256/HMAC-SHA2-384-192 ESP",
    ike_proposal="aes256-sha384-ecp384",
    child_proposal="aes256-sha384",
    check_negotiation=True,
)
AES_CBC_SHA1_ECP256 = TestCase(
    name="aes-cbc-sha1-ecp256",
    description="AES-CBC-128/HMAC-SHA2-256 IKE SA with ECP-256; AES-CBC-128/HMAC-SHA1-96 ESP (the legacy "
                "suite every peer installs, OpenIKED's PF_KEY path on Linux included)",
    ike_proposal="aes128-sha256-ecp256",
    child_proposal="aes128-sha1",
    check_negotiation=True,
)
AES_CTR = TestCase(
    name="aes-ctr",
    description="AES-CTR-256/HMAC-SHA2-384 IKE SA with ECP-384 (RFC 5930); AES-CTR-128/HMAC-SHA2-256-128 ESP "
                "(RFC 3686)",
    ike_proposal="aes256ctr-sha384-ecp384",
    child_proposal="aes128ctr-sha256",
    check_negotiation=True,
)
AES_CCM = TestCase(
    name="aes-ccm",
    description="AES-CCM-16-256 ESP (RFC 4309) under an AES-CBC-128/HMAC-SHA2-256 IKE SA with ECP-256 "
                "(Libreswan 4.10 has AES-CCM for ESP only)",
    ike_proposal="aes128-sha256-ecp256",
    child_proposal="aes256ccm16",
    check_negotiation=True,
)
CAMELLIA = TestCase(
    name="camellia",
    description="Camellia-CBC-128/HMAC-SHA1-96 ESP (RFC 4312) under an AES-CTR-128/HMAC-SHA2-256 IKE SA with "
                "MODP-3072",
    ike_proposal="aes128ctr-sha256-modp3072",
    child_proposal="camellia128-sha1",
    check_negotiation=True,
)
TRIPLE_DES = TestCase(
    name="3des",
    description="3DES-CBC/HMAC-SHA1-96 IKE SA with MODP-2048; 3DES-CBC/HMAC-MD5-96 ESP (RFC 2451, 2403)",
    ike_proposal="3des-sha1-modp2048",
    child_proposal="3des-md5",
    check_negotiation=True,
)
CHACHA20 = TestCase(
    name="chacha20poly1305",
    description="ChaCha20-Poly1305 ESP (RFC 7634) under an AES-GCM-16-256 IKE SA with PRF-HMAC-SHA2-256 and "
                "Curve25519",
    ike_proposal="aes256gcm16-prfsha256-curve25519",
    child_proposal="chacha20poly1305",
    check_negotiation=True,
)
AES_GMAC = TestCase(
    name="aes-gmac",
    description="AES-GMAC-128 ESP, integrity only (RFC 4543), under an AES-GCM-16-256 IKE SA with ECP-521",
    ike_proposal="aes256gcm16-prfsha512-ecp521",
    child_proposal="aes128gmac",
    check_negotiation=True,
)
AES_CMAC = TestCase(
    name="aes-cmac",
    description="AES-CBC-128/AES-CMAC-96 ESP (RFC 4494) under an AES-CBC-256/HMAC-SHA2-512 IKE SA with MODP-4096 "
                "(Libreswan 4.10 has AES-CMAC for ESP/AH only)",
    ike_proposal="aes256-sha512-modp4096",
    child_proposal="aes128-aescmac",
    check_negotiation=True,
)

CASES = [AES_GCM_CURVE25519, AES_CBC_SHA384_ECP384, AES_CBC_SHA1_ECP256,
         AES_CTR, AES_CCM, CAMELLIA, TRIPLE_DES, CHACHA20, AES_GMAC, AES_CMAC]

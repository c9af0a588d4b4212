"""IANA "Internet Key Exchange Version 2 (IKEv2) Parameters": transform types and ids.

Only the numbers live here (no cryptography imports), so every layer can name a
transform without pulling in the primitives.  Values are from the IANA registry
(RFC 7296 section 3.3.2 and the registrations that followed it: RFC 5282,
RFC 4106, RFC 4543, RFC 4868, RFC 5903, RFC 7634, RFC 8031).  What each transform is
called elsewhere (strongSwan, Libreswan, OpenIKED, the kernel, Wireshark) is in
``algorithms.py``, keyed by these ids.
"""

from __future__ import annotations

from enum import IntEnum


class TransformType(IntEnum):
    """Transform Type Values (RFC 7296 3.3.2)."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    KE = 4  # "Diffie-Hellman Group" before RFC 9370 renamed it
    ESN = 5


class EncrId(IntEnum):
    """Transform Type 1 - Encryption Algorithm Transform IDs."""

    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3
    RC5 = 4
    IDEA = 5
    CAST = 6
    BLOWFISH = 7
    THREE_IDEA = 8
    DES_IV32 = 9
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CAMELLIA_CBC = 23
    CAMELLIA_CTR = 24
    CAMELLIA_CCM_8 = 25
    CAMELLIA_CCM_12 = 26
    CAMELLIA_CCM_16 = 27
    CHACHA20_POLY1305 = 28


class PrfId(IntEnum):
    """Transform Type 2 - Pseudorandom Function Transform IDs."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_TIGER = 3
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8


class IntegId(IntEnum):
    """Transform Type 3 - Integrity Algorithm Transform IDs."""

    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    DES_MAC = 3
    KPDK_MD5 = 4
    AES_XCBC_96 = 5
    HMAC_MD5_128 = 6
    HMAC_SHA1_160 = 7
    AES_CMAC_96 = 8
    AES_128_GMAC = 9
    AES_192_GMAC = 10
    AES_256_GMAC = 11
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14
    # ipseclab's own ids in the private-use range (RFC 7296 3.3.2: 1024-65535) for what Wireshark's key
    # tables name without an IANA id: read from captures only, never proposed (the registry's ``legacy``)
    HMAC_SHA2_256_96 = 65001  # draft-ietf-ipsec-ciph-sha-256-00, the Linux kernel's `auth hmac(sha256)` default
    HMAC_RIPEMD160_96 = 65002  # RFC 2857
    ANY_64_UNCHECKED = 65064  # Wireshark's "ANY n bit authentication [no checking]": an n-bit ICV, not verified
    ANY_96_UNCHECKED = 65096
    ANY_128_UNCHECKED = 65128
    ANY_160_UNCHECKED = 65160
    ANY_192_UNCHECKED = 65192
    ANY_256_UNCHECKED = 65256


class KeId(IntEnum):
    """Transform Type 4 - Key Exchange Method Transform IDs (Diffie-Hellman groups)."""

    NONE = 0
    MODP768 = 1
    MODP1024 = 2
    MODP1536 = 5
    MODP2048 = 14
    MODP3072 = 15
    MODP4096 = 16
    MODP6144 = 17
    MODP8192 = 18
    ECP256 = 19
    ECP384 = 20
    ECP521 = 21
    MODP1024_160 = 22
    MODP2048_224 = 23
    MODP2048_256 = 24
    ECP192 = 25
    ECP224 = 26
    BRAINPOOL224 = 27
    BRAINPOOL256 = 28
    BRAINPOOL384 = 29
    BRAINPOOL512 = 30
    CURVE25519 = 31
    CURVE448 = 32


class AuthMethod(IntEnum):
    """IKEv2 Authentication Method (IANA)."""

    RSA_SIG = 1
    SHARED_KEY_MIC = 2
    DSS_SIG = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GENERIC_SECURE_PASSWORD = 12
    NULL = 13
    DIGITAL_SIGNATURE = 14


class EsnId(IntEnum):
    """Transform Type 5 - Extended Sequence Numbers Transform IDs."""

    NO_ESN = 0
    ESN = 1


class TransformAttr(IntEnum):
    """IKEv2 Transform Attribute Types."""

    KEY_LENGTH = 14


def transform_enum(ttype: int) -> type[IntEnum] | None:
    """The id enum for a transform type, or None for a type we do not know."""
    enums: dict[int, type[IntEnum]] = {
        TransformType.ENCR: EncrId,
        TransformType.PRF: PrfId,
        TransformType.INTEG: IntegId,
        TransformType.KE: KeId,
        TransformType.ESN: EsnId,
    }
    return enums.get(ttype)


def transform_name(ttype: int, tid: int) -> str:
    """A readable name such as ``ENCR_AES_GCM_16`` or ``PRF_7?`` for unknown ids."""
    try:
        prefix = TransformType(ttype).name
    except ValueError:
        return f"TYPE{ttype}_{tid}"
    enum = transform_enum(ttype)
    if enum is not None:
        try:
            return f"{prefix}_{enum(tid).name}"
        except ValueError:
            pass
    return f"{prefix}_{tid}?"

"""Keyed MAC functions shared by the PRF and integrity transforms.

HMAC goes through the standard library (OpenSSL underneath, the fastest path in
CPython); AES-XCBC (RFC 3566) is built from AES-CBC/ECB; AES-CMAC comes from
``cryptography``.  Each function takes ``(key, data)`` and returns the full MAC.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import lru_cache

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from ..errors import CryptoError

MacFunc = Callable[[bytes, bytes], bytes]

_ZERO16 = bytes(16)


def hmac_func(digest: str) -> MacFunc:
    """HMAC over the named hashlib digest ("sha1", "sha256", ...)."""

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, digest)

    mac.__name__ = f"hmac_{digest}"
    return mac


@lru_cache(maxsize=256)
def _xcbc_subkeys(key: bytes) -> tuple[CipherContext, int, int]:
    """K1 as a long-lived ECB context, K2 and K3 as integers (RFC 3566 4.2 step 1)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    k123 = enc.update(b"\x01" * 16 + b"\x02" * 16 + b"\x03" * 16)
    k1 = Cipher(algorithms.AES(k123[:16]), modes.ECB()).encryptor()
    return k1, int.from_bytes(k123[16:32], "big"), int.from_bytes(k123[32:], "big")


def aes_xcbc_mac(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-MAC with a 128-bit key, the full 16-byte result (RFC 3566 section 4)."""
    if len(key) != 16:
        raise CryptoError(f"AES-XCBC-MAC needs a 16-byte key, got {len(key)} bytes")
    k1, k2, k3 = _xcbc_subkeys(bytes(key))
    n = len(data)
    if n and n % 16 == 0:
        cut, last, k_last = n - 16, data[-16:], k2
    else:
        cut = n - n % 16
        last, k_last = data[cut:] + b"\x80" + bytes(15 - n % 16), k3
    e = 0
    for i in range(0, cut, 16):
        e = int.from_bytes(k1.update((e ^ int.from_bytes(data[i : i + 16], "big")).to_bytes(16, "big")), "big")
    x = int.from_bytes(last, "big") ^ e ^ k_last
    return k1.update(x.to_bytes(16, "big"))


def aes_xcbc_prf_key(key: bytes) -> bytes:
    """Normalise a key of any length for AES-XCBC-PRF-128 (RFC 4434 section 2)."""
    if len(key) == 16:
        return key
    if len(key) < 16:
        return key + bytes(16 - len(key))
    return aes_xcbc_mac(_ZERO16, key)


def aes_xcbc_prf(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-PRF-128 (RFC 4434): any key length, 16-byte output."""
    return aes_xcbc_mac(aes_xcbc_prf_key(key), data)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (RFC 4493), the full 16-byte result."""
    if len(key) not in (16, 24, 32):
        raise CryptoError(f"AES-CMAC needs a 16, 24 or 32-byte key, got {len(key)} bytes")
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def aes_cmac_prf(key: bytes, data: bytes) -> bytes:
    """AES-CMAC-PRF-128 (RFC 4615): keys that are not 16 bytes are first CMACed with a zero key."""
    if len(key) != 16:
        key = aes_cmac(_ZERO16, key)
    return aes_cmac(key, data)

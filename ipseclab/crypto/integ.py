"""Integrity algorithms (transform type 3) for the IKE SK payload, ESP and AH.

Verification is constant-time (``hmac.compare_digest``) over the truncated ICV,
which is what Scapy's SecurityAssociation does not do.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..errors import IntegrityError, UnsupportedTransformError
from .mac import MacFunc, aes_cmac, aes_xcbc_mac, hmac_func
from .registry import IntegId


@dataclass(frozen=True, slots=True)
class Integ:
    """An integrity transform: a MAC truncated to ``icv_size`` bytes."""

    id: IntegId
    name: str
    key_size: int
    icv_size: int
    mac: MacFunc

    def compute(self, key: bytes, data: bytes) -> bytes:
        """The (truncated) ICV of ``data``."""
        return self.mac(key, data)[: self.icv_size]

    def verify(self, key: bytes, data: bytes, icv: bytes) -> None:
        """Raise IntegrityError unless ``icv`` is the ICV of ``data`` (constant-time compare)."""
        if not hmac.compare_digest(self.mac(key, data)[: self.icv_size], icv):
            raise IntegrityError(f"{self.name} ICV mismatch")


_INTEGS: dict[int, Integ] = {
    i.id: i
    for i in (
        Integ(IntegId.HMAC_SHA1_96, "AUTH_HMAC_SHA1_96", 20, 12, hmac_func("sha1")),
        Integ(IntegId.HMAC_SHA1_160, "AUTH_HMAC_SHA1_160", 20, 20, hmac_func("sha1")),
        Integ(IntegId.HMAC_MD5_96, "AUTH_HMAC_MD5_96", 16, 12, hmac_func("md5")),
        Integ(IntegId.HMAC_SHA2_256_128, "AUTH_HMAC_SHA2_256_128", 32, 16, hmac_func("sha256")),
        Integ(IntegId.HMAC_SHA2_384_192, "AUTH_HMAC_SHA2_384_192", 48, 24, hmac_func("sha384")),
        Integ(IntegId.HMAC_SHA2_512_256, "AUTH_HMAC_SHA2_512_256", 64, 32, hmac_func("sha512")),
        Integ(IntegId.AES_XCBC_96, "AUTH_AES_XCBC_96", 16, 12, aes_xcbc_mac),
        Integ(IntegId.AES_CMAC_96, "AUTH_AES_CMAC_96", 16, 12, aes_cmac),
    )
}


def get_integ(integ_id: int) -> Integ:
    """The integrity transform for an IANA id; UnsupportedTransformError when unknown."""
    try:
        return _INTEGS[integ_id]
    except KeyError:
        raise UnsupportedTransformError(
            f"integrity transform id {integ_id} is not supported (supported: {sorted(_INTEGS)})"
        ) from None


def supported_integs() -> list[Integ]:
    """Every integrity algorithm ipseclab implements."""
    return list(_INTEGS.values())

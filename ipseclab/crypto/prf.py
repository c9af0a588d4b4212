"""IKEv2 pseudo-random functions (transform type 2) and prf+ (RFC 7296 section 2.13)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedTransformError
from .mac import MacFunc, aes_cmac_prf, aes_xcbc_prf, hmac_func
from .registry import PrfId


@dataclass(frozen=True, slots=True)
class Prf:
    """A PRF transform.

    ``key_size`` is the preferred key length (RFC 7296 2.13: the length of SK_d,
    SK_pi and SK_pr); ``fixed_key`` marks PRFs that take only that key length
    (the AES based ones), which changes how SKEYSEED is keyed (RFC 7296 2.14).
    """

    id: PrfId
    name: str
    key_size: int
    output_size: int
    fixed_key: bool
    mac: MacFunc

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return self.mac(key, data)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ (RFC 7296 2.13): T1 | T2 | ... truncated to ``length`` bytes."""
        if length > 255 * self.output_size:
            raise UnsupportedTransformError(
                f"prf+ with {self.name} can give at most {255 * self.output_size} bytes, {length} asked"
            )
        out = bytearray()
        t = b""
        counter = 1
        while len(out) < length:
            t = self.mac(key, t + seed + bytes((counter,)))
            out += t
            counter += 1
        return bytes(out[:length])


_PRFS: dict[int, Prf] = {
    p.id: p
    for p in (
        Prf(PrfId.HMAC_SHA1, "PRF_HMAC_SHA1", 20, 20, False, hmac_func("sha1")),
        Prf(PrfId.HMAC_SHA2_256, "PRF_HMAC_SHA2_256", 32, 32, False, hmac_func("sha256")),
        Prf(PrfId.HMAC_SHA2_384, "PRF_HMAC_SHA2_384", 48, 48, False, hmac_func("sha384")),
        Prf(PrfId.HMAC_SHA2_512, "PRF_HMAC_SHA2_512", 64, 64, False, hmac_func("sha512")),
        Prf(PrfId.HMAC_MD5, "PRF_HMAC_MD5", 16, 16, False, hmac_func("md5")),
        Prf(PrfId.AES128_XCBC, "PRF_AES128_XCBC", 16, 16, True, aes_xcbc_prf),
        Prf(PrfId.AES128_CMAC, "PRF_AES128_CMAC", 16, 16, True, aes_cmac_prf),
    )
}


def get_prf(prf_id: int) -> Prf:
    """The PRF for an IANA id; UnsupportedTransformError names the id when unknown."""
    try:
        return _PRFS[prf_id]
    except KeyError:
        raise UnsupportedTransformError(
            f"PRF transform id {prf_id} is not supported (supported: {sorted(_PRFS)})"
        ) from None


def supported_prfs() -> list[Prf]:
    """Every PRF ipseclab implements."""
    return list(_PRFS.values())

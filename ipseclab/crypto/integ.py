"""Integrity algorithms (transform type 3) for the IKE SK payload, ESP and AH.

Verification is constant-time (``hmac.compare_digest``) over the truncated ICV,
which is what Scapy's SecurityAssociation does not do.

``Integ.compute(key, data)`` is stateless (the IKE codec's use); ``Integ.keyed(key)`` gives a
:class:`KeyedInteg` for an SA's lifetime.  For HMAC it keeps the two hash states after the
padded key blocks (RFC 2104: ``H(K ^ opad, H(K ^ ipad, text))``), so a packet costs two state
copies and the hashing of its own bytes; ``hmac.digest`` would redo both key blocks per packet,
about a microsecond more on a 1400-byte packet.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ..errors import IntegrityError, UnsupportedTransformError
from .algorithms import algorithm
from .mac import MacFunc, aes_cmac, aes_xcbc_mac, hmac_func
from .registry import IntegId, TransformType


@dataclass(frozen=True, slots=True)
class Integ:
    """An integrity transform: a MAC truncated to ``icv_size`` bytes."""

    id: IntegId
    name: str
    key_size: int
    icv_size: int
    mac: MacFunc
    hash_name: str | None = None  # the hashlib digest of an HMAC transform (keyed fast path)
    checked: bool = True  # False for Wireshark's "ANY n bit [no checking]" rows: the ICV is skipped, not verified

    def keyed(self, key: bytes) -> KeyedInteg:
        """This transform bound to ``key``: the object an SA keeps (see the module docstring)."""
        return KeyedInteg(self, key)

    def compute(self, key: bytes, data: bytes) -> bytes:
        """The (truncated) ICV of ``data``."""
        return self.mac(key, data)[: self.icv_size]

    def verify(self, key: bytes, data: bytes, icv: bytes) -> None:
        """Raise IntegrityError unless ``icv`` is the ICV of ``data`` (constant-time compare)."""
        if not self.checked:
            return
        if not hmac.compare_digest(self.mac(key, data)[: self.icv_size], icv):
            raise IntegrityError(f"{self.name} ICV mismatch")


class KeyedInteg:
    """An integrity transform with its key: ``compute(data, tail)`` is the ICV of ``data + tail``.

    ``tail`` spares the caller a concatenation for what is authenticated but never sent
    (the ESN high-order bits of RFC 4303 3.3.2.1.1 and RFC 4302 3.3.3.2.2).
    """

    __slots__ = ("_inner", "_key", "_mac", "_outer", "checked", "icv_size", "name")

    def __init__(self, integ: Integ, key: bytes) -> None:
        self.name = integ.name
        self.icv_size = integ.icv_size
        self.checked = integ.checked
        self._key = bytes(key)
        self._mac = integ.mac
        self._inner: hashlib._Hash | None = None
        self._outer: hashlib._Hash | None = None
        if integ.hash_name is not None:
            inner = hashlib.new(integ.hash_name)
            block = inner.block_size
            k = self._key if len(self._key) <= block else hashlib.new(integ.hash_name, self._key).digest()
            k = k.ljust(block, b"\0")
            inner.update(bytes(b ^ 0x36 for b in k))
            outer = hashlib.new(integ.hash_name, bytes(b ^ 0x5C for b in k))
            self._inner, self._outer = inner, outer

    def compute(self, data: bytes, tail: bytes = b"") -> bytes:
        """The (truncated) ICV of ``data`` followed by ``tail``."""
        inner = self._inner
        if inner is None or self._outer is None:
            return self._mac(self._key, data + tail if tail else data)[: self.icv_size]
        h = inner.copy()
        h.update(data)
        if tail:
            h.update(tail)
        o = self._outer.copy()
        o.update(h.digest())
        return o.digest()[: self.icv_size]

    def verify(self, data: bytes, icv: bytes, tail: bytes = b"") -> None:
        """Raise IntegrityError unless ``icv`` is the ICV of ``data + tail`` (constant-time compare)."""
        if not self.checked:
            return
        if not hmac.compare_digest(self.compute(data, tail), icv):
            raise IntegrityError(f"{self.name} ICV mismatch")


def _integ(iid: IntegId, mac: MacFunc, hash_name: str | None = None, checked: bool = True) -> Integ:
    """The transform for a MAC: key and ICV lengths from the algorithm registry."""
    alg = algorithm(TransformType.INTEG, iid)
    if alg is None:  # pragma: no cover - every id implemented here is a registry row (a unit test checks)
        raise UnsupportedTransformError(f"integrity transform {iid.name} is not in the algorithm registry")
    return Integ(iid, "AUTH_" + alg.iana_name, alg.key_bits[0] // 8, alg.icv, mac, hash_name, checked)


def _unchecked(key: bytes, data: bytes) -> bytes:
    """The "MAC" of Wireshark's "ANY n bit [no checking]" rows: zeros (what is sent is never compared)."""
    return bytes(32)


_INTEGS: dict[int, Integ] = {
    i.id: i
    for i in (
        _integ(IntegId.HMAC_SHA1_96, hmac_func("sha1"), "sha1"),
        _integ(IntegId.HMAC_SHA1_160, hmac_func("sha1"), "sha1"),
        _integ(IntegId.HMAC_MD5_96, hmac_func("md5"), "md5"),
        _integ(IntegId.HMAC_MD5_128, hmac_func("md5"), "md5"),
        _integ(IntegId.HMAC_SHA2_256_128, hmac_func("sha256"), "sha256"),
        _integ(IntegId.HMAC_SHA2_384_192, hmac_func("sha384"), "sha384"),
        _integ(IntegId.HMAC_SHA2_512_256, hmac_func("sha512"), "sha512"),
        _integ(IntegId.AES_XCBC_96, aes_xcbc_mac),
        _integ(IntegId.AES_CMAC_96, aes_cmac),
        # read-only rows of Wireshark's tables (private-use ids, never proposed)
        _integ(IntegId.HMAC_SHA2_256_96, hmac_func("sha256"), "sha256"),
        _integ(IntegId.HMAC_RIPEMD160_96, hmac_func("ripemd160"), "ripemd160"),
        *(_integ(iid, _unchecked, checked=False)
          for iid in (IntegId.ANY_64_UNCHECKED, IntegId.ANY_96_UNCHECKED, IntegId.ANY_128_UNCHECKED,
                      IntegId.ANY_160_UNCHECKED, IntegId.ANY_192_UNCHECKED, IntegId.ANY_256_UNCHECKED)),
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

"""Encryption transforms (transform type 1) for the IKE SK payload and ESP.

One interface for both families: ``Encr.keyed(key)`` gives a :class:`KeyedCipher`
whose ``encrypt(iv, plaintext, aad)`` returns ciphertext (followed by the tag
for AEAD) and whose ``decrypt`` reverses it, raising :class:`IntegrityError` on
a bad tag.  For AEAD transforms the key material carries the salt at its end
(RFC 4106 / RFC 5282 / RFC 7634: 4 bytes), and the nonce is ``salt || iv``.
Keyed objects keep the expensive key schedule so that an SA builds it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import CryptoError, IntegrityError, UnsupportedTransformError
from .algorithms import algorithm
from .blockmodes import Cbc, Ccm, Ctr
from .registry import EncrId, TransformType, transform_name


class KeyedCipher(Protocol):
    """An encryption transform bound to a key."""

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes: ...

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes: ...


@dataclass(frozen=True, slots=True)
class Encr:
    """An encryption transform with a fixed key length.

    ``key_size`` is the length of the key material taken from KEYMAT/prf+
    (cipher key plus salt).  ``block_size`` is the padding unit of the SK payload
    (RFC 7296 3.14: 1 for stream-like modes; ESP aligns to 4 on top).
    """

    id: EncrId
    name: str
    key_bits: int
    salt_size: int
    block_size: int
    iv_size: int
    icv_size: int
    aead: bool
    ike: bool  # usable in the IKE SK payload (NULL and GMAC are ESP-only)

    @property
    def key_size(self) -> int:
        return self.key_bits // 8 + self.salt_size

    def keyed(self, key: bytes) -> KeyedCipher:
        """Bind a key (cipher key followed by the salt for AEAD)."""
        if len(key) != self.key_size:
            raise CryptoError(f"{self.name} needs {self.key_size} bytes of key material, got {len(key)}")
        if self.id == EncrId.AES_CBC:
            return _AesCbc(key)
        if self.id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16):
            return _AesGcm(key[:-4], key[-4:], self.icv_size)
        if self.id == EncrId.CHACHA20_POLY1305:
            return _ChaCha(key[:-4], key[-4:])
        if self.id == EncrId.NULL_AUTH_AES_GMAC:
            return _AesGmac(key[:-4], key[-4:])
        if self.id == EncrId.NULL:
            return _Null()
        if self.id in _CBC:
            return Cbc(_CBC[self.id], key)
        if self.id in _CTR:
            return Ctr(_CTR[self.id], key[:-4], key[-4:])
        if self.id in _CCM:
            return Ccm(_CCM[self.id], key[:-3], key[-3:], self.icv_size)
        raise UnsupportedTransformError(f"no implementation for {self.name}")  # pragma: no cover


class _AesCbc:
    """AES-CBC on two CBC contexts kept for the key's lifetime.

    Building a CBC context costs ~20 us in ``cryptography``.  A long-lived one chains
    each message from the previous message's last block, so only the first block of a
    message needs correcting (one 16-byte XOR): a 1400-byte ESP packet decrypts in about
    half a microsecond, where XOR-ing the whole message as one big integer took five.
    """

    __slots__ = ("_dec", "_dlast", "_enc", "_last")

    def __init__(self, key: bytes) -> None:
        alg = algorithms.AES(key)
        # One CBC encryptor for the key's lifetime: it chains from the last block it
        # produced, so a message with a fresh IV only needs its first block adjusted.
        self._enc = Cipher(alg, modes.CBC(bytes(16))).encryptor()
        self._last = 0
        # The same for decryption: the decryptor chains from the last ciphertext block it was
        # fed, so only the first plaintext block of a message needs that block swapped for the IV.
        self._dec = Cipher(alg, modes.CBC(bytes(16))).decryptor()
        self._dlast = 0

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        if len(plaintext) % 16 or len(iv) != 16:
            raise CryptoError(f"AES-CBC needs a 16-byte IV and whole blocks, got {len(iv)} and {len(plaintext)}")
        if not plaintext:
            return b""
        first = int.from_bytes(plaintext[:16], "big") ^ int.from_bytes(iv, "big") ^ self._last
        out = self._enc.update(first.to_bytes(16, "big") + plaintext[16:])
        self._last = int.from_bytes(out[-16:], "big")
        return out

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        if len(data) % 16 or len(iv) != 16:
            raise CryptoError(f"AES-CBC needs a 16-byte IV and whole blocks, got {len(iv)} and {len(data)}")
        if not data:
            return b""
        out = self._dec.update(data)
        first = int.from_bytes(out[:16], "big") ^ self._dlast ^ int.from_bytes(iv, "big")
        self._dlast = int.from_bytes(data[-16:], "big")
        return first.to_bytes(16, "big") + out[16:]


class _AesGcm:
    __slots__ = ("_aead", "_alg", "_icv", "_salt")

    def __init__(self, key: bytes, salt: bytes, icv_size: int) -> None:
        self._salt = salt
        self._icv = icv_size
        self._aead = AESGCM(key)
        self._alg = algorithms.AES(key)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        out = self._aead.encrypt(self._salt + iv, plaintext, aad)
        if self._icv == 16:
            return out
        return out[: len(out) - 16 + self._icv]

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        if len(data) < self._icv:
            raise IntegrityError(f"AES-GCM data shorter than its {self._icv}-byte ICV")
        try:
            if self._icv == 16:
                return self._aead.decrypt(self._salt + iv, data, aad)
            ct, tag = data[: -self._icv], data[-self._icv :]
            dec = Cipher(self._alg, modes.GCM(self._salt + iv, tag, min_tag_length=self._icv)).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(ct) + dec.finalize()
        except InvalidTag:
            raise IntegrityError(f"AES-GCM-{self._icv * 8} ICV mismatch") from None


class _ChaCha:
    __slots__ = ("_aead", "_salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        self._salt = salt
        self._aead = ChaCha20Poly1305(key)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self._aead.encrypt(self._salt + iv, plaintext, aad)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        try:
            return self._aead.decrypt(self._salt + iv, data, aad)
        except InvalidTag:
            raise IntegrityError("ChaCha20-Poly1305 ICV mismatch") from None


class _AesGmac:
    """ENCR_NULL_AUTH_AES_GMAC (RFC 4543): the payload stays clear and is authenticated as AAD."""

    __slots__ = ("_aead", "_salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        self._salt = salt
        self._aead = AESGCM(key)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return plaintext + self._aead.encrypt(self._salt + iv, b"", aad + iv + plaintext)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        if len(data) < 16:
            raise IntegrityError("AES-GMAC data shorter than its 16-byte ICV")
        plaintext, tag = data[:-16], data[-16:]
        try:
            self._aead.decrypt(self._salt + iv, tag, aad + iv + plaintext)
        except InvalidTag:
            raise IntegrityError("AES-GMAC ICV mismatch") from None
        return plaintext


class _Null:
    __slots__ = ()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return plaintext

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        return data


AeadFunc = Callable[[bytes, bytes, bytes], bytes]
# what a raw AEAD open raises on a bad tag (the ESP fast path catches it and raises IntegrityError)
AeadTagError = InvalidTag


def raw_aead(cipher: KeyedCipher) -> tuple[AeadFunc, AeadFunc, bytes] | None:
    """(seal, open, salt) when ``cipher`` is exactly ``seal(salt + iv, data, aad)`` / ``open(...)``, else None.

    True of AES-GCM with the full 16-byte ICV and of ChaCha20-Poly1305.  The ESP data
    plane calls these directly: a Python frame less per packet is a tenth of its cost.
    ``open`` raises :data:`AeadTagError` (not IntegrityError) on a bad tag.
    """
    if (isinstance(cipher, _AesGcm) and cipher._icv == 16) or isinstance(cipher, _ChaCha):
        return cipher._aead.encrypt, cipher._aead.decrypt, cipher._salt
    return None


# the block-cipher primitive behind each CBC, counter-mode and CCM transform (crypto/blockmodes.py)
_CBC = {EncrId.TRIPLE_DES: "3des", EncrId.DES: "des", EncrId.BLOWFISH: "blowfish", EncrId.CAST: "cast5",
        EncrId.CAMELLIA_CBC: "camellia"}
_CTR = {EncrId.AES_CTR: "aes", EncrId.CAMELLIA_CTR: "camellia"}
_CCM = {EncrId.AES_CCM_8: "aes", EncrId.AES_CCM_12: "aes", EncrId.AES_CCM_16: "aes",
        EncrId.CAMELLIA_CCM_8: "camellia", EncrId.CAMELLIA_CCM_12: "camellia", EncrId.CAMELLIA_CCM_16: "camellia"}

# What only the implementation knows: (SK/ESP padding block, IV bytes, usable in IKE). Names, key
# lengths, salt and ICV come from the algorithm registry (crypto/algorithms.py); whether a transform
# is only read from captures (DES, Blowfish, CAST: never proposed) is the registry's ``legacy``.
_TABLE: dict[int, tuple[int, int, bool]] = {
    EncrId.AES_CBC: (16, 16, True),
    EncrId.AES_CTR: (1, 8, True),
    EncrId.AES_CCM_8: (1, 8, True),
    EncrId.AES_CCM_12: (1, 8, True),
    EncrId.AES_CCM_16: (1, 8, True),
    EncrId.TRIPLE_DES: (8, 8, True),
    EncrId.CAMELLIA_CBC: (16, 16, True),
    EncrId.CAMELLIA_CTR: (1, 8, True),
    EncrId.CAMELLIA_CCM_8: (1, 8, True),
    EncrId.CAMELLIA_CCM_12: (1, 8, True),
    EncrId.CAMELLIA_CCM_16: (1, 8, True),
    EncrId.DES: (8, 8, True),
    EncrId.BLOWFISH: (8, 8, True),
    EncrId.CAST: (8, 8, True),
    EncrId.AES_GCM_8: (1, 8, True),
    EncrId.AES_GCM_12: (1, 8, True),
    EncrId.AES_GCM_16: (1, 8, True),
    EncrId.CHACHA20_POLY1305: (1, 8, True),
    EncrId.NULL_AUTH_AES_GMAC: (1, 8, False),
    EncrId.NULL: (1, 0, False),
}


@lru_cache(maxsize=128)
def get_encr(encr_id: int, key_bits: int | None = None) -> Encr:
    """The encryption transform for an IANA id and key length (the Key Length attribute).

    ``key_bits`` may be omitted only for transforms with a single key length
    (ChaCha20-Poly1305, NULL); AES needs it, as RFC 7296 3.3.5 requires the
    attribute for variable-length ciphers.
    """
    alg = algorithm(TransformType.ENCR, encr_id)
    if encr_id not in _TABLE or alg is None:
        raise UnsupportedTransformError(
            f"encryption transform id {encr_id} is not supported (supported: {sorted(_TABLE)})"
        )
    block, iv, ike = _TABLE[encr_id]
    name, sizes = transform_name(TransformType.ENCR, encr_id), alg.key_bits
    if key_bits is None:
        if len(sizes) != 1:
            raise UnsupportedTransformError(f"{name} needs a key length (one of {sizes} bits)")
        key_bits = sizes[0]
    if key_bits not in sizes:
        raise UnsupportedTransformError(f"{name} does not take a {key_bits}-bit key (one of {sizes})")
    return Encr(EncrId(encr_id), name, key_bits, alg.salt, block, iv, alg.icv, alg.aead, ike)


def supported_encrs() -> list[Encr]:
    """Every (transform, key length) pair ipseclab implements."""
    return [get_encr(eid, bits) for eid in _TABLE for bits in _key_bits(eid)]


def _key_bits(encr_id: int) -> tuple[int, ...]:
    alg = algorithm(TransformType.ENCR, encr_id)
    return alg.key_bits if alg is not None else ()

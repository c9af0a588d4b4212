"""Block-cipher modes for the ciphers ``cryptography`` has no ready AEAD or CTR object for.

IPsec uses CBC (RFC 2451, 3602, 4312: 3DES, DES, Blowfish, CAST5, Camellia), counter mode with a
4-byte nonce from the key material (RFC 3686 for AES, RFC 5528 for Camellia; RFC 5930 for IKE)
and CCM with a 3-byte salt (RFC 4309 for AES, RFC 5529 for Camellia; RFC 5282 for IKE).
``cryptography`` has AES-CCM (``AESCCM``) and AES-CTR, but Camellia only in ECB and CBC, so CTR
and CCM are built here from the block cipher itself, once, for both: the same code runs the
AES and the Camellia vectors (NIST SP 800-38C, RFC 3686, RFC 5528), which is its check.

Legacy ciphers come from ``cryptography``'s ``decrepit`` module, the only place it still keeps
them; single DES is 3DES with the key three times (EDE with K1=K2=K3 is DES).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish, TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from ..errors import CryptoError, IntegrityError

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import Camellia
except ImportError:  # pragma: no cover - cryptography releases before Camellia moved to decrepit
    from cryptography.hazmat.primitives.ciphers.algorithms import Camellia

BlockFactory = Callable[[bytes], BlockCipherAlgorithm]


def _des(key: bytes) -> BlockCipherAlgorithm:
    return TripleDES(key * 3)


# primitive name -> (factory, block bytes)
BLOCK_CIPHERS: dict[str, tuple[BlockFactory, int]] = {
    "aes": (algorithms.AES, 16),
    "camellia": (Camellia, 16),
    "3des": (TripleDES, 8),
    "des": (_des, 8),
    "blowfish": (Blowfish, 8),
    "cast5": (CAST5, 8),
}


def block_cipher(name: str, key: bytes) -> tuple[BlockCipherAlgorithm, int]:
    """The keyed primitive and its block size; CryptoError for a key it does not take."""
    factory, block = BLOCK_CIPHERS[name]
    try:
        return factory(key), block
    except ValueError as exc:
        raise CryptoError(f"{name}: {exc}") from None


class Cbc:
    """CBC with a fresh IV per message (ESP and the SK payload carry it in front of the data)."""

    __slots__ = ("_alg", "_block", "_name")

    def __init__(self, name: str, key: bytes) -> None:
        self._name = name
        self._alg, self._block = block_cipher(name, key)

    def _check(self, iv: bytes, data: bytes) -> None:
        if len(data) % self._block or len(iv) != self._block:
            raise CryptoError(f"{self._name}-CBC needs a {self._block}-byte IV and whole blocks, "
                              f"got {len(iv)} and {len(data)}")

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._check(iv, plaintext)
        enc = Cipher(self._alg, modes.CBC(iv)).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        self._check(iv, data)
        dec = Cipher(self._alg, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()


def _keystream(ecb: Callable[[bytes], bytes], first: bytes, length: int) -> bytes:
    """``length`` bytes of counter-mode key stream from the 16-byte counter block ``first``."""
    n = (length + 15) // 16
    start = int.from_bytes(first, "big")
    blocks = b"".join(((start + i) & ((1 << 128) - 1)).to_bytes(16, "big") for i in range(n))
    return ecb(blocks)[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class Ctr:
    """Counter mode as RFC 3686 (AES) and RFC 5528 (Camellia) use it: block = nonce(4) || IV(8) || counter(4) from 1.

    Key material is the cipher key followed by the 4-byte nonce.  Encryption and decryption are
    the same XOR; there is no padding (ESP still aligns its trailer to 4 bytes).
    """

    __slots__ = ("_ecb", "_nonce")

    def __init__(self, name: str, key: bytes, nonce: bytes) -> None:
        alg, block = block_cipher(name, key)
        if block != 16 or len(nonce) != 4:
            raise CryptoError(f"{name}-CTR needs a 16-byte block cipher and a 4-byte nonce")
        self._nonce = nonce
        self._ecb = Cipher(alg, modes.ECB()).encryptor().update

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        if len(iv) != 8:
            raise CryptoError(f"counter mode needs an 8-byte IV, got {len(iv)}")
        if not plaintext:
            return b""
        return _xor(plaintext, _keystream(self._ecb, self._nonce + iv + b"\0\0\0\x01", len(plaintext)))

    decrypt = encrypt


class Ccm:
    """CCM (RFC 3610, NIST SP 800-38C) over a 16-byte block cipher: CBC-MAC then counter mode.

    As IPsec uses it (RFC 4309, RFC 5282, RFC 5529) the nonce is salt(3) || IV(8) (an 11-byte
    nonce, so a 4-byte length field) and the ICV is 8, 12 or 16 bytes; the class takes any nonce
    length from 7 to 13 so that the RFC 3610 and NIST vectors, whose nonces are 13 bytes, run
    through it too.  AES goes through ``cryptography``'s ``AESCCM`` (OpenSSL), other ciphers
    through the construction here.
    """

    __slots__ = ("_aesccm", "_alg", "_ecb", "_icv", "_salt")

    def __init__(self, name: str, key: bytes, salt: bytes, icv: int, *, native: bool = True) -> None:
        if icv not in (4, 6, 8, 10, 12, 14, 16):
            raise CryptoError(f"CCM takes an ICV of 4 to 16 even bytes, not {icv}")
        self._alg, block = block_cipher(name, key)
        if block != 16:
            raise CryptoError(f"CCM needs a 16-byte block cipher, {name} has {block}-byte blocks")
        self._salt = salt
        self._icv = icv
        self._ecb = Cipher(self._alg, modes.ECB()).encryptor().update
        # ``native=False`` runs AES through the construction here too (so the AES vectors check it)
        self._aesccm = AESCCM(key, icv) if name == "aes" and native else None

    def _mac_and_stream(self, nonce: bytes, payload: bytes, aad: bytes) -> tuple[bytes, bytes, bytes]:
        """(T, S0, key stream for the payload) for a nonce: RFC 3610 2.2 and 2.3."""
        q = 15 - len(nonce)
        if not 2 <= q <= 8:
            raise CryptoError(f"CCM needs a 7 to 13-byte nonce, got {len(nonce)}")
        if len(payload) >= 1 << (8 * q):
            raise CryptoError(f"CCM with a {len(nonce)}-byte nonce cannot take {len(payload)} bytes")
        flags = (0x40 if aad else 0) | ((self._icv - 2) // 2) << 3 | (q - 1)
        b0 = bytes((flags,)) + nonce + len(payload).to_bytes(q, "big")
        if not aad:
            head = b""
        elif len(aad) < 0xFF00:
            head = len(aad).to_bytes(2, "big")
        elif len(aad) < 1 << 32:
            head = b"\xff\xfe" + len(aad).to_bytes(4, "big")
        else:  # pragma: no cover - no IPsec message comes near 4 GiB of associated data
            head = b"\xff\xff" + len(aad).to_bytes(8, "big")
        a = head + aad
        blob = b0 + a + bytes(-len(a) % 16) + payload + bytes(-len(payload) % 16)
        mac = Cipher(self._alg, modes.CBC(bytes(16))).encryptor().update(blob)[-16:]
        a0 = bytes((q - 1,)) + nonce + bytes(q)
        stream = _keystream(self._ecb, a0, 16 + len(payload))
        return mac[: self._icv], stream[: self._icv], stream[16:]

    def seal_nonce(self, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Ciphertext || ICV for a whole nonce (the vectors' interface)."""
        if self._aesccm is not None and len(nonce) >= 7:
            return self._aesccm.encrypt(nonce, plaintext, aad or None)
        tag, s0, stream = self._mac_and_stream(nonce, plaintext, aad)
        return (_xor(plaintext, stream) if plaintext else b"") + _xor(tag, s0)

    def open_nonce(self, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of ciphertext || ICV; IntegrityError when the ICV does not verify."""
        if len(data) < self._icv:
            raise IntegrityError(f"CCM data shorter than its {self._icv}-byte ICV")
        if self._aesccm is not None:
            try:
                return self._aesccm.decrypt(nonce, data, aad or None)
            except InvalidTag:
                raise IntegrityError(f"AES-CCM-{self._icv * 8} ICV mismatch") from None
        ct, icv = data[: len(data) - self._icv], data[len(data) - self._icv :]
        plain = _xor(ct, _keystream(self._ecb, bytes((14 - len(nonce),)) + nonce + bytes(14 - len(nonce)) + b"\x01",
                                    len(ct))) if ct else b""
        tag, s0, _ = self._mac_and_stream(nonce, plain, aad)
        if not hmac.compare_digest(_xor(tag, s0), icv):
            raise IntegrityError(f"CCM-{self._icv * 8} ICV mismatch")
        return plain

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self.seal_nonce(self._salt + iv, plaintext, aad)

    def decrypt(self, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        return self.open_nonce(self._salt + iv, data, aad)

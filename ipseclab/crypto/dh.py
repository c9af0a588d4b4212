"""Key exchange methods (transform type 4): MODP, ECP (RFC 5903) and Curve25519/448 (RFC 8031).

Wire formats follow the RFCs exactly, which is where hand-rolled IKE code most
often goes wrong:

* MODP (RFC 7296 3.4): the public value and the shared secret g^ir are padded
  with leading zeros to the length of the prime.
* ECP (RFC 5903 section 7): the KE data is x || y, each the field size, with no
  0x04 point-format octet; the shared secret is the x coordinate alone.
* Curve25519 / Curve448 (RFC 8031): the raw 32 / 56-byte u-coordinates.

The MODP primes are computed from their defining formula (RFC 2409 6.2, RFC 3526:
p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + X)) rather than pasted
as long hex strings; the tests compare them to the RFC text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519

from ..errors import CryptoError, RemoteProtocolError, UnsupportedTransformError
from .registry import KeId

_INVALID_SYNTAX = 7


def _arctan_inv(x: int, one: int) -> int:
    total = term = one // x
    x2 = x * x
    n = 1
    sign = -1
    while term:
        term //= x2
        total += sign * (term // (2 * n + 1))
        sign = -sign
        n += 1
    return total


def _pi_times_2_pow(bits: int) -> int:
    """floor(pi * 2**bits), by Machin's formula with 64 guard bits."""
    guard = 64
    one = 1 << (bits + guard)
    return (16 * _arctan_inv(5, one) - 4 * _arctan_inv(239, one)) >> guard


# group id -> (modulus bits, X of the defining formula)
_MODP: dict[int, tuple[int, int]] = {
    KeId.MODP768: (768, 149686),
    KeId.MODP1024: (1024, 129093),
    KeId.MODP1536: (1536, 741804),
    KeId.MODP2048: (2048, 124476),
    KeId.MODP3072: (3072, 1690314),
    KeId.MODP4096: (4096, 240904),
    KeId.MODP6144: (6144, 929484),
    KeId.MODP8192: (8192, 4743158),
}


@cache
def modp_prime(group: int) -> int:
    """The prime of a MODP group (generator 2), from RFC 2409 / RFC 3526's formula."""
    try:
        n, x = _MODP[group]
    except KeyError:
        raise UnsupportedTransformError(f"key exchange group {group} is not a MODP group") from None
    return (1 << n) - (1 << (n - 64)) - 1 + (1 << 64) * (_pi_times_2_pow(n - 130) + x)


@cache
def _dh_parameters(group: int) -> dh.DHParameters:
    return dh.DHParameterNumbers(modp_prime(group), 2).parameters()


class KeyExchange(Protocol):
    """One side of a key exchange: our public value, and the shared secret with a peer's."""

    group: KeGroup

    @property
    def public_bytes(self) -> bytes: ...

    def shared_secret(self, peer_public: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class KeGroup:
    """A key exchange method: its id, name and the length of its KE data."""

    id: KeId
    name: str
    public_size: int

    def generate(self, private: int | bytes | None = None) -> KeyExchange:
        """A fresh key pair, or one from a given private value (for known-answer tests).

        ``private`` is an integer exponent/scalar for MODP and ECP groups, and the
        raw private key bytes for Curve25519/448.
        """
        if self.id in _MODP:
            return _ModpExchange(self, private)
        if self.id in _CURVES:
            return _EcpExchange(self, private)
        return _XExchange(self, private)


class _Exchange:
    """What every key exchange shares: the group, our public value, the length check of the peer's."""

    group: KeGroup
    _public: bytes

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def _check_peer(self, peer_public: bytes, layout: str = "") -> None:
        size = self.group.public_size
        if len(peer_public) != size:
            raise RemoteProtocolError(
                f"{self.group.name} KE data must be {size} bytes{layout}, got {len(peer_public)}", _INVALID_SYNTAX
            )


class _ModpExchange(_Exchange):
    def __init__(self, group: KeGroup, private: int | bytes | None) -> None:
        self.group = group
        params = _dh_parameters(group.id)
        if private is None:
            self._key = params.generate_private_key()
        else:
            x = private if isinstance(private, int) else int.from_bytes(private, "big")
            pn = params.parameter_numbers()
            y = pow(pn.g, x, pn.p)
            self._key = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, pn)).private_key()
        self._public = self._key.public_key().public_numbers().y.to_bytes(group.public_size, "big")

    def shared_secret(self, peer_public: bytes) -> bytes:
        size = self.group.public_size
        self._check_peer(peer_public)
        y = int.from_bytes(peer_public, "big")
        pn = self._key.parameters().parameter_numbers()
        if not 1 < y < pn.p - 1:
            raise RemoteProtocolError(f"{self.group.name} peer public value out of range", _INVALID_SYNTAX)
        try:
            peer = dh.DHPublicNumbers(y, pn).public_key()
            secret = self._key.exchange(peer)
        except ValueError as exc:
            raise RemoteProtocolError(f"{self.group.name} key exchange failed: {exc}", _INVALID_SYNTAX) from None
        return secret.rjust(size, b"\x00")


_CURVES: dict[int, ec.EllipticCurve] = {
    KeId.ECP256: ec.SECP256R1(),
    KeId.ECP384: ec.SECP384R1(),
    KeId.ECP521: ec.SECP521R1(),
    KeId.ECP192: ec.SECP192R1(),
    KeId.ECP224: ec.SECP224R1(),
    KeId.BRAINPOOL256: ec.BrainpoolP256R1(),
    KeId.BRAINPOOL384: ec.BrainpoolP384R1(),
    KeId.BRAINPOOL512: ec.BrainpoolP512R1(),
}


class _EcpExchange(_Exchange):
    def __init__(self, group: KeGroup, private: int | bytes | None) -> None:
        self.group = group
        self._curve = _CURVES[group.id]
        if private is None:
            self._key = ec.generate_private_key(self._curve)
        else:
            d = private if isinstance(private, int) else int.from_bytes(private, "big")
            self._key = ec.derive_private_key(d, self._curve)
        point = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public = point[1:]  # RFC 5903 7: x || y without the 0x04 format octet

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_peer(peer_public, " (x || y)")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_public)
            return self._key.exchange(ec.ECDH(), peer)
        except ValueError:
            raise RemoteProtocolError(
                f"{self.group.name} peer public value is not a point on the curve", _INVALID_SYNTAX
            ) from None


class _XExchange(_Exchange):
    def __init__(self, group: KeGroup, private: int | bytes | None) -> None:
        self.group = group
        self._key: x25519.X25519PrivateKey | x448.X448PrivateKey
        if isinstance(private, int):
            raise CryptoError(f"{group.name} private keys are raw bytes, not integers")
        if group.id == KeId.CURVE25519:
            self._key = (x25519.X25519PrivateKey.generate() if private is None
                         else x25519.X25519PrivateKey.from_private_bytes(private))
        else:
            self._key = (x448.X448PrivateKey.generate() if private is None
                         else x448.X448PrivateKey.from_private_bytes(private))
        self._public = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_peer(peer_public)
        try:
            key = self._key
            if isinstance(key, x25519.X25519PrivateKey):
                return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
            assert isinstance(key, x448.X448PrivateKey)
            return key.exchange(x448.X448PublicKey.from_public_bytes(peer_public))
        except ValueError:
            # RFC 8031 2.3: an all-zero shared secret must be rejected
            raise RemoteProtocolError(f"{self.group.name} shared secret is all zero", _INVALID_SYNTAX) from None


def _ke_groups() -> dict[int, KeGroup]:
    groups = [KeGroup(KeId(g), f"MODP_{bits}", bits // 8) for g, (bits, _) in _MODP.items()]
    groups += [KeGroup(KeId(g), KeId(g).name, 2 * ((c.key_size + 7) // 8)) for g, c in _CURVES.items()]
    groups += [KeGroup(KeId.CURVE25519, "CURVE25519", 32), KeGroup(KeId.CURVE448, "CURVE448", 56)]
    return {g.id: g for g in groups}


_GROUPS = _ke_groups()


def get_ke_group(group_id: int) -> KeGroup:
    """The key exchange method for an IANA id; UnsupportedTransformError when unknown."""
    try:
        return _GROUPS[group_id]
    except KeyError:
        raise UnsupportedTransformError(
            f"key exchange method {group_id} is not supported (supported: {sorted(_GROUPS)})"
        ) from None


def supported_ke_groups() -> list[KeGroup]:
    """Every key exchange method ipseclab implements."""
    return list(_GROUPS.values())

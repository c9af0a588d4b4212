"""Stateless IKE_SA_INIT cookies (RFC 7296 2.6): ``<VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)``.

A responder under load answers IKE_SA_INIT with a COOKIE it can recompute when the initiator echoes it, so it
keeps nothing per initiator.  The hash is HMAC-SHA-256 keyed with the secret (the keyed form of the RFC's
``Hash(... | <secret>)``); the one-byte version names the secret.  The secret rotates every ``rotate_every``
seconds of the caller's clock (``now``, never read here), and a cookie made with the previous secret still
verifies until the next rotation, so an initiator that got a cookie just before a rotation is not turned back.
A cookie is bound to the initiator's address, SPI and nonce: it cannot be replayed from elsewhere or for another
IKE SA.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from .random import RandomSource, random_bytes

SECRET_SIZE = 32
COOKIE_SIZE = 1 + 32  # version byte and HMAC-SHA-256: inside RFC 7296's 1 to 64 bytes


@dataclass(slots=True)
class CookieSecrets:
    """The current and the previous secret, rotated lazily on use (see the module docstring)."""

    rotate_every: float = 120.0
    rng: RandomSource = random_bytes
    version: int = 0
    secret: bytes = b""
    previous: bytes | None = None
    next_rotation: float | None = None

    def _rotate(self, now: float) -> None:
        if self.next_rotation is None:  # the first use starts the schedule
            self.secret = self.rng(SECRET_SIZE)
            self.next_rotation = now + self.rotate_every
            return
        if now < self.next_rotation:
            return
        missed = int((now - self.next_rotation) // self.rotate_every)
        # one rotation: the old secret stays valid for one period; more: it is too old to keep
        self.previous = self.secret if missed == 0 else None
        self.secret = self.rng(SECRET_SIZE)
        self.version = (self.version + 1 + missed) % 256
        self.next_rotation += (missed + 1) * self.rotate_every

    @staticmethod
    def _mac(secret: bytes, version: int, nonce_i: bytes, ip: bytes, spi_i: bytes) -> bytes:
        return bytes([version]) + hmac.digest(secret, nonce_i + ip + spi_i, "sha256")

    def make(self, nonce_i: bytes, ip: bytes, spi_i: bytes, now: float) -> bytes:
        """The cookie for this initiator (``ip`` is its packed source address)."""
        self._rotate(now)
        return self._mac(self.secret, self.version, nonce_i, ip, spi_i)

    def verify(self, cookie: bytes, nonce_i: bytes, ip: bytes, spi_i: bytes, now: float) -> bool:
        """Whether ``cookie`` is one we made for this initiator with the current or the previous secret."""
        self._rotate(now)
        if len(cookie) != COOKIE_SIZE:
            return False
        if cookie[0] == self.version:
            secret: bytes | None = self.secret
        elif cookie[0] == (self.version - 1) % 256:
            secret = self.previous
        else:
            return False
        if secret is None:
            return False
        return hmac.compare_digest(cookie, self._mac(secret, cookie[0], nonce_i, ip, spi_i))

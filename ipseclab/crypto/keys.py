"""IKEv2 key derivation (RFC 7296 sections 2.13, 2.14, 2.17 and 2.18).

Everything here is a pure function of its inputs, so the same code serves the
engine, the ``decrypt`` command and the known-answer tests (NIST CAVP SP 800-135
IKEv2 and keys read from strongSwan's own log).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CryptoError
from .cipher import Encr, get_encr
from .dh import KeGroup, get_ke_group
from .integ import Integ, get_integ
from .prf import Prf, get_prf


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The four transforms of an IKE SA (integ is None for AEAD ciphers)."""

    encr: Encr
    prf: Prf
    integ: Integ | None
    ke: KeGroup | None = None

    @classmethod
    def from_ids(
        cls, encr: int, prf: int, integ: int | None = None, ke: int | None = None, key_bits: int | None = None
    ) -> IkeSuite:
        """Build a suite from IANA ids, checking that integrity is given iff the cipher is not AEAD."""
        e = get_encr(encr, key_bits)
        if e.aead and integ:
            raise CryptoError(f"{e.name} is an AEAD cipher: an integrity transform must not be used with it")
        if not e.aead and not integ and e.ike:
            raise CryptoError(f"{e.name} needs an integrity transform in IKE")
        return cls(e, get_prf(prf), get_integ(integ) if integ else None, get_ke_group(ke) if ke else None)

    @property
    def integ_key_size(self) -> int:
        return self.integ.key_size if self.integ else 0

    def describe(self) -> str:
        parts = [f"{self.encr.name}_{self.encr.key_bits}", self.prf.name]
        if self.integ:
            parts.append(self.integ.name)
        if self.ke:
            parts.append(self.ke.name)
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class IkeSaKeys:
    """The seven secrets of an IKE SA: {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}."""

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


@dataclass(frozen=True, slots=True)
class ChildSaKeys:
    """KEYMAT split for one Child SA pair: initiator-to-responder keys first (RFC 7296 2.17)."""

    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes


def skeyseed(prf: Prf, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 2.14).

    For PRFs with a fixed key length (AES-XCBC, AES-CMAC) whose key is not
    len(Ni) + len(Nr), half the key comes from the start of each nonce.
    """
    key = ni + nr
    if prf.fixed_key and len(key) != prf.key_size:
        half = prf.key_size // 2
        key = ni[:half] + nr[:half]
    return prf(key, g_ir)


def rekey_skeyseed(prf: Prf, old_sk_d: bytes, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED for a rekeyed IKE SA: prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 2.18).

    ``prf`` is the PRF of the *old* IKE SA.
    """
    return prf(old_sk_d, g_ir + ni + nr)


def ike_sa_keys(suite: IkeSuite, seed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes) -> IkeSaKeys:
    """Split prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into the seven IKE SA keys (RFC 7296 2.14)."""
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise CryptoError(f"IKE SPIs are 8 bytes each, got {len(spi_i)} and {len(spi_r)}")
    p, a, e = suite.prf.key_size, suite.integ_key_size, suite.encr.key_size
    km = suite.prf.plus(seed, ni + nr + spi_i + spi_r, 3 * p + 2 * a + 2 * e)
    cuts = [p, a, a, e, e, p, p]
    parts = []
    pos = 0
    for n in cuts:
        parts.append(km[pos : pos + n])
        pos += n
    return IkeSaKeys(*parts)


def derive_ike_sa(
    suite: IkeSuite, ni: bytes, nr: bytes, g_ir: bytes, spi_i: bytes, spi_r: bytes
) -> tuple[bytes, IkeSaKeys]:
    """SKEYSEED and the seven keys of a new IKE SA from an IKE_SA_INIT exchange."""
    seed = skeyseed(suite.prf, ni, nr, g_ir)
    return seed, ike_sa_keys(suite, seed, ni, nr, spi_i, spi_r)


def child_sa_keys(
    prf: Prf,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_key_size: int,
    integ_key_size: int,
    g_ir: bytes | None = None,
) -> ChildSaKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), split per RFC 7296 2.17.

    For each direction the encryption key (with its salt, for AEAD) comes first,
    then the integrity key; the initiator-to-responder SA takes its keys first.
    """
    seed = (g_ir or b"") + ni + nr
    one = encr_key_size + integ_key_size
    km = prf.plus(sk_d, seed, 2 * one)
    return ChildSaKeys(
        km[:encr_key_size],
        km[encr_key_size:one],
        km[one : one + encr_key_size],
        km[one + encr_key_size :],
    )

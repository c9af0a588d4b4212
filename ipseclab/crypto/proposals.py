"""strongSwan-style proposal strings ("aes256gcm16-prfsha256-ecp256") to IANA transform lists.

Users of this field think in these strings (swanctl.conf, ipsec.conf ike=/esp=),
so the REPL, the CLI and the lab configuration all accept them.  The keywords
are strongSwan's (``proposal_keywords_static.txt``), read from the algorithm registry
(``crypto/algorithms.py``) with the other spellings it lists (Libreswan's ``sha2_256``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError
from .algorithms import algorithm, names
from .registry import EsnId, IntegId, TransformType

# keyword -> (id, key bits): strongSwan's keywords and the aliases the registry lists
# (legacy transforms, only ever read from captures, are not proposal keywords: the engine never negotiates them)
_ENCR = names("strongswan", TransformType.ENCR, aliases=True, fixed_bits=False, legacy=False)
_INTEG = {k: v[0] for k, v in names("strongswan", TransformType.INTEG, aliases=True, legacy=False).items()}
_PRF = {k: v[0] for k, v in names("strongswan", TransformType.PRF, aliases=True).items()}
_KE = {k: v[0] for k, v in names("strongswan", TransformType.KE, aliases=True).items()}


def _prf_for_integ(integ_id: int) -> int:
    """The PRF implied by an integrity keyword when no prf... keyword is given (strongSwan's rule)."""
    alg = algorithm(TransformType.INTEG, integ_id)
    if alg is None or alg.prf is None:
        raise ConfigError(f"no PRF goes with integrity {IntegId(integ_id).name}; name one (e.g. prfsha256)")
    return alg.prf


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """One transform of a proposal: type, IANA id and key length (bits) where the type takes one."""

    type: TransformType
    id: int
    key_bits: int | None = None


def parse_proposal(text: str, protocol: str = "ike") -> list[TransformSpec]:
    """Parse ``"aes256gcm16-prfsha256-ecp256"`` (protocol "ike") or ``"aes128-sha256-esn"`` ("esp"/"ah").

    ConfigError names the keyword it does not know and lists what would be accepted.  The parse of a string is
    computed once (a handful of proposal strings are parsed at every exchange; the specs are frozen).
    """
    return list(_parse(text, protocol))


@lru_cache(maxsize=1024)
def _parse(text: str, protocol: str) -> tuple[TransformSpec, ...]:
    return tuple(_parse_uncached(text, protocol))


def _parse_uncached(text: str, protocol: str) -> list[TransformSpec]:
    if protocol not in ("ike", "esp", "ah"):
        raise ConfigError(f"protocol must be ike, esp or ah, not {protocol!r}")
    encrs: list[TransformSpec] = []
    integs: list[TransformSpec] = []
    prfs: list[TransformSpec] = []
    kes: list[TransformSpec] = []
    esns: list[TransformSpec] = []
    for word in (w.strip().lower() for w in text.split("-")):
        if not word:
            raise ConfigError(f"empty keyword in proposal {text!r}")
        if word in _ENCR and protocol != "ah":
            eid, bits = _ENCR[word]
            encrs.append(TransformSpec(TransformType.ENCR, eid, bits))
        elif word in _INTEG:
            integs.append(TransformSpec(TransformType.INTEG, _INTEG[word]))
        elif word in _PRF and protocol == "ike":
            prfs.append(TransformSpec(TransformType.PRF, _PRF[word]))
        elif word in _KE:
            kes.append(TransformSpec(TransformType.KE, _KE[word]))
        elif word in ("esn", "noesn") and protocol != "ike":
            esns.append(TransformSpec(TransformType.ESN, EsnId.ESN if word == "esn" else EsnId.NO_ESN))
        else:
            known = sorted(set(_ENCR) | set(_INTEG) | set(_KE) | (set(_PRF) if protocol == "ike" else set()))
            raise ConfigError(f"unknown {protocol} proposal keyword {word!r} in {text!r}; known: {', '.join(known)}")
    aead = [e for e in encrs if (alg := algorithm(TransformType.ENCR, e.id)) is not None and alg.aead]
    if protocol == "ike":
        if not encrs:
            raise ConfigError(f"IKE proposal {text!r} names no encryption algorithm")
        if not kes:
            raise ConfigError(f"IKE proposal {text!r} names no key exchange method (e.g. ecp256, modp2048)")
        if aead and integs:
            raise ConfigError(f"IKE proposal {text!r} mixes AEAD ciphers with integrity algorithms")
        if not aead and not integs:
            raise ConfigError(f"IKE proposal {text!r} needs an integrity algorithm for its non-AEAD cipher")
        if not prfs:
            if not integs:
                raise ConfigError(f"IKE proposal {text!r} with an AEAD cipher needs a PRF (e.g. prfsha256)")
            prfs = [TransformSpec(TransformType.PRF, _prf_for_integ(t.id)) for t in integs]
        return encrs + prfs + integs + kes
    if protocol == "esp" and not encrs:
        raise ConfigError(f"ESP proposal {text!r} names no encryption algorithm (use null for integrity only)")
    if protocol == "ah" and not integs:
        raise ConfigError(f"AH proposal {text!r} names no integrity algorithm")
    if protocol == "esp" and not aead and not integs:
        raise ConfigError(f"ESP proposal {text!r} needs an integrity algorithm for its non-AEAD cipher")
    return encrs + integs + kes + (esns or [TransformSpec(TransformType.ESN, EsnId.NO_ESN)])

"""strongSwan-style proposal strings ("aes256gcm16-prfsha256-ecp256") to IANA transform lists.

Users of this field think in these strings (swanctl.conf, ipsec.conf ike=/esp=),
so the REPL, the CLI and the lab configuration all accept them.  The keywords
are strongSwan's (``proposal_keywords_static.txt``) for the algorithms ipseclab
implements; Libreswan spellings such as ``sha2_256`` are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .registry import EncrId, EsnId, IntegId, KeId, PrfId, TransformType

_ENCR: dict[str, tuple[EncrId, int | None]] = {
    "null": (EncrId.NULL, None),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None),
}
for _bits in (128, 192, 256):
    _ENCR[f"aes{_bits}"] = (EncrId.AES_CBC, _bits)
    for _icv, _eid in ((8, EncrId.AES_GCM_8), (12, EncrId.AES_GCM_12), (16, EncrId.AES_GCM_16)):
        _ENCR[f"aes{_bits}gcm{_icv}"] = (_eid, _bits)
        _ENCR[f"aes{_bits}gcm{_icv * 8}"] = (_eid, _bits)
    _ENCR[f"aes{_bits}gmac"] = (EncrId.NULL_AUTH_AES_GMAC, _bits)
_ENCR["aes"] = (EncrId.AES_CBC, 128)

_INTEG: dict[str, IntegId] = {
    "sha1": IntegId.HMAC_SHA1_96,
    "sha": IntegId.HMAC_SHA1_96,
    "md5": IntegId.HMAC_MD5_96,
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha2_256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha2_384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
    "sha2_512": IntegId.HMAC_SHA2_512_256,
    "aesxcbc": IntegId.AES_XCBC_96,
    "aescmac": IntegId.AES_CMAC_96,
}

_PRF: dict[str, PrfId] = {
    "prfsha1": PrfId.HMAC_SHA1,
    "prfmd5": PrfId.HMAC_MD5,
    "prfsha256": PrfId.HMAC_SHA2_256,
    "prfsha384": PrfId.HMAC_SHA2_384,
    "prfsha512": PrfId.HMAC_SHA2_512,
    "prfaesxcbc": PrfId.AES128_XCBC,
    "prfaescmac": PrfId.AES128_CMAC,
}
# the PRF implied by an integrity keyword when no prf... keyword is given (strongSwan's rule)
_PRF_FOR_INTEG = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_MD5_96: PrfId.HMAC_MD5,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
    IntegId.AES_XCBC_96: PrfId.AES128_XCBC,
    IntegId.AES_CMAC_96: PrfId.AES128_CMAC,
}

_KE: dict[str, KeId] = {
    "modp768": KeId.MODP768,
    "modp1024": KeId.MODP1024,
    "modp1536": KeId.MODP1536,
    "modp2048": KeId.MODP2048,
    "modp3072": KeId.MODP3072,
    "modp4096": KeId.MODP4096,
    "modp6144": KeId.MODP6144,
    "modp8192": KeId.MODP8192,
    "ecp192": KeId.ECP192,
    "ecp224": KeId.ECP224,
    "ecp256": KeId.ECP256,
    "ecp384": KeId.ECP384,
    "ecp521": KeId.ECP521,
    "ecp256bp": KeId.BRAINPOOL256,
    "ecp384bp": KeId.BRAINPOOL384,
    "ecp512bp": KeId.BRAINPOOL512,
    "curve25519": KeId.CURVE25519,
    "x25519": KeId.CURVE25519,
    "curve448": KeId.CURVE448,
    "x448": KeId.CURVE448,
}


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """One transform of a proposal: type, IANA id and key length (bits) where the type takes one."""

    type: TransformType
    id: int
    key_bits: int | None = None


def parse_proposal(text: str, protocol: str = "ike") -> list[TransformSpec]:
    """Parse ``"aes256gcm16-prfsha256-ecp256"`` (protocol "ike") or ``"aes128-sha256-esn"`` ("esp"/"ah").

    ConfigError names the keyword it does not know and lists what would be accepted.
    """
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
    aead = [e for e in encrs if e.id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16,
                                          EncrId.CHACHA20_POLY1305, EncrId.NULL_AUTH_AES_GMAC)]
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
            prfs = [TransformSpec(TransformType.PRF, _PRF_FOR_INTEG[IntegId(t.id)]) for t in integs]
        return encrs + prfs + integs + kes
    if protocol == "esp" and not encrs:
        raise ConfigError(f"ESP proposal {text!r} names no encryption algorithm (use null for integrity only)")
    if protocol == "ah" and not integs:
        raise ConfigError(f"AH proposal {text!r} names no integrity algorithm")
    if protocol == "esp" and not aead and not integs:
        raise ConfigError(f"ESP proposal {text!r} needs an integrity algorithm for its non-AEAD cipher")
    return encrs + integs + kes + (esns or [TransformSpec(TransformType.ESN, EsnId.NO_ESN)])

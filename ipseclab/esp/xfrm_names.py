"""Linux XFRM algorithm names (as ``ip xfrm state`` prints them) to IANA transforms, and back.

The kernel names a transform by its crypto API template (``rfc4106(gcm(aes))``,
``cbc(aes)``, ``hmac(sha256)``) and says the ICV size separately in bits; IKEv2 names
it by one IANA id that fixes both.  This table is the bridge used to build an
:class:`~ipseclab.esp.EspSA` from a kernel SA (the UML cross-check) and to write the
``ip xfrm state add`` arguments for an SA ipseclab made.  Key material is the same
bytes on both sides: for AEAD the kernel key ends with the 4-byte salt, as ours does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..crypto import EncrId, Integ, TransformType, get_encr, get_integ
from ..crypto.algorithms import ALGORITHMS, algorithm, algorithms
from ..crypto.cipher import Encr
from ..errors import UnsupportedTransformError

# The kernel's names are the registry's ``xfrm`` column (``crypto/algorithms.py``).
# (kernel AEAD name, ICV bits) -> ENCR id
AEAD_NAMES: dict[tuple[str, int], int] = {
    (a.xfrm, a.xfrm_bits): a.id for a in algorithms(TransformType.ENCR) if a.xfrm and a.aead
}
# kernel cipher name -> ENCR id (used with a separate auth algorithm)
ENC_NAMES: dict[str, int] = {a.xfrm: a.id for a in algorithms(TransformType.ENCR) if a.xfrm and not a.aead}
# (kernel auth name, truncation bits) -> INTEG id
AUTH_NAMES: dict[tuple[str, int], int] = {
    (a.xfrm, a.xfrm_bits): a.id for a in algorithms(TransformType.INTEG) if a.xfrm
}
# what the kernel truncates to when ``auth`` (not ``auth-trunc``) is used (net/xfrm/xfrm_algo.c);
# note hmac(sha256): 96 bits, a pre-RFC 4868 leftover that no IKEv2 transform matches
AUTH_DEFAULT_TRUNC: dict[str, int] = {
    "hmac(md5)": 96, "hmac(sha1)": 96, "hmac(sha256)": 96, "hmac(sha384)": 192, "hmac(sha512)": 256,
    "xcbc(aes)": 96, "cmac(aes)": 96, "hmac(rmd160)": 96,
}
# the short names iproute2 and the kernel also accept
ALIASES: dict[str, str] = {alias: a.xfrm for a in ALGORITHMS for alias in a.xfrm_aliases}
_AEAD_TO_KERNEL = {v: k for k, v in AEAD_NAMES.items()}
_ENC_TO_KERNEL = {v: k for k, v in ENC_NAMES.items()}
_INTEG_TO_KERNEL = {v: k for k, v in AUTH_NAMES.items()}


@dataclass(frozen=True, slots=True)
class XfrmAlgorithms:
    """An ESP SA's transforms and keys, resolved from kernel names."""

    encr: Encr
    encr_key: bytes
    integ: Integ | None
    integ_key: bytes


def _canonical(name: str) -> str:
    name = name.strip()
    return ALIASES.get(name, name)


def _known(names: Iterable[str | tuple[str, int]]) -> str:
    return ", ".join(sorted({n if isinstance(n, str) else f"{n[0]} ({n[1]} bits)" for n in names}))


def aead_from_xfrm(name: str, key: bytes, icv_bits: int) -> Encr:
    """The AEAD transform for a kernel ``aead NAME KEY ICV_BITS`` line (key length includes the salt)."""
    eid = AEAD_NAMES.get((_canonical(name), icv_bits))
    if eid is None:
        raise UnsupportedTransformError(
            f"kernel AEAD {name!r} with a {icv_bits}-bit ICV has no ipseclab transform (known: {_known(AEAD_NAMES)})"
        )
    alg = algorithm(TransformType.ENCR, eid)
    bits = (len(key) - (alg.salt if alg is not None else 4)) * 8
    return get_encr(eid, None if eid == EncrId.CHACHA20_POLY1305 else bits)


def enc_from_xfrm(name: str, key: bytes) -> Encr:
    """The cipher for a kernel ``enc NAME KEY`` line."""
    eid = ENC_NAMES.get(_canonical(name))
    if eid is None:
        raise UnsupportedTransformError(
            f"kernel cipher {name!r} has no ipseclab transform (known: {_known(ENC_NAMES)})"
        )
    alg = algorithm(TransformType.ENCR, eid)
    bits = (len(key) - (alg.salt if alg is not None else 0)) * 8  # counter mode: the key ends with its nonce
    return get_encr(eid, None if eid == EncrId.NULL else bits)


def integ_from_xfrm(name: str, trunc_bits: int = 0) -> Integ:
    """The integrity transform for ``auth-trunc NAME KEY BITS`` (``trunc_bits`` 0: the ``auth`` default)."""
    canon = _canonical(name)
    bits = trunc_bits or AUTH_DEFAULT_TRUNC.get(canon, 0)
    iid = AUTH_NAMES.get((canon, bits))
    if iid is None:
        raise UnsupportedTransformError(
            f"kernel auth {name!r} truncated to {bits} bits has no IKEv2 transform (known: {_known(AUTH_NAMES)})"
        )
    return get_integ(iid)


def esp_algorithms(
    *,
    aead: tuple[str, bytes, int] | None = None,
    enc: tuple[str, bytes] | None = None,
    auth: tuple[str, bytes, int] | None = None,
) -> XfrmAlgorithms:
    """Resolve the algorithm lines of one kernel ESP SA (the shapes of ``ipseclab.lab.keys.XfrmState``)."""
    if aead is not None:
        if enc is not None or auth is not None:
            raise UnsupportedTransformError("a kernel SA has either an aead line or enc/auth lines, not both")
        return XfrmAlgorithms(aead_from_xfrm(aead[0], aead[1], aead[2]), aead[1], None, b"")
    if enc is None:
        raise UnsupportedTransformError("a kernel ESP SA needs an aead or an enc line")
    encr = enc_from_xfrm(enc[0], enc[1])
    if auth is None or _canonical(auth[0]) == "digest_null":
        return XfrmAlgorithms(encr, enc[1], None, b"")
    return XfrmAlgorithms(encr, enc[1], integ_from_xfrm(auth[0], auth[2]), auth[1])


def xfrm_args(encr: Encr | None, encr_key: bytes, integ: Integ | None, integ_key: bytes) -> list[str]:
    """``ip xfrm state add`` algorithm arguments for these transforms (argument list, no shell quoting).

    ``encr`` None gives AH's ``auth-trunc`` alone.  NULL encryption gets an empty key argument.
    """
    args: list[str] = []
    if encr is not None:
        if encr.aead:
            name, bits = _AEAD_TO_KERNEL.get(encr.id, ("", 0))
            if not name:
                raise UnsupportedTransformError(f"no kernel AEAD name for {encr.name}")
            args += ["aead", name, "0x" + encr_key.hex(), str(bits)]
        else:
            name = _ENC_TO_KERNEL.get(encr.id, "")
            if not name:
                raise UnsupportedTransformError(f"no kernel cipher name for {encr.name}")
            args += ["enc", name, "0x" + encr_key.hex() if encr_key else ""]
    if integ is not None:
        kernel = _INTEG_TO_KERNEL.get(integ.id)
        if kernel is None:
            raise UnsupportedTransformError(f"no kernel auth name for {integ.name}")
        args += ["auth-trunc", kernel[0], "0x" + integ_key.hex(), str(kernel[1])]
    return args

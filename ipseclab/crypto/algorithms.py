"""Every name a transform goes by, keyed by its IANA (type, id): the one algorithm-name table.

The same algorithm is ``ENCR_AES_GCM_16`` to IANA, ``aes256gcm16`` to strongSwan,
``aes_gcm_16_256`` to Libreswan, ``aes-256-gcm`` to OpenIKED, ``rfc4106(gcm(aes))`` with a
128-bit ICV to the Linux kernel, ``AES-GCM-256 with 16 octet ICV [RFC5282]`` in Wireshark's
IKEv2 table and ``AES-GCM with 16 octet ICV [RFC4106]`` in its ESP table.  Each of those used
to be a table of its own (the proposal parser, three renderers, the charon log reader, the
xfrm bridge, both key-file readers), and they drifted.  Now they all read :data:`ALGORITHMS`;
adding an algorithm, or a name, is one row here.

Names that depend on the key length are templates with ``{bits}``.  An empty name means the
implementation has no name for the transform (it does not support it); ``refusals`` says why
where a renderer should tell the user more than that.  Only ids and names live here (no
primitives): every layer, the independent pcap checks included, may import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .registry import EncrId, IntegId, KeId, PrfId, TransformType

# the name columns of :class:`Algorithm` that name lookups may ask for
Column = Literal[
    "strongswan", "libreswan", "openiked_ike", "openiked_esp", "xfrm", "wireshark_ikev2", "wireshark_esp",
]


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One IANA transform and every name it goes by.

    ``key_bits``: the key lengths it takes (one entry: fixed; 0 for none).  ``salt``/``icv``:
    bytes of salt at the end of the key material (AEAD) and of ICV.  ``xfrm_bits``: the ICV
    (AEAD) or truncation (auth) length the kernel is told separately.  ``prf``: for an HMAC/AES
    integrity transform, the PRF of the same function (strongSwan's implied PRF, Libreswan's
    derived integrity).  ``openiked_ike_bits``: the key lengths OpenIKED's IKE name exists for
    (empty: all).  ``openiked_pfkey``: OpenIKED 7.2 can install a Child SA with it through Linux
    PF_KEY.  ``refusals``: why an implementation lacks it, keyed by implementation (``libreswan``,
    ``libreswan-ike``), for the renderers' errors.  ``legacy``: only for reading captures (DES,
    Blowfish, CAST, Wireshark's rows without an IANA id); :func:`names` leaves it out of what the
    proposal parser takes unless asked, so the engine never negotiates it.
    """

    type: TransformType
    id: int
    key_bits: tuple[int, ...] = (0,)
    salt: int = 0
    icv: int = 0
    strongswan: str = ""
    strongswan_aliases: tuple[str, ...] = ()  # other spellings the proposal parser takes (Libreswan's, short ones)
    libreswan: str = ""
    openiked_ike: str = ""
    openiked_esp: str = ""
    openiked_ike_bits: tuple[int, ...] = ()
    openiked_pfkey: bool = False
    xfrm: str = ""
    xfrm_bits: int = 0
    xfrm_aliases: tuple[str, ...] = ()  # the short names iproute2 and the kernel also accept
    wireshark_ikev2: str = ""
    wireshark_esp: str = ""
    prf: int | None = None
    refusals: Mapping[str, str] = field(default_factory=dict)
    legacy: bool = False  # read from captures only: the engine never proposes or accepts it
    strongswan_log: str = ""  # what charon's log calls it where that is not the IANA name (3DES_CBC)

    @property
    def iana_name(self) -> str:
        """The IANA registry's name, e.g. ``AES_GCM_16`` (strongSwan's log prints the same)."""
        return _ENUMS[self.type](self.id).name

    @property
    def strongswan_log_name(self) -> str:
        """The name charon's log prints in a selected proposal (``3DES_CBC``, else the IANA name)."""
        return self.strongswan_log or self.iana_name

    @property
    def aead(self) -> bool:
        """An encryption transform that authenticates too (it has an ICV of its own)."""
        return self.type == TransformType.ENCR and self.icv > 0

    def name(self, column: Column, bits: int | None = None) -> str:
        """This transform's name in ``column`` for a key length ('' where that column has none)."""
        template: str = getattr(self, column)
        if column == "openiked_ike" and self.openiked_ike_bits and bits not in self.openiked_ike_bits:
            return ""
        return template.format(bits=bits) if "{bits}" in template else template

    def supported_by(self) -> frozenset[str]:
        """The implementations that have a name for it (``ipseclab`` is asked of crypto/ itself)."""
        cols = {"strongswan": self.strongswan, "libreswan": self.libreswan,
                "openiked": self.openiked_ike or self.openiked_esp, "linux": self.xfrm,
                "wireshark": self.wireshark_ikev2 or self.wireshark_esp}
        return frozenset(k for k, v in cols.items() if v and "ipseclab-only" not in v)


_ENUMS = {TransformType.ENCR: EncrId, TransformType.PRF: PrfId, TransformType.INTEG: IntegId,
          TransformType.KE: KeId}
_AES = (128, 192, 256)
_E, _P, _I, _K = TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE


def _gcm(eid: EncrId, icv: int, openiked_ike: str = "", openiked_esp: str = "",
         openiked_ike_bits: tuple[int, ...] = ()) -> Algorithm:
    return Algorithm(
        _E, eid, _AES, 4, icv, strongswan=f"aes{{bits}}gcm{icv}", strongswan_aliases=(f"aes{{bits}}gcm{icv * 8}",),
        libreswan=f"aes_gcm_{icv}_{{bits}}", openiked_ike=openiked_ike, openiked_esp=openiked_esp,
        openiked_ike_bits=openiked_ike_bits, xfrm="rfc4106(gcm(aes))", xfrm_bits=icv * 8,
        wireshark_ikev2=f"AES-GCM-{{bits}} with {icv} octet ICV [RFC5282]",
        wireshark_esp=f"AES-GCM with {icv} octet ICV [RFC4106]")


# the Linux kernel's xfrm algorithm list (net/xfrm/xfrm_algo.c) has no Camellia-CTR/CCM: `ip xfrm state add`
# answers "Requested CRYPT/AEAD algorithm not found" on UML 7.2 (tests/interop/test_esp_kernel.py's notes)
_NOT_IN_XFRM = "not in the Linux kernel's xfrm algorithm list (ip xfrm: algorithm not found)"


def _ccm(eid: EncrId, cipher: str, icv: int) -> Algorithm:
    """AES-CCM (RFC 4309, RFC 5282) or Camellia-CCM (RFC 5529): 3 bytes of salt, an 8/12/16-byte ICV."""
    if cipher == "aes":
        return Algorithm(
            _E, eid, _AES, 3, icv, strongswan=f"aes{{bits}}ccm{icv}", strongswan_aliases=(f"aes{{bits}}ccm{icv * 8}",),
            libreswan=f"aes_ccm_{icv}_{{bits}}", xfrm="rfc4309(ccm(aes))", xfrm_bits=icv * 8,
            wireshark_ikev2=f"AES-CCM-{{bits}} with {icv} octet ICV [RFC5282]",
            wireshark_esp=f"AES-CCM with {icv} octet ICV [RFC4309] (ipseclab-only)",
            refusals={"libreswan-ike": "offered by Libreswan for ESP only, not IKE (algparse)"})
    return Algorithm(
        _E, eid, _AES, 3, icv, strongswan=f"camellia{{bits}}ccm{icv}",
        strongswan_aliases=(f"camellia{{bits}}ccm{icv * 8}",),
        wireshark_ikev2=f"CAMELLIA-CCM-{{bits}} with {icv} octet ICV [RFC5529] (ipseclab-only)",
        wireshark_esp=f"CAMELLIA-CCM with {icv} octet ICV [RFC5529] (ipseclab-only)",
        refusals={"libreswan": "not supported by Libreswan (algparse does not know Camellia-CCM)",
                  "linux": _NOT_IN_XFRM})


def _hmac(iid: IntegId, hash_name: str, key: int, icv: int, prf: PrfId | None, *, strongswan: str = "",
          aliases: tuple[str, ...] = (), libreswan: str = "", ikev2: str = "", esp: str = "",
          pfkey: bool = False, openiked: bool = True, legacy: bool = False,
          refusals: Mapping[str, str] | None = None) -> Algorithm:
    openiked_name = f"hmac-{hash_name}" if openiked else ""
    kernel = hash_name.replace("sha2-", "sha")  # the kernel's hash name: sha256, not sha2-256
    return Algorithm(
        _I, iid, (key * 8,), 0, icv, strongswan=strongswan, strongswan_aliases=aliases, libreswan=libreswan,
        openiked_ike=openiked_name, openiked_esp=openiked_name,
        openiked_pfkey=pfkey, xfrm=f"hmac({kernel})", xfrm_aliases=(kernel,),
        xfrm_bits=icv * 8, wireshark_ikev2=ikev2, wireshark_esp=esp, prf=prf, legacy=legacy,
        refusals=refusals or {})


_LIBRESWAN_NO_BRAINPOOL = "not implemented by Libreswan (NSS has no brainpool ECDH)"


def _ke(kid: KeId, strongswan: str, libreswan: str = "", openiked: str = "", refusal: str = "",
        aliases: tuple[str, ...] = ()) -> Algorithm:
    return Algorithm(_K, kid, strongswan=strongswan, strongswan_aliases=aliases, libreswan=libreswan,
                     openiked_ike=openiked, openiked_esp=openiked,
                     refusals={"libreswan": refusal} if refusal else {})


ALGORITHMS: tuple[Algorithm, ...] = (
    # --- encryption (type 1)
    Algorithm(_E, EncrId.NULL, strongswan="null", libreswan="null", openiked_esp="null",
              xfrm="ecb(cipher_null)", xfrm_aliases=("cipher_null", "null"),
              wireshark_ikev2="NULL [RFC2410]", wireshark_esp="NULL"),
    Algorithm(_E, EncrId.DES, (64,), strongswan="des", strongswan_log="DES_CBC", xfrm="cbc(des)",
              xfrm_aliases=("des",),
              wireshark_esp="DES-CBC [RFC2405]", legacy=True,
              refusals={"libreswan": "not supported by Libreswan (algparse: 'des' is not supported)"}),
    Algorithm(_E, EncrId.TRIPLE_DES, (192,), strongswan="3des", strongswan_log="3DES_CBC", libreswan="3des",
              openiked_ike="3des",
              openiked_esp="3des", openiked_pfkey=True, xfrm="cbc(des3_ede)", xfrm_aliases=("des3_ede", "3des"),
              wireshark_ikev2="3DES [RFC2451]", wireshark_esp="TripleDES-CBC [RFC2451]"),
    Algorithm(_E, EncrId.CAST, (128,), strongswan="cast128", strongswan_log="CAST_CBC", xfrm="cbc(cast5)",
              xfrm_aliases=("cast5", "cast128"),
              wireshark_esp="CAST5-CBC [RFC2144]", legacy=True),
    Algorithm(_E, EncrId.BLOWFISH, (128, 192, 256), strongswan="blowfish{bits}", strongswan_log="BLOWFISH_CBC",
              xfrm="cbc(blowfish)",
              xfrm_aliases=("blowfish",), wireshark_esp="BLOWFISH-CBC [RFC2451]", legacy=True,
              refusals={"libreswan": "not supported by Libreswan (algparse: 'blowfish' is not supported)"}),
    Algorithm(_E, EncrId.AES_CBC, _AES, strongswan="aes{bits}", strongswan_aliases=("aes",), libreswan="aes{bits}",
              openiked_ike="aes-{bits}", openiked_esp="aes-{bits}", openiked_pfkey=True,
              xfrm="cbc(aes)", xfrm_aliases=("aes",), wireshark_ikev2="AES-CBC-{bits} [RFC3602]",
              wireshark_esp="AES-CBC [RFC3602]"),
    Algorithm(_E, EncrId.AES_CTR, _AES, 4, strongswan="aes{bits}ctr", libreswan="aes_ctr{bits}",
              openiked_ike="aes-{bits}-ctr", openiked_esp="aes-{bits}-ctr", xfrm="rfc3686(ctr(aes))",
              wireshark_ikev2="AES-CTR-{bits} [RFC5930]", wireshark_esp="AES-CTR [RFC3686]"),
    _ccm(EncrId.AES_CCM_8, "aes", 8),
    _ccm(EncrId.AES_CCM_12, "aes", 12),
    _ccm(EncrId.AES_CCM_16, "aes", 16),
    _gcm(EncrId.AES_GCM_8, 8),
    _gcm(EncrId.AES_GCM_12, 12, openiked_ike="aes-{bits}-gcm-12"),
    _gcm(EncrId.AES_GCM_16, 16, openiked_ike="aes-{bits}-gcm", openiked_esp="aes-{bits}-gcm",
         openiked_ike_bits=(128, 256)),
    Algorithm(_E, EncrId.NULL_AUTH_AES_GMAC, _AES, 4, 16, strongswan="aes{bits}gmac", libreswan="aes_gmac_{bits}",
              openiked_esp="aes-{bits}-gmac", xfrm="rfc4543(gcm(aes))", xfrm_bits=128,
              wireshark_esp="AES-GMAC [RFC4543] (ipseclab-only)"),
    Algorithm(_E, EncrId.CAMELLIA_CBC, _AES, strongswan="camellia{bits}", libreswan="camellia{bits}",
              xfrm="cbc(camellia)", xfrm_aliases=("camellia",),
              wireshark_ikev2="CAMELLIA-CBC-{bits} [RFC5529] (ipseclab-only)",
              wireshark_esp="CAMELLIA-CBC [RFC4312] (ipseclab-only)"),
    Algorithm(_E, EncrId.CAMELLIA_CTR, _AES, 4, strongswan="camellia{bits}ctr", libreswan="camellia_ctr{bits}",
              wireshark_ikev2="CAMELLIA-CTR-{bits} [RFC5529] (ipseclab-only)",
              wireshark_esp="CAMELLIA-CTR [RFC5528] (ipseclab-only)",
              refusals={"libreswan-ike": "offered by Libreswan for ESP only, not IKE (algparse)",
                        "linux": _NOT_IN_XFRM}),
    _ccm(EncrId.CAMELLIA_CCM_8, "camellia", 8),
    _ccm(EncrId.CAMELLIA_CCM_12, "camellia", 12),
    _ccm(EncrId.CAMELLIA_CCM_16, "camellia", 16),
    Algorithm(_E, EncrId.CHACHA20_POLY1305, (256,), 4, 16, strongswan="chacha20poly1305",
              libreswan="chacha20_poly1305", openiked_esp="chacha20-poly1305",
              xfrm="rfc7539esp(chacha20,poly1305)", xfrm_bits=128,
              wireshark_ikev2="CHACHA20-POLY1305 [RFC7634] (ipseclab-only)",
              wireshark_esp="CHACHA20-POLY1305 [RFC7634] (ipseclab-only)"),
    # --- pseudorandom functions (type 2)
    Algorithm(_P, PrfId.HMAC_MD5, strongswan="prfmd5", libreswan="md5", openiked_ike="hmac-md5"),
    Algorithm(_P, PrfId.HMAC_SHA1, strongswan="prfsha1", libreswan="sha1", openiked_ike="hmac-sha1"),
    Algorithm(_P, PrfId.HMAC_SHA2_256, strongswan="prfsha256", libreswan="sha2_256", openiked_ike="hmac-sha2-256"),
    Algorithm(_P, PrfId.HMAC_SHA2_384, strongswan="prfsha384", libreswan="sha2_384", openiked_ike="hmac-sha2-384"),
    Algorithm(_P, PrfId.HMAC_SHA2_512, strongswan="prfsha512", libreswan="sha2_512", openiked_ike="hmac-sha2-512"),
    Algorithm(_P, PrfId.AES128_XCBC, strongswan="prfaesxcbc"),
    Algorithm(_P, PrfId.AES128_CMAC, strongswan="prfaescmac"),
    # --- integrity (type 3)
    Algorithm(_I, IntegId.NONE, wireshark_ikev2="NONE [RFC4306]", wireshark_esp="NULL"),
    _hmac(IntegId.HMAC_MD5_96, "md5", 16, 12, PrfId.HMAC_MD5, strongswan="md5", libreswan="md5",
          ikev2="HMAC_MD5_96 [RFC2403]", esp="HMAC-MD5-96 [RFC2403]", pfkey=True),
    _hmac(IntegId.HMAC_SHA1_96, "sha1", 20, 12, PrfId.HMAC_SHA1, strongswan="sha1", aliases=("sha",),
          libreswan="sha1", ikev2="HMAC_SHA1_96 [RFC2404]", esp="HMAC-SHA-1-96 [RFC2404]", pfkey=True),
    _hmac(IntegId.HMAC_MD5_128, "md5", 16, 16, None, strongswan="md5_128", ikev2="HMAC_MD5_128 [RFC4595]",
          esp="HMAC-MD5-128 [RFC4595] (ipseclab-only)", openiked=False,
          refusals={"libreswan": "not supported by Libreswan (algparse has no HMAC_MD5_128)"}),
    _hmac(IntegId.HMAC_SHA1_160, "sha1", 20, 20, None, strongswan="sha1_160", ikev2="HMAC_SHA1_160 [RFC4595]",
          esp="HMAC-SHA-1-160 [RFC4595] (ipseclab-only)", openiked=False,
          refusals={"libreswan": "not supported by Libreswan (algparse: 'sha1_160' is not recognized)"}),
    _hmac(IntegId.HMAC_SHA2_256_128, "sha2-256", 32, 16, PrfId.HMAC_SHA2_256, strongswan="sha256",
          aliases=("sha2_256",), libreswan="sha2_256", ikev2="HMAC_SHA2_256_128 [RFC4868]",
          esp="HMAC-SHA-256-128 [RFC4868]"),
    _hmac(IntegId.HMAC_SHA2_384_192, "sha2-384", 48, 24, PrfId.HMAC_SHA2_384, strongswan="sha384",
          aliases=("sha2_384",), libreswan="sha2_384", ikev2="HMAC_SHA2_384_192 [RFC4868]",
          esp="HMAC-SHA-384-192 [RFC4868]"),
    _hmac(IntegId.HMAC_SHA2_512_256, "sha2-512", 64, 32, PrfId.HMAC_SHA2_512, strongswan="sha512",
          aliases=("sha2_512",), libreswan="sha2_512", ikev2="HMAC_SHA2_512_256 [RFC4868]",
          esp="HMAC-SHA-512-256 [RFC4868]"),
    Algorithm(_I, IntegId.AES_XCBC_96, (128,), 0, 12, strongswan="aesxcbc", libreswan="aes_xcbc", xfrm="xcbc(aes)",
              xfrm_bits=96, wireshark_ikev2="AES_XCBC_96 [RFC3566] (ipseclab-only)",
              wireshark_esp="AES-XCBC-MAC-96 [RFC3566] (ipseclab-only)", prf=PrfId.AES128_XCBC,
              refusals={"libreswan-ike": "offered by Libreswan for ESP/AH only, not IKE"}),
    Algorithm(_I, IntegId.AES_CMAC_96, (128,), 0, 12, strongswan="aescmac", libreswan="aes_cmac", xfrm="cmac(aes)",
              xfrm_bits=96, prf=PrfId.AES128_CMAC, wireshark_ikev2="AES_CMAC_96 [RFC4494] (ipseclab-only)",
              wireshark_esp="AES-CMAC-96 [RFC4494] (ipseclab-only)",
              refusals={"libreswan-ike": "offered by Libreswan for ESP/AH only, not IKE"}),
    # what Wireshark's tables name without an IANA id (ipseclab's private-use ids): read-only
    _hmac(IntegId.HMAC_SHA2_256_96, "sha2-256", 32, 12, None,
          ikev2="HMAC_SHA2_256_96 [draft-ietf-ipsec-ciph-sha-256-00]",
          esp="HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]", openiked=False, legacy=True),
    _hmac(IntegId.HMAC_RIPEMD160_96, "rmd160", 20, 12, None, esp="MAC-RIPEMD-160-96 [RFC2857]", openiked=False,
          legacy=True),
    *(Algorithm(_I, iid, (0,), 0, bits // 8, legacy=True, wireshark_esp=f"ANY {bits} bit authentication [no checking]"
                if bits != 160 else "", wireshark_ikev2=f"ANY {bits}-bits of Authentication [No Checking]")
      for iid, bits in ((IntegId.ANY_64_UNCHECKED, 64), (IntegId.ANY_96_UNCHECKED, 96),
                        (IntegId.ANY_128_UNCHECKED, 128), (IntegId.ANY_160_UNCHECKED, 160),
                        (IntegId.ANY_192_UNCHECKED, 192), (IntegId.ANY_256_UNCHECKED, 256))),
    # --- key exchange methods (type 4)
    _ke(KeId.MODP768, "modp768", openiked="modp768", refusal="removed from Libreswan"),
    _ke(KeId.MODP1024, "modp1024", openiked="modp1024", refusal="not compiled into Libreswan since 4.0 (USE_DH2)"),
    _ke(KeId.MODP1536, "modp1536", "dh5", "modp1536"),
    _ke(KeId.MODP2048, "modp2048", "dh14", "modp2048"),
    _ke(KeId.MODP3072, "modp3072", "dh15", "modp3072"),
    _ke(KeId.MODP4096, "modp4096", "dh16", "modp4096"),
    _ke(KeId.MODP6144, "modp6144", "dh17", "modp6144"),
    _ke(KeId.MODP8192, "modp8192", "dh18", "modp8192"),
    _ke(KeId.ECP192, "ecp192", openiked="ecp192", refusal="not implemented by Libreswan"),
    _ke(KeId.ECP224, "ecp224", openiked="ecp224", refusal="not implemented by Libreswan"),
    _ke(KeId.ECP256, "ecp256", "dh19", "ecp256"),
    _ke(KeId.ECP384, "ecp384", "dh20", "ecp384"),
    _ke(KeId.ECP521, "ecp521", "dh21", "ecp521"),
    _ke(KeId.BRAINPOOL256, "ecp256bp", openiked="brainpool256", refusal=_LIBRESWAN_NO_BRAINPOOL),
    _ke(KeId.BRAINPOOL384, "ecp384bp", openiked="brainpool384", refusal=_LIBRESWAN_NO_BRAINPOOL),
    _ke(KeId.BRAINPOOL512, "ecp512bp", openiked="brainpool512", refusal=_LIBRESWAN_NO_BRAINPOOL),
    _ke(KeId.CURVE25519, "curve25519", "dh31", "curve25519", aliases=("x25519",)),
    _ke(KeId.CURVE448, "curve448", refusal="not implemented by Libreswan 4.x (NSS has no Curve448)",
        aliases=("x448",)),
)

# Names in Wireshark 4.0's tables that ipseclab reads but cannot decrypt with, and why.
WIRESHARK_ESP_ONLY_ENCR: dict[str, str] = {
    "TWOFISH-CBC": "Twofish: `cryptography` (OpenSSL) has no Twofish, so ipseclab cannot decrypt it",
}
# (an older Wireshark spelling of AES-GCM whose ICV length came from an "ANY n bit" row: the explicit
# "AES-GCM with N octet ICV" names replace it)
WIRESHARK_ESP_LEGACY_ENCR: dict[str, str] = {
    "AES-GCM [RFC4106]": "Wireshark's legacy AES-GCM name: use \"AES-GCM with 16 octet ICV [RFC4106]\" (or 8/12)",
}
# Why OpenIKED 7.2 cannot install a Child SA with a transform whose ``openiked_pfkey`` is False.
OPENIKED_PFKEY_REFUSAL = "through PF_KEY (only AES-CBC or 3DES with HMAC-SHA1-96 or HMAC-MD5-96)"

_BY_ID: dict[tuple[int, int], Algorithm] = {(a.type, a.id): a for a in ALGORITHMS}


def algorithm(ttype: int, tid: int) -> Algorithm | None:
    """The registry's row for a transform, or None for one it does not list."""
    return _BY_ID.get((ttype, tid))


def algorithms(ttype: int) -> Iterator[Algorithm]:
    """The rows of one transform type, in registry order."""
    return (a for a in ALGORITHMS if a.type == ttype)


def name_of(column: Column, ttype: int, tid: int, bits: int | None = None) -> str:
    """A transform's name in ``column`` ('' when the registry gives it none there)."""
    alg = _BY_ID.get((ttype, tid))
    return alg.name(column, bits) if alg is not None else ""


def names(column: Column, ttype: int, *, aliases: bool = False, fixed_bits: bool = True,
          legacy: bool = True) -> dict[str, tuple[int, int | None]]:
    """Every name in ``column`` for one transform type -> (id, key bits), templates expanded.

    A name without ``{bits}`` stands for the first key length; for a transform with one key length
    ``fixed_bits=False`` gives None instead (a proposal carries no Key Length attribute for it).
    ``aliases`` adds the other spellings strongSwan's column accepts; ``legacy=False`` leaves out
    the transforms that are only read from captures (what the proposal parser asks for).
    """
    out: dict[str, tuple[int, int | None]] = {}
    for alg in algorithms(ttype):
        if alg.legacy and not legacy:
            continue
        templates = [getattr(alg, column)]
        if aliases and column == "strongswan":
            templates += alg.strongswan_aliases
        for template in filter(None, templates):
            if "{bits}" in template:
                for bits in alg.key_bits:
                    out.setdefault(template.format(bits=bits), (alg.id, bits))
            else:
                one = alg.key_bits[0] if fixed_bits or len(alg.key_bits) > 1 else None
                out.setdefault(template, (alg.id, one))
    return out

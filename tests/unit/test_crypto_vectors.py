"""Known-answer tests of ipseclab.crypto against RFC, CAVP and specification vectors.

Each parametrised case's id names the vector file and test case; each file names its source section.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ipseclab.crypto import EncrId, IntegId, KeId, PrfId, get_encr, get_integ, get_ke_group, get_prf, modp_prime
from ipseclab.crypto.mac import aes_xcbc_mac
from ipseclab.errors import IntegrityError
from tests.vectors import cases, load, rsp_blocks

H = bytes.fromhex

_PRF_BY_NAME = {
    "PRF_HMAC_SHA2_256": PrfId.HMAC_SHA2_256,
    "PRF_HMAC_SHA2_384": PrfId.HMAC_SHA2_384,
    "PRF_HMAC_SHA2_512": PrfId.HMAC_SHA2_512,
}
_INTEG_BY_NAME = {
    "AUTH_HMAC_SHA2_256_128": IntegId.HMAC_SHA2_256_128,
    "AUTH_HMAC_SHA2_384_192": IntegId.HMAC_SHA2_384_192,
    "AUTH_HMAC_SHA2_512_256": IntegId.HMAC_SHA2_512_256,
}


@pytest.mark.parametrize("v", cases("rfc4868_hmac_sha2"))
def test_rfc4868_prf_and_integ(v):
    """RFC 4868 2.7.1 (PRF) and 2.7.2 (authenticator) vectors."""
    if v["algorithm"] in _PRF_BY_NAME:
        assert get_prf(_PRF_BY_NAME[v["algorithm"]])(H(v["key"]), H(v["data"])).hex() == v["output"]
    else:
        integ = get_integ(_INTEG_BY_NAME[v["algorithm"]])
        assert integ.compute(H(v["key"]), H(v["data"])).hex() == v["output"]
        integ.verify(H(v["key"]), H(v["data"]), H(v["output"]))
        with pytest.raises(IntegrityError):
            integ.verify(H(v["key"]), H(v["data"]) + b"x", H(v["output"]))


def _rfc4231_cases():
    cv = pytest.importorskip("cryptography_vectors", reason="needs the cryptography_vectors package (dev extra)")
    out = []
    for bits in (256, 384, 512):
        path = Path(cv.__file__).parent / "HMAC" / f"rfc-4231-sha{bits}.txt"
        for n, (_params, block) in enumerate(rsp_blocks(path), start=1):
            out.append(pytest.param(bits, block, id=f"RFC4231-sha{bits}-case{n}"))
    return out


@pytest.mark.parametrize(("bits", "v"), _rfc4231_cases())
def test_rfc4231_hmac_sha2_prf(bits, v):
    """RFC 4231 section 4 HMAC-SHA2 vectors (from cryptography_vectors) through the PRF transforms."""
    prf = get_prf({256: PrfId.HMAC_SHA2_256, 384: PrfId.HMAC_SHA2_384, 512: PrfId.HMAC_SHA2_512}[bits])
    mac = prf(H(v["Key"]), H(v["Msg"]))
    # test case 5 of RFC 4231 lists a truncated (128-bit) output
    assert mac[: len(H(v["MD"]))].hex() == v["MD"].lower()


@pytest.mark.parametrize("v", cases("rfc3566_aes_xcbc_mac"))
def test_rfc3566_aes_xcbc_mac(v):
    """RFC 3566 4.6: AES-XCBC-MAC and its 96-bit truncation (AUTH_AES_XCBC_96)."""
    assert aes_xcbc_mac(H(v["key"]), H(v["message"])).hex() == v["mac"]
    assert get_integ(IntegId.AES_XCBC_96).compute(H(v["key"]), H(v["message"])).hex() == v["mac96"]


@pytest.mark.parametrize("v", cases("rfc4434_aes_xcbc_prf"))
def test_rfc4434_aes_xcbc_prf(v):
    """RFC 4434 2.1: AES-XCBC-PRF-128 with 16, 10 and 18-byte keys."""
    assert get_prf(PrfId.AES128_XCBC)(H(v["key"]), H(v["message"])).hex() == v["output"]


@pytest.mark.parametrize("v", cases("rfc5903_ecp"))
def test_rfc5903_ecp(v):
    """RFC 5903 section 8: public values (KE data = x || y) and the shared secret (x of g^ir)."""
    group = get_ke_group(int(v["group"]))
    i = group.generate(int(v["i"], 16))
    r = group.generate(int(v["r"], 16))
    assert i.public_bytes.hex() == v["gix"] + v["giy"]
    assert r.public_bytes.hex() == v["grx"] + v["gry"]
    assert i.shared_secret(r.public_bytes).hex() == v["girx"]
    assert r.shared_secret(i.public_bytes).hex() == v["girx"]
    # the KE payload bodies printed in the RFC: group number, reserved, then x || y
    assert v["kei"].endswith(i.public_bytes.hex())


@pytest.mark.parametrize("name", ["X25519", "X448"])
def test_rfc7748_x25519_x448(name):
    """RFC 7748 section 5.2 vectors (cryptography_vectors asymmetric/X*/rfc7748.txt) via CURVE25519/448."""
    cv = pytest.importorskip("cryptography_vectors", reason="needs the cryptography_vectors package (dev extra)")
    path = Path(cv.__file__).parent / "asymmetric" / name / "rfc7748.txt"
    group = get_ke_group(KeId.CURVE25519 if name == "X25519" else KeId.CURVE448)
    checked = 0
    for _params, block in rsp_blocks(path):
        ke = group.generate(H(block["INPUT_SCALAR"]))
        assert ke.shared_secret(H(block["INPUT_U"])).hex() == block["OUTPUT_U"]
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("v", cases("rfc3526_modp"))
def test_rfc3526_modp_primes(v):
    """RFC 3526 sections 3-7: the primes computed from the defining formula equal the RFC's hex."""
    assert modp_prime(int(v["group"])) == int(v["p"], 16)
    assert get_ke_group(int(v["group"])).public_size * 8 == int(v["bits"])


@pytest.mark.parametrize("v", cases("gcm_spec"))
def test_gcm_spec_vectors(v):
    """GCM specification (McGrew & Viega) Appendix B, the cases RFC 4106 relies on; nonce = salt | IV."""
    key, iv = H(v["key"]), H(v["iv"])
    encr = get_encr(EncrId.AES_GCM_16, len(key) * 8)
    # split the 96-bit nonce as ESP/IKE do: 4-byte salt from KEYMAT, 8-byte IV on the wire
    cipher = encr.keyed(key + iv[:4])
    out = cipher.encrypt(iv[4:], H(v["plaintext"]), H(v["aad"]))
    assert out.hex() == v["ciphertext"] + v["tag"]
    assert cipher.decrypt(iv[4:], out, H(v["aad"])).hex() == v["plaintext"]
    for icv, eid in ((8, EncrId.AES_GCM_8), (12, EncrId.AES_GCM_12)):
        short = get_encr(eid, len(key) * 8).keyed(key + iv[:4])
        sealed = short.encrypt(iv[4:], H(v["plaintext"]), H(v["aad"]))
        assert sealed.hex() == v["ciphertext"] + v["tag"][: 2 * icv]
        assert short.decrypt(iv[4:], sealed, H(v["aad"])).hex() == v["plaintext"]


def _cavp_gcm_cases():
    cv = pytest.importorskip("cryptography_vectors", reason="needs the cryptography_vectors package (dev extra)")
    out = []
    for bits in (128, 256):
        path = Path(cv.__file__).parent / "ciphers" / "AES" / "GCM" / f"gcmEncryptExtIV{bits}.rsp"
        taken: dict[str, int] = {}
        for params, block in rsp_blocks(path):
            sel = (params.get("IVlen") == "96" and params.get("Taglen") in ("64", "96", "128")
                   and params.get("PTlen") in ("128", "408"))
            key = f"{bits}-{params.get('Taglen')}-{params.get('PTlen')}-{params.get('AADlen')}"
            if sel and taken.get(key, 0) < 1:
                taken[key] = 1
                out.append(pytest.param(block, int(params["Taglen"]) // 8, id=f"CAVP-gcmEncryptExtIV{key}"))
    return out


@pytest.mark.parametrize(("v", "icv"), _cavp_gcm_cases())
def test_cavp_gcm_truncated_tags(v, icv):
    """NIST CAVP gcmEncryptExtIV*.rsp (96-bit IV; 64, 96 and 128-bit tags) via ENCR_AES_GCM_8/12/16."""
    eid = {8: EncrId.AES_GCM_8, 12: EncrId.AES_GCM_12, 16: EncrId.AES_GCM_16}[icv]
    key, iv = H(v["Key"]), H(v["IV"])
    cipher = get_encr(eid, len(key) * 8).keyed(key + iv[:4])
    out = cipher.encrypt(iv[4:], H(v["PT"]), H(v["AAD"]))
    assert out.hex() == v["CT"] + v["Tag"]
    bad = out[:-1] + bytes((out[-1] ^ 1,))
    with pytest.raises(IntegrityError):
        cipher.decrypt(iv[4:], bad, H(v["AAD"]))


def test_rfc7634_appendix_a_esp_example():
    """RFC 7634 Appendix A: ChaCha20-Poly1305 ESP example, nonce = salt | IV, AAD = SPI | seq."""
    v = load("rfc7634_chacha20poly1305")["vectors"][0]
    cipher = get_encr(EncrId.CHACHA20_POLY1305).keyed(H(v["keymat"]))
    out = cipher.encrypt(H(v["iv"]), H(v["plaintext"]), H(v["aad"]))
    assert out.hex() == v["ciphertext"] + v["tag"]
    assert H(v["esp_packet"]) == H(v["spi"]) + H(v["seq"]) + H(v["iv"]) + out
    assert cipher.decrypt(H(v["iv"]), out, H(v["aad"])).hex() == v["plaintext"]


def test_prf_plus_is_the_rfc7296_construction():
    """RFC 7296 2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), checked against HMAC directly."""
    import hmac

    prf = get_prf(PrfId.HMAC_SHA2_256)
    k, s = b"k" * 32, b"seed"
    t1 = hmac.digest(k, s + b"\x01", "sha256")
    t2 = hmac.digest(k, t1 + s + b"\x02", "sha256")
    t3 = hmac.digest(k, t2 + s + b"\x03", "sha256")
    assert prf.plus(k, s, 80) == (t1 + t2 + t3)[:80]


@pytest.mark.parametrize("v", cases("acvp_ikev2_kdf"))
def test_acvp_ikev2_kdf(v):
    """NIST ACVP kdf-components IKEv2 (SP 800-135 4.2) cases, as carried in OpenSSL's evpkdf_ikev2.txt:
    SKEYSEED, DKM, Child SA DKM with and without a fresh DH, and the rekeyed SKEYSEED (RFC 7296 2.13-2.18)."""
    from ipseclab.crypto import rekey_skeyseed, skeyseed

    prf = get_prf({"sha1": PrfId.HMAC_SHA1, "sha256": PrfId.HMAC_SHA2_256, "sha384": PrfId.HMAC_SHA2_384,
                   "sha512": PrfId.HMAC_SHA2_512}[v["hash"].lower().replace("-", "")])
    ni, nr = H(v["ni"]), H(v["nr"])
    seed = skeyseed(prf, ni, nr, H(v["g_ir"]))
    assert seed.hex() == v["skeyseed"]
    n = int(v["dkm_length_bytes"])
    dkm = prf.plus(seed, ni + nr + H(v["spi_i"]) + H(v["spi_r"]), n)
    assert dkm.hex() == v["dkm"]
    sk_d = dkm[: prf.key_size]
    assert sk_d.hex() == v["sk_d"]
    assert prf.plus(sk_d, ni + nr, len(H(v["dkm_child"]))).hex() == v["dkm_child"]
    assert prf.plus(sk_d, H(v["g_ir_new"]) + ni + nr, len(H(v["dkm_child_dh"]))).hex() == v["dkm_child_dh"]
    assert rekey_skeyseed(prf, sk_d, ni, nr, H(v["g_ir_new"])).hex() == v["skeyseed_rekey"]


def test_rfc7634_appendix_b_ikev2_example_through_the_codec():
    """RFC 7634 Appendix B: the ChaCha20-Poly1305 INFORMATIONAL message decrypts through ipseclab's SK codec
    (AAD = IKE header + SK header, nonce = salt | IV) and re-encrypts to the same bytes."""
    from ipseclab.packets.message import SkCrypto, decode, encode
    from ipseclab.packets.payloads import NotifyPayload

    v = load("rfc7634_chacha20poly1305")["vectors"][1]
    wire = H(v["ike_message_assembled"])
    assert wire == H(v["ike_header"]) + H(v["encrypted_payload_header"]) + H(v["iv"]) + H(v["ciphertext"]) + H(v["tag"])
    sk = SkCrypto(get_encr(EncrId.CHACHA20_POLY1305), None, H(v["keymat"]))
    msg = decode(wire, sk)
    assert (msg.exchange, msg.message_id, msg.initiator, msg.response) == (37, 9, False, False)
    assert msg.encrypted is not None
    assert msg.encrypted.payloads == [NotifyPayload(16385, data=bytes.fromhex("0000000a"))]  # SET_WINDOW_SIZE 10
    assert encode(msg, sk) == wire


def _cv_file(*parts: str) -> Path:
    cv = pytest.importorskip("cryptography_vectors", reason="needs the cryptography_vectors package (dev extra)")
    return Path(cv.__file__).parent.joinpath(*parts)


def _keyed_hmac_cases():
    out = []
    for integ_id, file in (
        (IntegId.HMAC_MD5_96, "rfc-2202-md5.txt"),
        (IntegId.HMAC_SHA1_96, "rfc-2202-sha1.txt"),
        (IntegId.HMAC_SHA2_256_128, "rfc-4231-sha256.txt"),
        (IntegId.HMAC_SHA2_384_192, "rfc-4231-sha384.txt"),
        (IntegId.HMAC_SHA2_512_256, "rfc-4231-sha512.txt"),
    ):
        for n, (_params, block) in enumerate(rsp_blocks(_cv_file("HMAC", file)), start=1):
            out.append(pytest.param(integ_id, block, id=f"{file.split('.')[0]}-case{n}"))
    return out


@pytest.mark.parametrize(("integ_id", "v"), _keyed_hmac_cases())
def test_keyed_integ_hmac_vectors(integ_id, v):
    """RFC 2202 / RFC 4231 through the SA-lifetime keyed HMAC (precomputed pad states).

    The vectors include keys longer than the hash block (hashed first, RFC 2104) and a
    message split into data and tail (how ESN high bits are authenticated).
    """
    integ = get_integ(integ_id)
    key, msg, md = H(v["Key"]), H(v["Msg"]), H(v["MD"])
    keyed = integ.keyed(key)
    n = min(integ.icv_size, len(md))  # RFC 4231 case 5 lists only 128 bits
    assert keyed.compute(msg)[:n] == md[:n]
    assert keyed.compute(msg[:3], msg[3:])[:n] == md[:n]
    assert keyed.compute(msg) == integ.compute(key, msg)
    keyed.verify(msg, integ.compute(key, msg))
    with pytest.raises(IntegrityError):
        keyed.verify(msg + b"x", integ.compute(key, msg))


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_aes_cbc_mmt_vectors_one_keyed_object_per_key(bits):
    """NIST CAVS AESVS MMT (CBC), every record decrypted and encrypted; then the same key reused.

    The keyed AES-CBC object chains across messages (a long-lived context whose first block
    is corrected per message), so each message is also run a second time, after another
    message, through the same object.
    """
    enc = get_encr(EncrId.AES_CBC, bits)
    records = [b for p, b in rsp_blocks(_cv_file("ciphers", "AES", "CBC", f"CBCMMT{bits}.rsp")) if "PLAINTEXT" in b]
    assert len(records) >= 10
    for r in records:
        keyed = enc.keyed(H(r["KEY"]))
        iv, pt, ct = H(r["IV"]), H(r["PLAINTEXT"]), H(r["CIPHERTEXT"])
        for _ in range(2):
            assert keyed.decrypt(iv, ct) == pt
            assert keyed.encrypt(iv, pt) == ct
        assert keyed.decrypt(bytes(16), ct)[16:] == pt[16:]  # only the first block depends on the IV

"""Kernel SAs (``ip xfrm state``) to Wireshark ``esp_sa`` rows, so every run's ESP opens decrypted.

Rows use ``*`` for the addresses: the SPI alone identifies the SA, and behind the NAT
router the same SA is seen with different addresses on each link.  SAs Wireshark 4.0
cannot decrypt (ChaCha20-Poly1305, AES-GMAC) and AH SAs (nothing to decrypt) get no row.
"""

from __future__ import annotations

from pathlib import Path

from .keys import XfrmState

# kernel AEAD/cipher name -> Wireshark 4.0 name (by ICV bits for GCM)
_AEAD = {
    ("rfc4106(gcm(aes))", 64): "AES-GCM with 8 octet ICV [RFC4106]",
    ("rfc4106(gcm(aes))", 96): "AES-GCM with 12 octet ICV [RFC4106]",
    ("rfc4106(gcm(aes))", 128): "AES-GCM with 16 octet ICV [RFC4106]",
}
_ENC = {"cbc(aes)": "AES-CBC [RFC3602]", "ecb(cipher_null)": "NULL", "cbc(des3_ede)": "TripleDES-CBC [RFC2451]"}
_AUTH = {
    ("hmac(sha1)", 96): "HMAC-SHA-1-96 [RFC2404]",
    ("hmac(sha256)", 128): "HMAC-SHA-256-128 [RFC4868]",
    ("hmac(sha384)", 192): "HMAC-SHA-384-192 [RFC4868]",
    ("hmac(sha512)", 256): "HMAC-SHA-512-256 [RFC4868]",
    ("hmac(md5)", 96): "HMAC-MD5-96 [RFC2403]",
}


def esp_sa_row(state: XfrmState) -> str | None:
    """The ``esp_sa`` row for a kernel ESP SA, or None when Wireshark 4.0 cannot decrypt it."""
    if state.proto != "esp":
        return None
    family = "IPv6" if ":" in state.src else "IPv4"
    if state.aead is not None:
        name = _AEAD.get((state.aead[0], state.aead[2]))
        if name is None:
            return None
        enc, enc_key, auth, auth_key = name, state.aead[1], "NULL", b""
    elif state.enc is not None:
        enc = _ENC.get(state.enc[0], "")
        if not enc:
            return None
        enc_key = state.enc[1]
        if state.auth is None:
            auth, auth_key = "NULL", b""
        else:
            auth = _AUTH.get((state.auth[0], state.auth[2]), "")
            if not auth:
                return None
            auth_key = state.auth[1]
    else:
        return None
    fields = [family, "*", "*", f"0x{state.spi:08x}", enc, "0x" + enc_key.hex(), auth,
              "0x" + auth_key.hex() if auth_key else ""]
    return ",".join(f'"{f}"' for f in fields)


def write_esp_sa(path: Path, states: list[XfrmState]) -> list[str]:
    """Write the rows (one per distinct SPI) to ``path``; returns them."""
    rows: list[str] = []
    seen: set[int] = set()
    for s in states:
        row = esp_sa_row(s)
        if row is not None and s.spi not in seen:
            seen.add(s.spi)
            rows.append(row)
    path.write_text("".join(r + "\n" for r in rows))
    return rows


def tshark_esp_options(rows: list[str]) -> list[str]:
    """tshark arguments that enable ESP decryption and ICV checking with these rows."""
    args = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    for r in rows:
        args += ["-o", f"uat:esp_sa:{r}"]
    return args

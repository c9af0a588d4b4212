"""MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079), for EAP-MSCHAPv2 in IKEv2, and EAP-MD5's hash (RFC 1994).

The functions are named and shaped after RFC 2759 section 8 and RFC 3079 section 3, so each line can be read
against the RFC; tests/unit/data/rfc2759_mschapv2.json holds the RFC's section 9 example and RFC 3079
section 3.5's keys.

MD4 is not in OpenSSL 3's default provider (nor in ``hashlib`` here), so ``md4`` is written out from RFC 1320
(it only ever hashes a password or a password hash).  DES is ``cryptography``'s TripleDES with the key three
times (EDE with K1=K2=K3 is single DES).

The EAP-MSCHAPv2 MSK is MasterReceiveKey | MasterSendKey | 32 zero bytes, the server's receive key (RFC 3079
Magic2) first, whichever side computes it (as hostapd, wpa_supplicant and strongSwan do).
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = b"On the client side, this is the send key; on the server side, it is the receive key."
_MPPE_MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320)."""
    def f(x: int, y: int, z: int) -> int:
        return (x & y) | (~x & z)

    def g(x: int, y: int, z: int) -> int:
        return (x & y) | (x & z) | (y & z)

    def h(x: int, y: int, z: int) -> int:
        return x ^ y ^ z

    def rol(v: int, s: int) -> int:
        v &= 0xFFFFFFFF
        return ((v << s) | (v >> (32 - s))) & 0xFFFFFFFF

    msg = data + b"\x80" + bytes((55 - len(data)) % 64) + struct.pack("<Q", (8 * len(data)) & (2**64 - 1))
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        a, b, c, d = state
        for i in range(16):
            k, s = i, (3, 7, 11, 19)[i % 4]
            a, b, c, d = d, rol(a + f(b, c, d) + x[k], s), b, c
        for i in range(16):
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            a, b, c, d = d, rol(a + g(b, c, d) + x[k] + 0x5A827999, s), b, c
        for i in range(16):
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            a, b, c, d = d, rol(a + h(b, c, d) + x[k] + 0x6ED9EBA1, s), b, c
        state = [(v + n) & 0xFFFFFFFF for v, n in zip(state, (a, b, c, d), strict=True)]
    return struct.pack("<4I", *state)


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """ChallengeHash (RFC 2759 8.2): the first 8 bytes of SHA1(PeerChallenge | AuthenticatorChallenge | name)."""
    return _sha1(peer_challenge, authenticator_challenge, user_name)[:8]


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash (RFC 2759 8.3): MD4 of the password in UTF-16LE (Unicode, no terminator)."""
    return md4(password.encode("utf-16-le"))


def _des_key(key7: bytes) -> bytes:
    """DesEncrypt's 7-byte key spread over 8 bytes, 7 bits each (parity bits left 0, as DES ignores them)."""
    n = int.from_bytes(key7, "big")
    return bytes(((n >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des(clear: bytes, key7: bytes) -> bytes:
    k = _des_key(key7)
    enc = Cipher(TripleDES(k * 3), modes.ECB()).encryptor()
    return enc.update(clear) + enc.finalize()


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse (RFC 2759 8.5): three DES blocks keyed by the zero-padded 21-byte password hash."""
    z = password_hash + bytes(21 - len(password_hash))
    return _des(challenge, z[0:7]) + _des(challenge, z[7:14]) + _des(challenge, z[14:21])


def generate_nt_response(authenticator_challenge: bytes, peer_challenge: bytes, user_name: bytes,
                         password: str) -> bytes:
    """GenerateNTResponse (RFC 2759 8.1): the 24-byte NT-Response."""
    return challenge_response(challenge_hash(peer_challenge, authenticator_challenge, user_name),
                              nt_password_hash(password))


def generate_authenticator_response(password: str, nt_response: bytes, peer_challenge: bytes,
                                    authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """GenerateAuthenticatorResponse (RFC 2759 8.7): ``S=`` and 40 upper-case hex digits, as bytes."""
    hash_hash = md4(nt_password_hash(password))
    digest = _sha1(hash_hash, nt_response, _MAGIC1)
    digest = _sha1(digest, challenge_hash(peer_challenge, authenticator_challenge, user_name), _MAGIC2)
    return b"S=" + digest.hex().upper().encode()


def master_key(password: str, nt_response: bytes) -> bytes:
    """GetMasterKey (RFC 3079 3.4) from PasswordHashHash and the NT-Response: 16 bytes."""
    return _sha1(md4(nt_password_hash(password)), nt_response, _MPPE_MAGIC1)[:16]


def asymmetric_start_key(master: bytes, length: int, *, send: bool, server: bool) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 3.4)."""
    magic = _MPPE_MAGIC3 if send == server else _MPPE_MAGIC2
    return _sha1(master, _SHS_PAD1, magic, _SHS_PAD2)[:length]


def msk(password: str, nt_response: bytes) -> bytes:
    """The EAP-MSCHAPv2 MSK: MasterReceiveKey | MasterSendKey (the server's, 16 bytes each) | 32 zero bytes."""
    m = master_key(password, nt_response)
    return (asymmetric_start_key(m, 16, send=False, server=True)
            + asymmetric_start_key(m, 16, send=True, server=True) + bytes(32))


def chap_md5(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """The CHAP / EAP-MD5 response (RFC 1994 4.1, RFC 3748 5.4): MD5(Identifier | secret | Challenge)."""
    return hashlib.md5(bytes((identifier,)) + secret + challenge).digest()

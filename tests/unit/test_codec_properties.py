"""Property tests of the IKEv2 codec: parse(build(m)) == m, and bad bytes only ever raise ipseclab errors."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.crypto import IkeSuite, derive_ike_sa
from ipseclab.errors import DecodeError, IntegrityError, IpsecLabError
from ipseclab.packets.fragment import Reassembler, fragment
from ipseclab.packets.message import EncryptedFragment, IkeSaCrypto, decode, encode
from tests.unit.strategies import message

SUITES = [
    IkeSuite.from_ids(12, 5, 12, key_bits=256),  # AES-CBC-256 / HMAC-SHA2-256-128
    IkeSuite.from_ids(20, 5, key_bits=128),  # AES-GCM-16-128
    IkeSuite.from_ids(18, 7, key_bits=256),  # AES-GCM-8-256
    IkeSuite.from_ids(28, 6),  # ChaCha20-Poly1305
    IkeSuite.from_ids(12, 4, 5, key_bits=128),  # AES-CBC-128 / AES-XCBC
]


def _crypto(suite: IkeSuite) -> IkeSaCrypto:
    _, keys = derive_ike_sa(suite, os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(8), os.urandom(8))
    return IkeSaCrypto.from_keys(suite, keys)


CRYPTOS = [_crypto(s) for s in SUITES]
settings.register_profile("ipseclab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ipseclab")


@given(message(encrypted=False))
@settings(max_examples=300)
def test_clear_messages_round_trip(m):
    data = encode(m)
    assert decode(data) == m
    assert encode(decode(data)) == data


@given(message(encrypted=True), st.sampled_from(range(len(CRYPTOS))))
@settings(max_examples=200)
def test_encrypted_messages_round_trip(m, which):
    crypto = CRYPTOS[which]
    data = encode(m, crypto)
    back = decode(data, crypto)
    assert back.encrypted is not None
    assert back.encrypted.payloads == m.encrypted.payloads
    assert (back.spi_i, back.spi_r, back.exchange, back.message_id, back.initiator, back.response) == (
        m.spi_i, m.spi_r, m.exchange, m.message_id, m.initiator, m.response)
    # the IV and padding found on decryption reproduce the exact bytes
    assert encode(back, crypto) == data
    # without keys the SK payload is carried opaque and re-encodes to the same bytes too
    opaque = decode(data)
    assert opaque.encrypted.payloads is None
    assert encode(opaque) == data


@given(message(encrypted=True), st.sampled_from(range(len(CRYPTOS))), st.integers(120, 400))
@settings(max_examples=100)
def test_fragments_reassemble(m, which, size):
    crypto = CRYPTOS[which]
    frags = fragment(m, crypto, size)
    assert all(len(f) <= size for f in frags)
    r = Reassembler()
    whole = None
    for f in reversed(frags):  # out of order on purpose
        got = r.add(decode(f, crypto))
        whole = got or whole
    assert whole is not None
    assert whole.encrypted.payloads == m.encrypted.payloads
    assert all(isinstance(decode(f).payloads[-1], EncryptedFragment) for f in frags)


@given(message(encrypted=False), st.data())
@settings(max_examples=300)
def test_truncated_or_corrupted_clear_messages_raise_decode_error(m, data):
    raw = bytearray(encode(m))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:cut]
        with pytest.raises(DecodeError):
            decode(bytes(raw))
        return
    # corrupt a byte of the payload chain but keep the header length right: either it still
    # parses (the byte was data) or it raises DecodeError, never anything else
    if len(raw) > 28:
        pos = data.draw(st.integers(28, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))


@given(message(encrypted=True), st.sampled_from(range(len(CRYPTOS))), st.data())
@settings(max_examples=200)
def test_corrupted_encrypted_messages_raise_integrity_or_decode_error(m, which, data):
    crypto = CRYPTOS[which]
    raw = bytearray(encode(m, crypto))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        back = decode(bytes(raw), crypto)
    except (IntegrityError, DecodeError):
        return
    # a corrupted next-payload field in the header can turn the message into a clear one (the SK
    # bytes read as some other payload); what must never happen is an SK payload that authenticates
    assert back.encrypted is None


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_never_escape_as_other_exceptions(blob):
    for crypto in (None, CRYPTOS[0], CRYPTOS[1]):
        with contextlib.suppress(IpsecLabError):
            decode(blob, crypto)

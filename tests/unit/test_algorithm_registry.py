"""The algorithm registry (crypto/algorithms.py): one row per IANA transform, every name it goes by.

Oracles that are not the registry itself: Wireshark's own library (every Wireshark name the
registry gives, other than ipseclab's marked ones, is a string libwireshark carries) and the
implementations in crypto/ (their key and ICV lengths agree with the registry's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ipseclab.crypto import TransformType, supported_encrs, supported_integs, supported_prfs
from ipseclab.crypto.algorithms import (
    ALGORITHMS,
    WIRESHARK_ESP_LEGACY_ENCR,
    WIRESHARK_ESP_ONLY_ENCR,
    Column,
    algorithm,
    name_of,
    names,
)

COLUMNS: tuple[Column, ...] = (
    "strongswan", "libreswan", "openiked_ike", "openiked_esp", "xfrm", "wireshark_ikev2", "wireshark_esp",
)
LIBWIRESHARK = Path("/usr/lib/x86_64-linux-gnu/libwireshark.so.16")


def test_one_row_per_transform():
    keys = [(a.type, a.id) for a in ALGORITHMS]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("column", COLUMNS)
def test_a_name_means_one_transform_per_type(column: Column):
    for ttype in (TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE):
        seen: dict[tuple[str, int], int] = {}
        for alg in (a for a in ALGORITHMS if a.type == ttype):
            for bits in alg.key_bits:
                # the kernel tells AES-GCM-8/12/16 apart by the ICV length given beside the name
                name = (alg.name(column, bits), alg.xfrm_bits if column == "xfrm" else 0)
                assert not name[0] or seen.setdefault(name, alg.id) == alg.id, (column, name)


def test_names_round_trip():
    assert names("strongswan", TransformType.ENCR)["aes256gcm16"] == (20, 256)
    assert names("strongswan", TransformType.ENCR, aliases=True, fixed_bits=False)["chacha20poly1305"] == (28, None)
    assert name_of("libreswan", TransformType.ENCR, 20, 128) == "aes_gcm_16_128"
    assert name_of("openiked_ike", TransformType.ENCR, 20, 192) == ""  # no aes-192-gcm for IKE in OpenIKED
    assert name_of("openiked_esp", TransformType.ENCR, 20, 192) == "aes-192-gcm"
    assert name_of("wireshark_ikev2", TransformType.ENCR, 12, 192) == "AES-CBC-192 [RFC3602]"
    assert name_of("wireshark_esp", TransformType.ENCR, 12, 192) == "AES-CBC [RFC3602]"
    alg = algorithm(TransformType.KE, 2)
    assert alg is not None and "since 4.0" in alg.refusals["libreswan"]


def test_every_implemented_transform_agrees_with_its_row():
    for encr in supported_encrs():
        alg = algorithm(TransformType.ENCR, encr.id)
        assert alg is not None and encr.key_bits in alg.key_bits
        assert (encr.salt_size, encr.icv_size, encr.aead) == (alg.salt, alg.icv, alg.aead)
    for integ in supported_integs():
        alg = algorithm(TransformType.INTEG, integ.id)
        assert alg is not None and (integ.key_size * 8, integ.icv_size) == (alg.key_bits[0], alg.icv)
    for prf in supported_prfs():
        assert algorithm(TransformType.PRF, prf.id) is not None


def test_supported_by():
    gcm = algorithm(TransformType.ENCR, 20)
    chacha = algorithm(TransformType.ENCR, 28)
    assert gcm is not None and gcm.supported_by() == {"strongswan", "libreswan", "openiked", "linux", "wireshark"}
    assert chacha is not None and "wireshark" not in chacha.supported_by()


@pytest.mark.skipif(not LIBWIRESHARK.exists(), reason="libwireshark.so.16 (Wireshark 4.0) is not installed")
def test_wireshark_names_are_wiresharks_own():
    """Every Wireshark name the registry gives (other than ipseclab's marked ones) is in libwireshark."""
    blob = LIBWIRESHARK.read_bytes()
    wanted = set(WIRESHARK_ESP_ONLY_ENCR) | set(WIRESHARK_ESP_LEGACY_ENCR)
    for column in ("wireshark_ikev2", "wireshark_esp"):
        for ttype in (TransformType.ENCR, TransformType.INTEG):
            wanted |= set(names(column, ttype))
    missing = sorted(n for n in wanted if "ipseclab-only" not in n and n.encode() + b"\0" not in blob)
    assert not missing

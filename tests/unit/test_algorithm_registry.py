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


def _tshark_takes(table: str, field: str, name: str) -> bool:
    """Whether tshark 4.0 accepts ``name`` in one algorithm field of one of its key tables (its UAT check)."""
    import shutil
    import subprocess

    rows = {
        ("esp_sa", "encr"): f'"IPv4","*","*","*","{name}","0x00","NULL",""',
        ("esp_sa", "auth"): f'"IPv4","*","*","*","NULL","","{name}","0x00"',
        ("ikev2_decryption_table", "encr"): f'0011223344556677,0011223344556677,00,00,"{name}",00,00,"NONE [RFC4306]"',
        ("ikev2_decryption_table", "integ"): f'0011223344556677,0011223344556677,00,00,"NULL [RFC2410]",00,00,"{name}"',
    }
    pcap = Path(__file__).resolve().parents[2] / "pcaps" / "strongswan-aes256-sha256-modp2048.pcap"
    tshark = shutil.which("tshark") or "tshark"
    out = subprocess.run([tshark, "-r", str(pcap), "-c", "1", "-o", f"uat:{table}:{rows[(table, field)]}"],
                         capture_output=True, text=True, timeout=60)
    return "invalid value" not in out.stderr


@pytest.mark.tshark
@pytest.mark.skipif(not LIBWIRESHARK.exists(), reason="libwireshark.so.16 (Wireshark 4.0) is not installed")
def test_the_registry_has_every_name_wiresharks_tables_take():
    """The converse of the test above: every algorithm-like string of libwireshark that tshark's ESP or IKEv2
    table accepts is in the registry (so a user's Wireshark table has no name ipseclab cannot even read)."""
    import re

    blob = LIBWIRESHARK.read_bytes()
    candidates = {m.decode() for m in re.findall(rb"(?<=\0)([A-Z0-9][\x20-\x7e]{2,70})(?=\0)", blob)
                  if re.search(rb"\[(RFC\d+|draft-[a-z0-9-]+|no checking|No Checking)\]$", m)
                  or re.fullmatch(rb"[A-Z0-9]+-CBC", m)}
    columns = {("esp_sa", "encr"): set(names("wireshark_esp", TransformType.ENCR)) | set(WIRESHARK_ESP_ONLY_ENCR)
               | set(WIRESHARK_ESP_LEGACY_ENCR),
               ("esp_sa", "auth"): set(names("wireshark_esp", TransformType.INTEG)),
               ("ikev2_decryption_table", "encr"): set(names("wireshark_ikev2", TransformType.ENCR)),
               ("ikev2_decryption_table", "integ"): set(names("wireshark_ikev2", TransformType.INTEG))}
    assert len(candidates) > 50, "libwireshark's algorithm names were not found: has the library changed?"
    missing = [(where, name) for where, known in columns.items() for name in sorted(candidates - known)
               if not any(name in k for k in columns.values()) and _tshark_takes(*where, name)]
    assert not missing, missing
    for where, known in columns.items():  # and every registry name of a column is one that column takes
        sample = sorted(n for n in known if "ipseclab-only" not in n)[:3]
        assert all(_tshark_takes(*where, n) for n in sample), (where, sample)

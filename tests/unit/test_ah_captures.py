"""AH verified from captures (issue 10): ``decrypt`` builds an AhSA from an esp_sa row with an authentication key.

The packets are made by ipseclab's AhSA, which tests/interop/test_esp_kernel.py cross-checks against the
Linux kernel both ways (Wireshark 4.0 checks no AH ICV, so it cannot be the oracle here); the rows are the
esp_sa rows a Wireshark user keeps AH keys in (NULL encryption, the AH algorithm and key). No AH capture
made by a daemon is stored in pcaps/ yet.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, PadN
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.analysis import decrypt_esp_capture
from ipseclab.cli import main
from ipseclab.crypto import EncrId, IntegId
from ipseclab.esp import AhSA
from ipseclab.pcap.esp_keyfiles import EspSaRow, write_esp_sa

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = bytes(IP(src="198.51.100.10", dst="198.51.100.20") / ICMP() / Raw(b"a" * 32))
V4_OPTIONS = bytes(IP(src="198.51.100.10", dst="198.51.100.20", options=[IPOption_Router_Alert()]) / ICMP()
                   / Raw(b"o" * 24))
V6_EXT = bytes(IPv6(src="2001:db8:1::10", dst="2001:db8:1::20") / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 4)])
               / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 4)]) / ICMP() / Raw(b"6" * 20))


def _sas() -> list[tuple[AhSA, bytes]]:
    return [
        # strongSwan and Libreswan pad AH to 32 bits over IPv4 (the kernel's align4): 28 bytes, not 32
        (AhSA(0x401, IntegId.HMAC_SHA2_256_128, bytes(range(32)), mode="transport", align4=True), V4),
        (AhSA(0x402, IntegId.HMAC_SHA1_96, bytes(range(20)), mode="transport"), V4_OPTIONS),
        (AhSA(0x403, IntegId.HMAC_SHA2_512_256, bytes(range(64)), mode="transport"), V6_EXT),
        (AhSA(0x404, IntegId.AES_XCBC_96, bytes(16), tunnel=("203.0.113.1", "203.0.113.2")), V4),
        # a capture that starts late in an ESN SA: the low 32 bits wrap inside it
        (AhSA(0x405, IntegId.HMAC_SHA2_384_192, bytes(48), mode="transport", esn=True, seq=2**32 - 2), V4),
    ]


def _capture(tmp_path: Path) -> tuple[Path, list[EspSaRow]]:
    frames, rows = [], []
    for sa, inner in _sas():
        for _ in range(3):
            wire = sa.protect(inner)
            frames.append(ETH / (IP(wire) if wire[0] >> 4 == 4 else IPv6(wire)))
        rows.append(EspSaRow.from_ids(sa.spi, EncrId.NULL, b"", sa.integ.id, sa.key,
                                      family="IPv6" if inner is V6_EXT else "IPv4"))
    path = tmp_path / "ah.pcap"
    wrpcap(str(path), frames)
    return path, rows


def test_ah_packets_verify_with_the_rows_keys(tmp_path: Path):
    path, rows = _capture(tmp_path)
    recs = decrypt_esp_capture(path, rows)
    assert len(recs) == 15 and all(r.proto == "ah" for r in recs)
    assert all(r.verified and r.error is None for r in recs), [r.line() for r in recs if not r.verified]
    assert [r.esn for r in recs[12:]] == [True] * 3 and [r.seq for r in recs[12:]] == [2**32 - 1, 0, 1]
    assert recs[0].inner == V4[20:] and recs[9].next_header == 4  # transport payload; tunnel: the inner packet


def test_a_wrong_ah_key_is_an_error_and_exit_1(tmp_path: Path, capsys):
    path, rows = _capture(tmp_path)
    good, bad = tmp_path / "esp_sa", tmp_path / "esp_sa.wrong"
    write_esp_sa(good, rows)
    write_esp_sa(bad, [rows[0], EspSaRow(rows[1].family, "*", "*", rows[1].spi, "NULL", b"", rows[1].auth_name,
                                         bytes(20)), *rows[2:]])
    assert main(["decrypt", str(path), "--esp-keys", str(good)]) == 0
    assert "15 ESP/AH packets, 15 verified, 0 with errors" in capsys.readouterr().out
    assert main(["decrypt", str(path), "--esp-keys", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.count("ERROR IntegrityError: AH ICV mismatch") == 3 and "12 verified, 3 with errors" in out


def test_ah_without_a_keyed_row_is_listed_unverified(tmp_path: Path):
    path, _ = _capture(tmp_path)
    unkeyed = EspSaRow("IPv4", "*", "*", 0x401, "NULL", b"", "ANY 128 bit authentication [no checking]", b"")
    recs = decrypt_esp_capture(path, [unkeyed])
    assert not any(r.verified or r.error for r in recs)

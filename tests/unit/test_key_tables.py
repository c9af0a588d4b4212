"""Key tables as Wireshark reads them (issue 10): ASCII and odd-length keys, SPI and address wildcards,
decimal SPIs, comments, names Wireshark lacks in their obvious spellings, and a bad row skipped, not fatal.

The oracle is tshark 4.0 reading the very same esp_sa row text (``-o uat:esp_sa:ROW``): for every packet,
ipseclab verifies and decrypts it exactly when Wireshark does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.analysis import decrypt_esp_capture
from ipseclab.cli import main
from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import KeyFileError
from ipseclab.esp import EspSA
from ipseclab.pcap.esp_keyfiles import address_matches, esp_key, parse_esp_sa, parse_spi
from ipseclab.pcap.keyfiles import parse_ikev2_decryption_table

ROOT = Path(__file__).resolve().parents[2]
IKE_CAPTURE = ROOT / "pcaps" / "strongswan-aes256-sha256-modp2048.pcap"
IKE_TABLE = ROOT / "pcaps" / "strongswan-aes256-sha256-modp2048.ikev2_decryption_table"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
INNER = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP() / Raw(b"w" * 40))
NEAR, FAR = ("198.51.100.1", "198.51.100.2"), ("203.0.113.1", "203.0.113.2")
CBC = "AES-CBC [RFC3602]"
SHA1 = "HMAC-SHA-1-96 [RFC2404]"
ODD_ENC = "123456789abcdef0123456789abcdef"  # 31 digits: Wireshark reads 0x0123...
ODD_AUTH = "23456789abcdef0123456789abcdef012345678"  # 39 digits

# (what the row shows, SPI, tunnel, encryption key, auth key, row text, Wireshark and ipseclab decrypt it)
CASES = [
    ("ASCII keys", 0x1001, NEAR, b"0123456789abcdef", b"abcdefghijklmnopqrst",
     f'"IPv4","*","*","0x00001001","{CBC}","0123456789abcdef","{SHA1}","abcdefghijklmnopqrst"', True),
    ("odd hex digit counts", 0x1002, NEAR, bytes.fromhex("0" + ODD_ENC), bytes.fromhex("0" + ODD_AUTH),
     f'"IPv4","*","*","0x00001002","{CBC}","0x{ODD_ENC}","{SHA1}","0x{ODD_AUTH}"', True),
    ("decimal SPI", 0x1003, NEAR, bytes(range(16)), bytes(range(20)),
     f'"IPv4","*","*","4099","{CBC}","0x{bytes(range(16)).hex()}","{SHA1}","0x{bytes(range(20)).hex()}"', True),
    ("address wildcards", 0x1005, NEAR, bytes(16), bytes(20),
     f'"IPv4","198.51.100.*","*.*.*.2","0x00001005","{CBC}","0x{bytes(16).hex()}","{SHA1}","0x{bytes(20).hex()}"',
     True),
    ("an address wildcard that does not match", 0x1006, FAR, bytes(16), bytes(20),
     f'"IPv4","198.51.100.*","*","0x00001006","{CBC}","0x{bytes(16).hex()}","{SHA1}","0x{bytes(20).hex()}"', False),
    ("SPI nibble wildcards", 0x10A7, NEAR, bytes(range(1, 17)), bytes(range(1, 21)),
     f'"IPv4","*","*","0x000010**","{CBC}","0x{bytes(range(1, 17)).hex()}","{SHA1}","0x{bytes(range(1, 21)).hex()}"',
     True),
]


def _capture(tmp_path: Path) -> Path:
    frames = []
    for _, spi, tunnel, key, auth, _, _ in CASES:
        sa = EspSA(spi, EncrId.AES_CBC, key, integ=IntegId.HMAC_SHA1_96, integ_key=auth, tunnel=tunnel)
        frames += [ETH / IP(sa.protect(INNER)) for _ in range(2)]
    path = tmp_path / "esp.pcap"
    wrpcap(str(path), frames)
    return path


def _tshark(pcap: Path, rows: list[str]) -> dict[int, bool]:
    """Frame -> whether Wireshark verified the ICV and decrypted the inner ICMP, given these row texts."""
    args = ["tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE",
            "-o", "esp.enable_authentication_check:TRUE"]
    for row in rows:
        args += ["-o", f"uat:esp_sa:{row}"]
    args += ["-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "esp.icv_good", "-e", "icmp.type"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    result = {}
    for line in out.splitlines():
        frame, good, icmp = line.split("|")
        result[int(frame)] = good in ("1", "True") and icmp != ""
    return result


@pytest.mark.tshark
def test_ipseclab_reads_each_row_as_tshark_does(tmp_path: Path):
    pcap = _capture(tmp_path)
    texts = [c[5] for c in CASES]
    rows = parse_esp_sa("\n".join(texts), "esp_sa")
    ours = {r.frame: r.verified and r.inner == INNER for r in decrypt_esp_capture(pcap, rows)}
    theirs = _tshark(pcap, texts)
    expected = {2 * i + k + 1: case[6] for i, case in enumerate(CASES) for k in range(2)}
    assert theirs == expected, "tshark is not the oracle this test assumes"
    assert ours == theirs


def test_keys_spis_and_addresses_as_wireshark_reads_them():
    assert esp_key("abc", "key", "x") == b"abc" and esp_key("0xabc", "key", "x") == b"\x0a\xbc"
    assert esp_key("0X0102", "key", "x") == b"\x01\x02" and esp_key("0x", "key", "x") == b""
    assert parse_spi("4099", "x") == (4099, 0xFFFFFFFF) and parse_spi("010", "x") == (8, 0xFFFFFFFF)
    assert parse_spi("0x1234****", "x") == (0x12340000, 0xFFFF0000) and parse_spi("*", "x") == (None, 0)
    for bad in ("0x12**", "12*", "spi", "0x100000000"):
        with pytest.raises(KeyFileError, match="SPI"):
            parse_spi(bad, "esp_sa line 3")
    assert address_matches("2001:db8:*::1", "2001:db8:ff::1") and not address_matches("2001:db8:*::1", "2001:db8::2")
    assert address_matches("10.*.0.1", "10.7.0.1") and not address_matches("10.*.0.1", "10.7.0.2")
    (row,) = parse_esp_sa(f'"IPv4","*","*","0x000010**","{CBC}","0x00","{SHA1}",""')
    assert row.to_row().split(",")[3] == '"0x000010**"' and row.matches(0x10FF, "1.1.1.1", "2.2.2.2")


def test_comment_lines_and_the_names_wireshark_lacks():
    text = ("# exported by hand\n"
            '"IPv4","*","*","0x1","CHACHA20-POLY1305 [RFC7634]","0x' + "00" * 36 + '","NULL",""\n'
            '  # indented comment\n'
            '"IPv4","*","*","0x2","chacha20-poly1305  [rfc7634] (ipseclab-only)","0x' + "00" * 36 + '","NULL",""\n'
            '"IPv4","*","*","0x3","AES-CBC [RFC3602]","0x' + "00" * 16 + '","AES-XCBC-MAC-96 [RFC3566]","0x'
            + "00" * 16 + '"\n')
    rows = parse_esp_sa(text)
    assert [r.encr_id for r in rows] == [EncrId.CHACHA20_POLY1305] * 2 + [EncrId.AES_CBC]
    assert rows[0].encr_name == "CHACHA20-POLY1305 [RFC7634] (ipseclab-only)"  # written back with the mark
    assert rows[2].integ_id == IntegId.AES_XCBC_96
    ike = IKE_TABLE.read_text().replace("AES-CBC-256 [RFC3602]", "aes-cbc-256 [RFC3602]")
    assert parse_ikev2_decryption_table("# comment\n" + ike)[0].encr_id == EncrId.AES_CBC


def test_a_bad_row_is_skipped_and_the_rest_used(tmp_path: Path, capsys):
    """One row for an algorithm ipseclab lacks, one malformed: each named once; the good row still decrypts."""
    good = [ln for ln in IKE_TABLE.read_text().splitlines() if ln and not ln.startswith("#")]
    table = tmp_path / "ikev2_decryption_table"
    table.write_text('0000000000000001,0000000000000002,00,00,"ROT13 [RFC0]",00,00,"NONE [RFC4306]"\n'
                     + "\n".join(good) + "\nabc,def\n")
    esp = tmp_path / "esp_sa"
    esp.write_text(f'"IPv4","*","*","0x1","TWOFISH-CBC","0x{"00" * 16}","{SHA1}","0x{"00" * 20}"\n'
                   f'"IPv4","*","*","0x2","{CBC}","0x{"00" * 16}","{SHA1}","0x{"00" * 20}"\n')
    rc = main(["decrypt", str(IKE_CAPTURE), "--keys", str(table), "--esp-keys", str(esp)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "8 IKE datagrams, 6 decrypted;" in out and "0 with errors" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 3, err
    assert f"{table} line 1" in warnings[0] and "ROT13" in warnings[0]
    assert f"{table} line {len(good) + 2}" in warnings[1] and "8 fields" in warnings[1]
    assert f"{esp} line 1" in warnings[2] and "TWOFISH" in warnings[2] and "has no Twofish" in warnings[2]
    assert all(w.startswith("warning: ") and w.endswith("row skipped") for w in warnings)


def test_a_table_with_no_usable_row_is_still_an_error(tmp_path: Path, capsys):
    esp = tmp_path / "esp_sa"
    esp.write_text(f'"IPv4","*","*","0x1","TWOFISH-CBC","0x{"00" * 16}","{SHA1}","0x{"00" * 20}"\n'
                   '"IPv4","*","*","0x2","AES-OCB","","NULL",""\n')
    rc = main(["decrypt", str(IKE_CAPTURE), "--esp-keys", str(esp)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"{esp} line 1" in err and "1 more unusable row" in err


def test_a_key_of_the_wrong_length_names_the_file_and_line(tmp_path: Path, capsys):
    """A 15-byte AES key in esp_sa and a short SK_ei in the IKE table: each a warning with its file and line."""
    good = [ln for ln in IKE_TABLE.read_text().splitlines() if ln and not ln.startswith("#")]
    fields = good[0].split(",")
    fields[0], fields[2] = "00000000000000aa", fields[2][:-2]  # another IKE SA, its SK_ei one byte short
    table = tmp_path / "ikev2_decryption_table"
    table.write_text("# SK_ei lost a byte\n" + ",".join(fields) + "\n" + "\n".join(good) + "\n")
    esp = tmp_path / "esp_sa"
    esp.write_text(f'"IPv4","*","*","0x2","{CBC}","0x{"00" * 16}","{SHA1}","0x{"00" * 20}"\n'
                   f'"IPv4","*","*","0x3","{CBC}","0x{"00" * 15}","{SHA1}","0x{"00" * 20}"\n')
    main(["decrypt", str(IKE_CAPTURE), "--keys", str(table), "--esp-keys", str(esp)])
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2, warnings
    assert f"{table} line 2: SK_ei is" in warnings[0] and "needs" in warnings[0], warnings[0]
    assert f"{esp} line 2:" in warnings[1] and "15" in warnings[1], warnings[1]

"""Wireshark esp_sa rows (read, write, names) and decrypt_esp_capture on a pcap of ipseclab-made packets."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.analysis import decrypt_esp_capture, esp_sa_row
from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import KeyFileError
from ipseclab.esp import AhSA, EspSA, nat_keepalive
from ipseclab.lab.esp_keys import esp_sa_row as lab_row
from ipseclab.lab.keys import XfrmState
from ipseclab.pcap.esp_keyfiles import (
    EspSaRow,
    parse_esp_sa,
    read_esp_sa,
    tshark_esp_options,
    write_esp_sa,
)

T4 = ("198.51.100.1", "198.51.100.2")
T6 = ("2001:db8:ff::1", "2001:db8:ff::2")
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # explicit MACs: no route/ARP lookups
INNER = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP() / Raw(b"x" * 40))


def test_rows_use_wireshark_names_and_round_trip(tmp_path: Path):
    gcm = EspSA(0x101, EncrId.AES_GCM_16, bytes(range(20)), tunnel=T4)
    cbc = EspSA(0x102, EncrId.AES_CBC, bytes(16), integ=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32), tunnel=T6)
    rows = [esp_sa_row(gcm), esp_sa_row(cbc, src=T6[0], dst=T6[1])]
    assert rows[0].to_row() == ('"IPv4","*","*","0x00000101","AES-GCM with 16 octet ICV [RFC4106]",'
                                '"0x000102030405060708090a0b0c0d0e0f10111213","NULL",""')
    assert rows[1].family == "IPv6" and rows[1].auth_name == "HMAC-SHA-256-128 [RFC4868]"
    path = tmp_path / "esp_sa"
    write_esp_sa(path, rows)
    assert read_esp_sa(path) == rows
    assert rows[0].key_bits == 128 and rows[0].encr_id == EncrId.AES_GCM_16 and rows[0].icv_size == 0


def test_rows_the_lab_writes_from_kernel_sas_parse():
    state = XfrmState("198.51.100.10", "198.51.100.20", "esp", 0xCAEA56F0,
                      enc=("cbc(aes)", bytes(16), ), auth=("hmac(sha256)", bytes(32), 128))
    written = lab_row(state)
    assert written is not None
    (row,) = parse_esp_sa(written.to_row())  # the lab's row survives Wireshark's text format
    assert (row.spi, row.encr_id, row.integ_id, row.icv_size) == (0xCAEA56F0, EncrId.AES_CBC,
                                                                 IntegId.HMAC_SHA2_256_128, 16)


def test_ipseclab_only_names_stay_out_of_tshark_options():
    chacha = esp_sa_row(EspSA(0x103, EncrId.CHACHA20_POLY1305, bytes(36), tunnel=T4))
    gmac = esp_sa_row(EspSA(0x104, EncrId.NULL_AUTH_AES_GMAC, bytes(20), tunnel=T4))
    xcbc = esp_sa_row(EspSA(0x105, EncrId.AES_CBC, bytes(16), integ=IntegId.AES_XCBC_96, integ_key=bytes(16),
                            tunnel=T4))
    gcm = esp_sa_row(EspSA(0x106, EncrId.AES_GCM_8, bytes(20), tunnel=T4))
    assert [r.wireshark_can_decrypt for r in (chacha, gmac, xcbc, gcm)] == [False, False, False, True]
    opts = tshark_esp_options([chacha, gmac, xcbc, gcm])
    assert opts[:4] == ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    assert len(opts) == 6 and "AES-GCM with 8 octet ICV [RFC4106]" in opts[5]
    assert parse_esp_sa(chacha.to_row()) == [chacha]


@pytest.mark.parametrize(("text", "match"), [
    ('"IPv4","*","*","0x1","AES-CBC [RFC3602]","0x00"', "8 fields"),
    ('"IPv5","*","*","0x1","NULL","","NULL",""', "protocol"),
    ('"IPv4","*","*","zz","NULL","","NULL",""', "SPI"),
    ('"IPv4","*","*","0x1","AES-OCB","","NULL",""', "unknown encryption"),
    ('"IPv4","*","*","0x1","NULL","","HMAC-SHA-3",""', "unknown authentication"),
    ('"IPv4","*","*","0x1","AES-CBC [RFC3602]","0xzz","NULL",""', "not hex"),
])
def test_bad_rows_name_the_line_and_field(text, match):
    with pytest.raises(KeyFileError, match=match):
        parse_esp_sa("# a comment\n\n" + text, "esp_sa")


def test_wildcards_and_matching():
    (row,) = parse_esp_sa('"Any","*","198.51.100.2","*","NULL","","HMAC-SHA-1-96 [RFC2404]","0x00"')
    assert row.spi is None and row.matches(7, "198.51.100.1", "198.51.100.2")
    assert not row.matches(7, "198.51.100.1", "198.51.100.3")
    with pytest.raises(KeyFileError):
        EspSaRow.from_ids(1, EncrId.RC5, bytes(16))


def _capture(tmp_path: Path) -> tuple[Path, list[EspSaRow], dict[str, EspSA]]:
    sas = {
        "gcm": EspSA(0x201, EncrId.AES_GCM_16, bytes(range(20)), tunnel=T4),
        "cbc-udp6": EspSA(0x202, EncrId.AES_CBC, bytes(16), integ=IntegId.HMAC_SHA1_96, integ_key=bytes(20),
                          tunnel=T6, udp=True),
        "esn": EspSA(0x203, EncrId.AES_GCM_16, bytes(range(1, 21)), tunnel=T4, esn=True, seq=2**32 - 2),
        "transport": EspSA(0x204, EncrId.CHACHA20_POLY1305, bytes(36), mode="transport"),
    }
    frames = []
    for sa in sas.values():
        for _ in range(3):
            pkt = INNER if sa.tunnel else bytes(IP(src=T4[0], dst=T4[1]) / UDP(dport=7) / Raw(b"t" * 20))
            wire = sa.protect(pkt)
            frames.append(ETH / (IP(wire) if wire[0] >> 4 == 4 else IPv6(wire)))
    frames.append(ETH / IP(sas["gcm"].dummy_packet(30)))
    frames.append(ETH / IP(bytes(frames[0][IP])))  # the first packet again: a replay
    frames.append(ETH / IP(nat_keepalive(*T4)))
    frames.append(ETH / IP(AhSA(0x301, key=bytes(32), mode="transport").protect(INNER)))
    unknown = EspSA(0x999, EncrId.AES_GCM_16, bytes(20), tunnel=T4).protect(INNER)
    frames.append(ETH / IP(unknown))
    path = tmp_path / "esp.pcap"
    wrpcap(str(path), frames)
    return path, [esp_sa_row(sa) for sa in sas.values()], sas


def test_decrypt_esp_capture(tmp_path: Path):
    path, rows, _ = _capture(tmp_path)
    recs = decrypt_esp_capture(path, rows)
    assert len(recs) == 12 + 1 + 1 + 1 + 1  # the keepalive is not ESP
    good = [r for r in recs[:12]]
    assert all(r.verified and r.error is None for r in good), [r.line() for r in good if r.error]
    assert all(r.inner == INNER and r.next_header == 4 for r in good[:9])
    assert [r.esn for r in good[6:9]] == [True] * 3 and [r.seq for r in good[6:9]] == [2**32 - 1, 0, 1]
    assert good[3].udp_encap and good[9].next_header == 17
    dummy, replay, ah, unknown = recs[12:]
    assert dummy.dummy and dummy.verified
    assert replay.error is not None and "Replay" in replay.error
    assert ah.proto == "ah" and ah.next_header == 1 and ah.inner == INNER[20:] and not ah.verified
    assert unknown.error == "no esp_sa row for this SPI"
    text = "\n".join(r.line() for r in recs)
    assert "ICMP" in text and "ERROR" in text and "(not verified)" in text


def test_decrypt_esp_capture_reports_a_wrong_key(tmp_path: Path):
    path, rows, _ = _capture(tmp_path)
    wrong = [EspSaRow(r.family, r.src, r.dst, r.spi, r.encr_name, bytes(len(r.encr_key)), r.auth_name, r.auth_key)
             for r in rows]
    recs = decrypt_esp_capture(path, wrong)
    assert all(r.error and "ICV" in r.error for r in recs[:3])

"""ESN high-order bits inferred for captures that start in the middle of an SA (``analysis.esp``).

A capture that begins after an ESN SA passed 2^32 packets holds nothing that says the high-order
bits: they never travel, and the esp_sa rows do not say ESN at all.  decrypt tries them (no ESN, ESN
from 0, then 1..16) on the SA's first packet and keeps what verifies.  The kernel makes such a capture
in ``tests/interop/test_esp_kernel.py`` (``replay-oseq-hi``); here ipseclab's own SAs make them, so the
cases the kernel test cannot reach cheaply (AH, a bound that is passed, reordering) run without root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.analysis import decrypt_esp_capture, esp_sa_row
from ipseclab.analysis.esp import ESN_HIGH_MAX
from ipseclab.cli import main
from ipseclab.crypto import EncrId, IntegId
from ipseclab.esp import AhSA, EspSA
from ipseclab.pcap.esp_keyfiles import EspSaRow, write_esp_sa

T4 = ("198.51.100.1", "198.51.100.2")
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
INNER = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP() / Raw(b"e" * 40))


def _write(tmp_path: Path, wires: list[bytes], rows: list[EspSaRow]) -> tuple[Path, Path]:
    pcap, keys = tmp_path / "esn.pcap", tmp_path / "esp_sa"
    wrpcap(str(pcap), [ETH / IP(w) for w in wires])
    write_esp_sa(keys, rows)
    return pcap, keys


def _sas() -> list[EspSA]:
    return [EspSA(0x501, EncrId.AES_GCM_16, bytes(range(20)), tunnel=T4, esn=True),
            EspSA(0x502, EncrId.AES_CBC, bytes(range(16)), integ=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32),
                  tunnel=T4, esn=True)]


@pytest.mark.parametrize("hi", [1, 3, ESN_HIGH_MAX])
def test_a_capture_that_starts_at_high_bits_hi_with_low_bits_0_decrypts(tmp_path: Path, hi: int):
    wires, rows = [], []
    for sa in _sas():
        sa.seq = (hi << 32) - 1  # the next packet is hi:0, valid under ESN after a wrap
        wires += [sa.protect(INNER) for _ in range(3)]
        rows.append(esp_sa_row(sa, src=T4[0], dst=T4[1]))
    recs = decrypt_esp_capture(_write(tmp_path, wires, rows)[0], rows)
    got = [(r.spi, r.seq, r.verified, r.esn, r.esn_hi, r.error) for r in recs]
    want = [(spi, seq, True, True, hi, None) for spi in (0x501, 0x502) for seq in (0, 1, 2)]
    assert got == want, f"expected every packet verified with ESN high-order bits {hi}, got {got}"
    assert all(r.inner == INNER for r in recs), "expected the inner packet back"


def test_a_reordered_packet_of_the_first_subspace_still_verifies(tmp_path: Path):
    sa = _sas()[0]
    sa.seq = (2 << 32) + 100
    first, second = sa.protect(INNER), sa.protect(INNER)
    row = esp_sa_row(sa, src=T4[0], dst=T4[1])
    recs = decrypt_esp_capture(_write(tmp_path, [second, first, second], [row])[0], [row])
    got = [(r.seq, r.verified, r.esn_hi, (r.error or "").split(":")[0]) for r in recs]
    assert got == [(102, True, 2, ""), (101, True, 2, ""), (102, False, 2, "ReplayError")], got


def test_high_bits_beyond_the_bound_fail_naming_what_was_tried(tmp_path: Path, capsys):
    sa = _sas()[0]
    sa.seq = ((ESN_HIGH_MAX + 1) << 32) + 5
    wires = [sa.protect(INNER) for _ in range(2)]
    pcap, keys = _write(tmp_path, wires, [esp_sa_row(sa, src=T4[0], dst=T4[1])])
    assert main(["decrypt", str(pcap), "--esp-keys", str(keys)]) == 1
    out = capsys.readouterr().out
    assert out.count(f"with ESN high-order bits 0..{ESN_HIGH_MAX})") == 2 and "0 verified, 2 with errors" in out, out


def test_the_text_line_reports_the_inferred_high_bits(tmp_path: Path, capsys):
    sa = _sas()[1]
    sa.seq = (1 << 32) + 41
    pcap, keys = _write(tmp_path, [sa.protect(INNER)], [esp_sa_row(sa, src=T4[0], dst=T4[1])])
    assert main(["decrypt", str(pcap), "--esp-keys", str(keys)]) == 0
    assert "seq=42 esn hi=1: IPv4: ICMP 10.0.0.1 > 10.0.1.1 echo-request" in capsys.readouterr().out


def test_ah_in_a_capture_that_starts_at_high_bits_2(tmp_path: Path):
    sa = AhSA(0x503, IntegId.HMAC_SHA2_256_128, bytes(range(32)), tunnel=T4, esn=True, seq=(2 << 32) - 1)
    row = EspSaRow.from_ids(sa.spi, EncrId.NULL, b"", sa.integ.id, sa.key)
    recs = decrypt_esp_capture(_write(tmp_path, [sa.protect(INNER) for _ in range(2)], [row])[0], [row])
    assert [(r.seq, r.verified, r.esn_hi, r.error) for r in recs] == [(0, True, 2, None), (1, True, 2, None)], [
        r.line() for r in recs]


def test_an_sa_whose_packets_keep_failing_gets_the_whole_search_a_bounded_number_of_times(tmp_path: Path):
    from ipseclab.analysis.esp import MAX_SEARCHES, EspDecryptor

    sa = _sas()[0]
    sa.seq = (40 << 32) + 1  # out of reach: every packet fails
    row = esp_sa_row(sa, src=T4[0], dst=T4[1])
    pcap = _write(tmp_path, [sa.protect(INNER) for _ in range(MAX_SEARCHES + 3)], [row])[0]
    dec = EspDecryptor([row])
    from ipseclab.pcap.reader import IpPacket, read_ip

    errors = [rec.error or "" for p in read_ip(pcap) if isinstance(p, IpPacket) and (rec := dec.packet(p))]
    assert all("ICV mismatch" in e for e in errors) and len(errors) == MAX_SEARCHES + 3, errors
    assert sum(f"0..{ESN_HIGH_MAX}" in e for e in errors) == MAX_SEARCHES, errors  # then only the two cheap tries

"""``analysis.fast`` writes exactly what the general path (``stream.records`` + ``render``) writes.

The fast path takes the common ESP packet of a classic pcap inline; everything else goes through the
general path.  The oracle here is the general path itself, which the other decrypt tests check against
tshark, the kernel and RFC vectors: on one varied capture (IKE; ESP in AES-GCM, ChaCha20-Poly1305 and
AES-CBC; ESP in UDP 4500; ESN across a wrap of the low 32 bits; IPv6 outside and inside; AH; TFC padding;
a dummy packet; a bad ICV; a replay; a reordered packet; an SPI with no row; ARP; a VLAN tag; a time
too early for the fast JSON time) both must give the same bytes, in text and JSON, on Ethernet, Linux
SLL and raw-IP captures, whole and cut short inside the last record.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

from ipseclab.analysis import esp_sa_row, read_key_tables, records
from ipseclab.analysis import workers as workers_module
from ipseclab.analysis.fast import TIME_MAX, TIME_MIN, time_fraction, write_decrypted
from ipseclab.analysis.render import write_json, write_text
from ipseclab.crypto import EncrId, IntegId
from ipseclab.esp import AhSA, EspSA
from ipseclab.pcap.esp_keyfiles import EspSaRow, write_esp_sa
from ipseclab.pcap.reader import capture_records
from tests.bench.bench_decrypt import make_capture

T4 = ("198.51.100.1", "198.51.100.2")
T6 = ("2001:db8::1", "2001:db8::2")
ECHO = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP(id=7, seq=1) / Raw(b"p" * 56))
ECHO6 = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:2::1") / ICMPv6EchoRequest(id=3, seq=9) / Raw(b"6" * 40))
UDP4 = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=5353, dport=53) / Raw(b"q" * 30))
UNREACH = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP(type=3, code=1) / Raw(b"u" * 28))
# pings beside ECHO for the JSON path's memo of a payload's hex (fast.HEX_SPLIT: the bytes after the 64th):
# the same length with the last byte or the first memoised byte changed, and a longer one
ECHO_LAST = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP(id=7, seq=1) / Raw(b"p" * 55 + b"q"))
ECHO_SPLIT = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP(id=7, seq=1) / Raw(b"p" * 36 + b"q" + b"p" * 19))
ECHO_LONG = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / ICMP(id=7, seq=1) / Raw(b"p" * 57))


def _frames(tmp_path: Path) -> tuple[list[bytes], list[EspSaRow], Path]:
    """IP packets of the varied capture, the esp_sa rows, and the IKE table (from the benchmark's capture)."""
    bench_pcap, ike_table, bench_esp = make_capture(tmp_path, 3)
    packets = [rec[0][14:] for rec in capture_records(bench_pcap) if not isinstance(rec, str)]  # IKE + 3 pings
    key = bytes(range(20))
    gcm = EspSA(0x1001, EncrId.AES_GCM_16, key, tunnel=T4)
    udp = EspSA(0x1002, EncrId.AES_GCM_16, key, tunnel=T4, udp=True)
    esn = EspSA(0x1003, EncrId.AES_GCM_16, key, tunnel=T4, esn=True, seq=(1 << 32) - 3)
    chacha = EspSA(0x1004, EncrId.CHACHA20_POLY1305, bytes(range(36)), tunnel=T4)
    cbc = EspSA(0x1005, EncrId.AES_CBC, bytes(16), integ=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32), tunnel=T4)
    v6 = EspSA(0x1006, EncrId.AES_GCM_16, key, tunnel=T6)
    tfc = EspSA(0x1008, EncrId.AES_GCM_16, key, tunnel=T4, tfc_pad_to=300)
    stranger = EspSA(0x1009, EncrId.AES_GCM_16, key, tunnel=T4)  # no row
    ah = AhSA(0x1007, IntegId.HMAC_SHA2_256_128, bytes(range(32)), tunnel=T4)
    for sa in (gcm, udp, esn, chacha, cbc, v6, tfc):
        for inner in (ECHO, ECHO6, UDP4, UNREACH, ECHO):
            packets.append(sa.protect(inner))
    packets += [gcm.protect(inner) for inner in (ECHO_LAST, ECHO, ECHO_SPLIT, ECHO_LONG, ECHO, ECHO_LAST)]
    early = gcm.protect(ECHO)
    later = gcm.protect(ECHO)
    packets += [later, early, later]  # a reordered packet inside the window, then a replay
    bad = bytearray(gcm.protect(ECHO))
    bad[-1] ^= 1
    packets += [bytes(bad), gcm.protect(ECHO), gcm.dummy_packet(16), udp.keepalive_packet()]
    packets += [ah.protect(ECHO), ah.protect(UDP4), stranger.protect(ECHO), esn.protect(ECHO)]
    rows = [esp_sa_row(sa, src=sa.tunnel[0], dst=sa.tunnel[1]) for sa in (gcm, udp, esn, chacha, cbc, v6, tfc)
            if sa.tunnel]
    rows.append(EspSaRow.from_ids(ah.spi, EncrId.NULL, b"", ah.integ.id, ah.key))
    esp_table = tmp_path / "esp_sa"
    write_esp_sa(esp_table, rows)
    return packets, [str(bench_esp), str(esp_table)], ike_table  # type: ignore[return-value]


def _link(linktype: int, ip: bytes, vlan: bool = False) -> bytes:
    ethertype = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
    if linktype == 1:
        tag = b"\x81\x00\x00\x05" if vlan else b""
        return bytes(6) + b"\x02\x00\x00\x00\x00\x01" + tag + ethertype + ip
    if linktype == 113:
        return b"\x00\x00\x00\x01\x00\x06" + b"\x02\x00\x00\x00\x00\x01\x00\x00" + ethertype + ip
    return ip


def _pcap(path: Path, linktype: int, packets: list[bytes], cut: bool) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    frames = [_link(linktype, p, vlan=(i % 11 == 5)) for i, p in enumerate(packets)]
    if linktype == 1:
        frames.insert(3, bytes(12) + b"\x08\x06" + bytes(28))  # ARP: no record at all
    for i, frame in enumerate(frames):
        sec = 1_700_000_000 + i // 7 if i != 20 else 1000  # one frame too early for the inline JSON time
        out.append(struct.pack("<IIII", sec, (i * 137_911) % 1_000_000, len(frame), len(frame)) + frame)
    data = b"".join(out)
    path.write_bytes(data[:-7] if cut else data)
    return path


@pytest.mark.parametrize("linktype", [1, 113, 101])
@pytest.mark.parametrize("cut", [False, True])
def test_fast_and_general_paths_write_the_same_bytes(tmp_path: Path, linktype: int, cut: bool):
    packets, esp_tables, ike_table = _frames(tmp_path)
    pcap = _pcap(tmp_path / "varied.pcap", linktype, packets, cut)
    ike_rows, esp_rows, skipped = read_key_tables([ike_table], esp_tables)
    assert not skipped, skipped
    for as_json in (False, True):
        fast_out, general_out = io.BytesIO(), io.BytesIO()
        fast = write_decrypted(str(pcap), ike_rows, esp_rows, fast_out, as_json=as_json)
        recs = records(str(pcap), ike_rows, esp_rows)
        general = write_json(recs, general_out) if as_json else write_text(recs, general_out)
        got, want = fast_out.getvalue().decode(), general_out.getvalue().decode()
        if got != want:
            diff = next((g, w) for g, w in zip(got.splitlines(), want.splitlines(), strict=False) if g != w)
            raise AssertionError(f"json={as_json}: the fast path wrote {diff[0]!r}\nthe general path {diff[1]!r}")
        counts = (fast.ike, fast.decrypted, fast.esp, fast.verified, fast.errors)
        assert counts == (general.ike, general.decrypted, general.esp, general.verified, general.errors), counts
        if linktype != 101:  # raw IP: every packet takes the general path
            assert fast.fast >= 15, f"the fast path took only {fast.fast} packets: the comparison proves little"
        if not as_json:  # the capture is as varied as it says
            for what in ("ReplayError", "IntegrityError", "esn hi=1", "(UDP 4500)", " AH ", "IPv6: ICMPv6",
                         "no esp_sa row", "none (dummy)", "IKE_AUTH", "dest-unreach", "UDP 10.0.0.1:5353"):
                assert what in got, f"{what!r} is not in the output:\n{got}"
            assert ("capture truncated" in got) == cut


def test_time_fraction_is_what_repr_writes():
    rng = random.Random(10)
    for _ in range(20_000):
        sec, usec = rng.randrange(TIME_MIN, TIME_MAX), rng.choice((0, rng.randrange(10**6), rng.randrange(10) * 10**5))
        text = b"%d%b" % (sec, time_fraction(usec))
        assert text.decode() == repr(sec + usec * 1e-6), (sec, usec, text)


@pytest.mark.parametrize("linktype", [1, 113])
@pytest.mark.parametrize(("workers", "chunk", "slot"), [(1, 700, 0), (2, 300, 0), (2, 4096, 0), (3, 1 << 20, 0),
                                                      (2, 2000, 3000)])
def test_worker_processes_write_what_one_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        linktype: int, workers: int, chunk: int, slot: int):
    """The varied capture three times over (so later copies are replays, reordered and stale packets for
    the windows), then 300 pings of two new SAs in turn (one with ESN across a wrap), in small chunks spread
    over forked workers: the same bytes and counts as one process, and the workers take packets inline.
    With ``slot``, a worker's shared memory holds that many bytes, so some chunks' results do not fit and
    are scanned again by the calling process."""
    if slot:
        monkeypatch.setattr(workers_module, "SLOT", slot)
    packets, esp_tables, ike_table = _frames(tmp_path)
    key = bytes(range(3, 23))
    plain = EspSA(0x2001, EncrId.AES_GCM_16, key, tunnel=T4)
    esn = EspSA(0x2002, EncrId.CHACHA20_POLY1305, bytes(36), tunnel=T4, esn=True, seq=(1 << 32) - 150)  # wraps
    pings = [sa.protect(ECHO) for _ in range(150) for sa in (plain, esn)]  # two SAs in turn
    pings[200], pings[201] = pings[201], pings[200]  # one reordered pair
    write_esp_sa(tmp_path / "esp_sa_more", [esp_sa_row(sa, src=T4[0], dst=T4[1]) for sa in (plain, esn)])
    esp_tables.append(str(tmp_path / "esp_sa_more"))
    pcap = _pcap(tmp_path / "varied.pcap", linktype, packets * 3 + pings, cut=True)
    for as_json in (False, True):
        ike_rows, esp_rows, _ = read_key_tables([ike_table], esp_tables)
        one_out = io.BytesIO()
        one = write_decrypted(str(pcap), ike_rows, esp_rows, one_out, as_json=as_json, workers=0, chunk=chunk)
        ike_rows, esp_rows, _ = read_key_tables([ike_table], esp_tables)
        many_out = io.BytesIO()
        many = write_decrypted(str(pcap), ike_rows, esp_rows, many_out, as_json=as_json, workers=workers, chunk=chunk)
        got, want = many_out.getvalue().decode(), one_out.getvalue().decode()
        if got != want:
            diff = next((g, w) for g, w in zip(got.splitlines(), want.splitlines(), strict=False) if g != w)
            raise AssertionError(f"json={as_json}: workers wrote {diff[0]!r}\none process {diff[1]!r}")
        assert (many.ike, many.decrypted, many.esp, many.verified, many.errors) == (
            one.ike, one.decrypted, one.esp, one.verified, one.errors)
        # the pings' SAs reach the workers once this process has applied their first packet: the chunks in flight
        # by then (up to 3 per worker: 24 KiB, some 200 records, at 4 KiB chunks) take the general path
        assert many.fast >= 100, f"the workers took only {many.fast} packets inline"
        if not as_json:
            assert got.count("ReplayError") >= 20 and "esn hi=1" in got and "IntegrityError" in got, got

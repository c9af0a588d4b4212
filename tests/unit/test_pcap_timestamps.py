"""Timestamps of nanosecond captures: a pcap whose magic is 0xa1b23c4d counts nanoseconds, not microseconds.

The nanosecond file is written by Wireshark's editcap (``-F nsecpcap``) from a microsecond one, and
tshark's ``frame.time_epoch`` of the same file is the expected value, so neither side is ours.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ipseclab.pcap.reader import IpPacket, PcapFollower, read_ip

pytestmark = pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("tshark") is None,
                                reason="editcap and tshark are not installed (apt-get install tshark)")

# (seconds, microseconds) of three frames: 10.5 s read back as 510.0 when nanoseconds are taken as microseconds
TIMES = [(10, 500_000), (1_700_000_000, 123_456), (1_700_000_001, 999_999)]


def _udp_frame() -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([198, 51, 100, 1]),
                     bytes([198, 51, 100, 2]))
    return bytes(12) + b"\x08\x00" + ip + struct.pack("!HHHH", 500, 500, 8, 0)


def _microsecond_pcap(path: Path) -> None:
    frame = _udp_frame()
    records = b"".join(struct.pack("<IIII", s, us, len(frame), len(frame)) + frame for s, us in TIMES)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records)


def _tshark_times(path: Path) -> list[float]:
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"], capture_output=True,
                         text=True, check=True).stdout
    return [float(line) for line in out.split()]


@pytest.fixture
def nano_pcap(tmp_path: Path) -> Path:
    micro, nano = tmp_path / "micro.pcap", tmp_path / "nano.pcap"
    _microsecond_pcap(micro)
    subprocess.run(["editcap", "-F", "nsecpcap", str(micro), str(nano)], check=True, capture_output=True)
    assert nano.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1", f"expected editcap to write magic 0xa1b23c4d, got " \
                                                         f"{nano.read_bytes()[:4].hex()}"
    return nano


def test_a_nanosecond_pcap_reads_as_nanoseconds(nano_pcap: Path):
    got = [p.time for p in read_ip(nano_pcap) if isinstance(p, IpPacket)]
    want = _tshark_times(nano_pcap)
    assert len(got) == 3 and got == pytest.approx(want, abs=1e-6), f"expected tshark's times {want}, got {got}"
    assert got[0] == pytest.approx(10.5), f"expected 10.5 s for the first frame, got {got[0]}"


def test_the_follower_reads_nanoseconds_too(nano_pcap: Path):
    got = [p.time for p in PcapFollower(nano_pcap).read() if isinstance(p, IpPacket)]
    assert got == pytest.approx(_tshark_times(nano_pcap), abs=1e-6), f"got {got}"


def test_a_nanosecond_pcapng_reads_as_nanoseconds(nano_pcap: Path, tmp_path: Path):
    ng = tmp_path / "nano.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(nano_pcap), str(ng)], check=True, capture_output=True)
    got = [p.time for p in read_ip(ng) if isinstance(p, IpPacket)]
    assert got == pytest.approx(_tshark_times(ng), abs=1e-6), f"got {got}"

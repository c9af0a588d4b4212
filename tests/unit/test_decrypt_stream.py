"""``ipseclab decrypt`` reads a capture once and streams IKE and ESP records out in frame order.

The capture is the benchmark's (an in-memory IKE exchange, then pings in one AES-GCM ESP SA), small.
Reading it once is checked the hard way: the capture is a FIFO, which can be read only once.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from ipseclab.cli import main
from tests.bench.bench_decrypt import DATA, make_capture

PINGS = 40


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_capture(tmp_path_factory.mktemp("stream"), PINGS)


def test_json_is_one_array_of_ike_and_esp_records_in_frame_order(capture, capsys):
    pcap, ike, esp = capture
    assert main(["decrypt", str(pcap), "--keys", str(ike), "--esp-keys", str(esp), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["frame"] for d in doc] == list(range(1, len(doc) + 1)) and len(doc) == 4 + PINGS
    ike_recs, esp_recs = doc[:4], doc[4:]
    assert [d["protocol"] for d in ike_recs] == ["ike"] * 4 and [d["decrypted"] for d in ike_recs[2:]] == [True] * 2
    assert [d["message"]["exchange"] for d in ike_recs] == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2
    assert all(d["protocol"] == "esp" and d["verified"] and d["error"] is None for d in esp_recs)
    assert [d["seq"] for d in esp_recs] == list(range(1, PINGS + 1))
    inner = bytes.fromhex(esp_recs[0]["inner"])
    assert len(inner) == 28 + DATA and inner[9] == 1 and inner[20] == 8  # an ICMP echo request


def test_text_describes_inner_packets_from_bytes_and_with_scapy_when_asked(capture, capsys):
    pcap, ike, esp = capture
    assert main(["decrypt", str(pcap), "--keys", str(ike), "--esp-keys", str(esp)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 + PINGS + 1
    assert lines[4].endswith("ESP spi=0xc0ffee01 seq=1: IPv4: ICMP 10.0.1.1 > 10.0.2.1 echo-request id=1 seq=1, "
                             "1028 bytes"), lines[4]
    assert lines[-1] == f"4 IKE datagrams, 2 decrypted; {PINGS} ESP/AH packets, {PINGS} verified, 0 with errors"
    assert main(["decrypt", str(pcap), "--keys", str(ike), "--esp-keys", str(esp), "--verbose"]) == 0
    assert "IP / ICMP 10.0.1.1 > 10.0.2.1 echo-request 0 / Raw" in capsys.readouterr().out.splitlines()[4]


def test_the_capture_is_read_once(capture, tmp_path: Path, capsys):
    pcap, ike, esp = capture
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(pcap.read_bytes())

    result: list[int] = []
    writer = threading.Thread(target=feed, daemon=True)
    reader = threading.Thread(target=lambda: result.append(main(["decrypt", str(fifo), "--keys", str(ike),
                                                                 "--esp-keys", str(esp)])), daemon=True)
    writer.start()
    reader.start()
    reader.join(30)  # a second read of the FIFO would wait for a writer that never comes
    assert not reader.is_alive(), "decrypt is still waiting: it opened the capture a second time"
    rc = result[0]
    out = capsys.readouterr().out
    assert rc == 0 and out.splitlines()[-1].startswith(f"4 IKE datagrams, 2 decrypted; {PINGS} ESP/AH packets, "
                                                       f"{PINGS} verified"), out[-500:]


def test_incomplete_fragmented_messages_are_bounded(capture):
    """A capture of many IKE messages each missing a fragment: decrypt keeps at most MAX_PENDING of them."""
    from ipseclab.analysis.ike import MAX_PENDING, IkeDecryptor
    from ipseclab.analysis.keyrows import crypto_from_row
    from ipseclab.packets.enums import ExchangeType
    from ipseclab.packets.fragment import fragment
    from ipseclab.packets.message import EncryptedPayload, Message
    from ipseclab.packets.payloads import VendorPayload
    from ipseclab.pcap.keyfiles import read_ikev2_decryption_table
    from ipseclab.pcap.reader import UdpDatagram

    (row,) = read_ikev2_decryption_table(capture[1])
    crypto = crypto_from_row(row)
    dec = IkeDecryptor([row])
    decrypted = 0
    for mid in range(2, MAX_PENDING + 40):
        msg = Message(row.spi_i, row.spi_r, ExchangeType.INFORMATIONAL, mid,
                      [EncryptedPayload(payloads=[VendorPayload(bytes(600))])], True, False)
        first = fragment(msg, crypto, 300)[0]  # the rest never comes
        rec = dec.datagram(UdpDatagram(mid, 0.0, "198.51.100.10", "198.51.100.20", 500, 500, first))
        decrypted += rec is not None and rec.decrypted and rec.reassembled is None
        assert len(dec.reassembler.pending) <= MAX_PENDING, len(dec.reassembler.pending)
    assert decrypted == MAX_PENDING + 38 and len(dec.reassembler.pending) == MAX_PENDING

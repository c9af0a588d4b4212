"""The kernel peer harness: hand-set SAs in a UML guest, captured and checked by Wireshark.

This is the oracle ipseclab's own ESP/AH data plane is checked against (tests/interop/test_esp_kernel.py);
here the harness itself is checked, with Wireshark as the judge of what the kernel sent.
"""

from __future__ import annotations

import os

import pytest

from ipseclab.lab import cleanup
from ipseclab.lab.esp_keys import esp_sa_row
from ipseclab.lab.kernel_peer import KernelPeer, KernelSa
from ipseclab.pcap.trace import ipsec_packets

pytestmark = [pytest.mark.interop, pytest.mark.tshark]


@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_kernel_esp_made_with_hand_set_keys_decrypts_in_wireshark(tmp_path, mode):
    keys = {name: os.urandom(n) for name, n in (("eo", 16), ("ao", 32), ("ei", 16), ("ai", 32))}
    with KernelPeer(tmp_path) as kp:
        left, right = kp.left_address, kp.right_address
        out = KernelSa(left, right, 0x1001, mode=mode, enc=("cbc(aes)", keys["eo"]),
                       auth=("hmac(sha256)", keys["ao"], 128))
        inbound = KernelSa(right, left, 0x2002, mode=mode, enc=("cbc(aes)", keys["ei"]),
                           auth=("hmac(sha256)", keys["ai"], 128))
        kp.install(out, inbound)
        kp.ping_out(3)
        states = kp.states()
        run_id = kp.run_id
    by_spi = {s.spi: s for s in states}
    assert by_spi[0x1001].counters["packets"] == 3 and by_spi[0x1001].enc == ("cbc(aes)", keys["eo"])
    rows = [r for r in (esp_sa_row(s) for s in states) if r]
    pkts = ipsec_packets(tmp_path / "left-right.pcap", rows)
    assert [p.seq for p in pkts if p.spi == 0x1001] == [1, 2, 3]
    for p in pkts:
        assert p.icv_good and p.tunnel == (mode == "tunnel") and "icmp" in p.inner, p
    assert not cleanup.sweep(run_id, dry_run=True)

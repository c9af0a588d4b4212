"""The ipseclab endpoint against hostile input on a real link (root): clear traffic that policy says must be
protected, a packet that decrypts but lies outside its SA's selectors, a replay and a forged ICV are each
dropped and counted under their own names in ``status`` and ``counters.json``.

The peer is a real strongSwan; the hostile packets come from the link (Scapy frames sent on the right
side's veth end, ``lab/inject.py``), built with the endpoint's own inbound SA keys from its ``esp_sa`` file
as an attacker holding them would; the kernel's reverse-path filter is the oracle for the clear drop.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pyroute2 import NetNS
from scapy.layers.inet import ICMP, IP

from ipseclab.esp import EspSA
from ipseclab.interop import case_configs
from ipseclab.lab.lab import Lab, LabSpec
from ipseclab.lab.topology import make_topology
from ipseclab.pcap.esp_keyfiles import read_esp_sa
from ipseclab.testcases import by_name

pytestmark = pytest.mark.interop


def _mac(ns: str, ifname: str) -> str:
    with NetNS(ns) as nsr:
        link = nsr.get_links(nsr.link_lookup(ifname=ifname)[0])[0]
        return str(link.get_attr("IFLA_ADDRESS"))


def test_the_endpoint_drops_and_counts_clear_out_of_policy_replayed_and_forged_packets(tmp_path):
    case = by_name("esp-tunnel")
    topo = make_topology("direct", "probe")
    left_cfg, right_cfg = case_configs(case, topo)
    with Lab(LabSpec(left_cfg, right_cfg, "direct", "ipseclab", "strongswan"), run_dir=tmp_path) as lab:
        lab.initiate("left")
        lab.ping("left", count=2)
        host = lab.peers["left"].host
        before = host.command({"cmd": "status"})["dataplane"]
        lh, rh = lab.topology.hosts["left"], lab.topology.hosts["right"]
        row = next(r for r in read_esp_sa(host.dir / "esp_sa") if r.dst == lh.address)  # the endpoint's inbound SA
        sa = EspSA(row.spi or 0, row.encr_id or 0, row.encr_key, integ=row.integ_id or None, integ_key=row.auth_key,
                   tunnel=(rh.address, lh.address), seq=1000)
        echo = bytes(IP(src=rh.protected_addr, dst=lh.protected_addr, id=7) / ICMP(id=9, seq=1))
        genuine = sa.protect(echo)
        fresh = sa.protect(echo)  # a new sequence number: replay is checked before the ICV (RFC 4303 3.4.3)
        forged = fresh[:-1] + bytes([fresh[-1] ^ 1])
        outside = sa.protect(bytes(IP(src="198.51.100.77", dst=lh.protected_addr, id=8) / ICMP(id=9, seq=2)))
        clear = echo  # from a protected source, in the clear: policy says it must come through the SA
        (lns, lif), (rns, rif) = lab.topology.attach["left"], lab.topology.attach["right"]
        inject = subprocess.Popen(["ip", "netns", "exec", rns, sys.executable, "-m", "ipseclab.lab.inject", rif,
                                   _mac(rns, rif), _mac(lns, lif)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        out, _ = inject.communicate(json.dumps([p.hex() for p in (genuine, genuine, forged, outside, clear)]) + "\n",
                                    timeout=30)
        assert out.strip() == "ok 5", f"injection failed: {out!r}"
        after = host.command({"cmd": "status"})["dataplane"]
        delta = {k: after[k] - before[k] for k in after}
        assert delta["packets_in"] >= 1, f"the genuine packet was not taken: {delta}"
        assert (delta["replay"], delta["integrity"], delta["policy_mismatch"]) == (1, 1, 1), delta
        assert delta["clear_dropped"] >= 1, f"the clear packet from {rh.protected_addr} was not dropped: {delta}"
    saved = json.loads((tmp_path / "left" / "counters.json").read_text())["dataplane"]
    assert saved["policy_mismatch"] >= 1 and saved["replay"] >= 1 and saved["clear_dropped"] >= 1

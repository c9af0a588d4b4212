"""The lab's parsers and tables, without root: charon logs, ip xfrm state, esp_sa rows, topology, routes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import LabError
from ipseclab.lab.esp_keys import esp_sa_row
from ipseclab.lab.impls.strongswan import parse_charon_log
from ipseclab.lab.kernel_peer import KernelSa, parse_drop_counters
from ipseclab.lab.keys import match_ike_keys, parse_xfrm_state
from ipseclab.lab.proc import require_tool
from ipseclab.lab.topology import DOC_RANGES, make_topology
from ipseclab.pcap.keyfiles import read_ikev2_decryption_table
from ipseclab.pcap.reader import UdpDatagram, read_udp
from tests.vectors import load

ROOT = Path(__file__).resolve().parents[2]

# `ip -s xfrm state` of a lab run (UML guest, iproute2 6.1), with the ESN flag, the replay/failed counters
# and an AH SA edited in so that every branch of the parser is exercised
XFRM = (Path(__file__).resolve().parents[1] / "vectors" / "xfrm_state_sample.txt").read_text()


def test_parse_xfrm_state():
    cbc, gcm, ah = parse_xfrm_state(XFRM)
    assert (cbc.src, cbc.dst, cbc.proto, cbc.spi, cbc.mode) == ("198.51.100.10", "198.51.100.20", "esp", 0xCAEA56F0,
                                                                 "tunnel")
    assert cbc.enc == ("cbc(aes)", bytes.fromhex("9ad5a89b0c09c889491d5114712cb035"))
    assert cbc.auth is not None and cbc.auth[0] == "hmac(sha256)" and cbc.auth[2] == 128
    assert cbc.esn and cbc.replay_window == 128
    assert cbc.counters["replay"] == 1 and cbc.counters["failed"] == 2 and cbc.counters["packets"] == 3
    assert gcm.aead is not None and gcm.aead[2] == 128 and len(gcm.aead[1]) == 36
    assert gcm.encap == ("espinudp", 4500, 4500) and not gcm.esn
    assert ah.proto == "ah" and ah.mode == "transport"


def test_esp_sa_rows_use_wireshark_names_and_skip_what_it_cannot_decrypt():
    cbc, gcm, ah = parse_xfrm_state(XFRM)
    row = esp_sa_row(cbc)
    assert row is not None
    assert row.to_row() == ('"IPv4","*","*","0xcaea56f0","AES-CBC [RFC3602]","0x9ad5a89b0c09c889491d5114712cb035",'
                               '"HMAC-SHA-256-128 [RFC4868]",'
                               '"0xc81f3ec8f395061706b9063c02c7eba53ddc560e62675c275ff63f464aadc74a"')
    gcm_row = esp_sa_row(gcm)
    assert gcm_row is not None and gcm_row.encr_name == "AES-GCM with 16 octet ICV [RFC4106]"
    assert esp_sa_row(ah) is None


@pytest.mark.parametrize("v", load("strongswan_kdf")["vectors"], ids=lambda v: v["name"])
def test_charon_log_keys_and_spi_matching_reproduce_the_committed_tables(v):
    """The lab's own log parser + SPI matching give the same rows as the fixture generator did."""
    base = ROOT / v["capture"].removesuffix(".pcap")
    keysets = parse_charon_log(Path(f"{base}.keys.log").read_text())
    assert keysets, "no key dumps found"
    ks = keysets[0]
    assert ks.secrets["sk_ei"].hex() == v["sk_ei"] and ks.secrets["sk_er"].hex() == v["sk_er"]
    encr, bits, integ = ks.suite()
    assert (encr, bits, integ or None) == (int(v["encr_id"]), int(v["encr_key_bits"]),
                                           int(v["integ_id"]) if v["integ_id"] else None)
    messages = []
    for d in read_udp(ROOT / v["capture"]):
        assert isinstance(d, UdpDatagram)
        messages.append(d.payload[4:] if d.sport == 4500 else d.payload)
    rows = match_ike_keys(keysets, messages)
    assert len(rows) == 1
    assert (rows[0].spi_i.hex(), rows[0].spi_r.hex()) == (v["spi_i"], v["spi_r"])
    if int(v["encr_id"]) != EncrId.CHACHA20_POLY1305:
        assert rows == read_ikev2_decryption_table(f"{base}.ikev2_decryption_table")
    else:
        assert rows[0].integ_id == IntegId.NONE


@pytest.mark.parametrize("kind", ["direct", "nat"])
def test_topology_uses_only_documentation_ranges_without_overlap(kind):
    topo = make_topology(kind, "abc123")
    nets = []
    for h in topo.hosts.values():
        for cidr in (h.transit4, h.protected, f"{h.protected_addr}/32"):
            net = ipaddress.ip_network(cidr, strict=False)
            assert any(net.subnet_of(r) for r in DOC_RANGES if r.version == 4), net
        nets.append(ipaddress.ip_network(h.protected))
    assert not nets[0].overlaps(nets[1])
    assert all(ns.startswith("ipl-abc123-") for ns in topo.namespaces)
    assert all(len(link.a_if) <= 15 and len(link.b_if) <= 15 for link in topo.links)


def test_unknown_topology_and_missing_tool_give_clear_errors():
    with pytest.raises(LabError, match="unknown topology 'star'"):
        make_topology("star", "x")
    with pytest.raises(LabError, match="apt-get install"):
        require_tool("no-such-tool-ipseclab")


def test_parse_drop_counters_keeps_nonzero_xfrm_and_error_counters():
    xfrm = "XfrmInError             \t0\nXfrmInStateProtoError   \t3\nXfrmInNoStates          \t1\n"
    snmp6 = "Ip6InReceives                   \t5\nIp6InDiscards                   \t2\nUdp6InCsumErrors\t1\n"
    snmp = ("Ip: Forwarding DefaultTTL InReceives InDiscards\nIp: 1 64 9 7\n"
            "Udp: InDatagrams NoPorts InErrors InCsumErrors\nUdp: 3 0 0 0\n")
    assert parse_drop_counters(xfrm, snmp6, snmp) == {
        "XfrmInStateProtoError": 3, "XfrmInNoStates": 1, "Ip6InDiscards": 2, "Udp6InCsumErrors": 1, "IpInDiscards": 7}


def test_kernel_sa_command_over_ipv6_with_udp_encapsulation():
    sa = KernelSa("2001:db8:1::10", "2001:db8:1::20", 0x1234, mode="transport", aead=("rfc4106(gcm(aes))",
                  bytes(20), 128), encap=(4500, 4500), esn=True)
    assert sa.command() == (
        "ip xfrm state add src 2001:db8:1::10 dst 2001:db8:1::20 proto esp spi 0x00001234 mode transport "
        f"flag esn replay-window 32 aead 'rfc4106(gcm(aes))' 0x{bytes(20).hex()} 128 encap espinudp 4500 4500 ::")


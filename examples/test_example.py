"""Interop tests written against ipseclab's pytest plugin, the way a project of your own would.

Run (as root, after the README's set-up; the plugin comes with ``pip install ipseclab``, no conftest)::

    pytest --ipseclab-pair strongswan:libreswan -m interop --junitxml=junit.xml

Each ``ipseclab_pair`` test runs once per ``--ipseclab-pair``; a failed test's run directory (pcaps, key
files, logs) is printed and its paths are in the JUnit XML (``--ipseclab-keep`` attaches and keeps them for
passing tests too); the results matrix is printed at the end.
"""

from __future__ import annotations

import os

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ipsec import ESP

from ipseclab.esp import EspSA
from ipseclab.lab.kernel_peer import KernelSa
from ipseclab.lab.live import Mark


def test_two_engines_in_memory(ike_pair):
    """No root, no peers: ipseclab's own initiator and responder, wired in memory."""
    ike_pair.handshake()
    assert ike_pair.initiator.conn.state == "established"


@pytest.mark.interop
@pytest.mark.tshark
def test_tunnel_negotiates_and_decrypts_in_wireshark(ipseclab_lab, ipseclab_trace, ipseclab_pair):
    """The esp-tunnel case for each pair: negotiate, ping, and check Wireshark's decrypted view of the run."""
    from ipseclab.testcases import by_name

    case = by_name("esp-tunnel")
    lab = ipseclab_lab(case, *ipseclab_pair)
    lab.initiate("left")
    lab.ping("left", count=case.pings)
    case.check(ipseclab_trace(lab))


@pytest.mark.interop
def test_responder_refuses_a_replayed_packet(ipseclab_lab, ipseclab_pair):
    """Send an ESP packet the initiator sent again: the responder's kernel counts a replay and drops it."""
    lab = ipseclab_lab("esp-tunnel", *ipseclab_pair)
    if lab.spec.right == "ipseclab":
        pytest.skip("UNSUPPORTED: the replay counter read here is the kernel's; the ipseclab endpoint has none")
    lab.initiate("left")
    lab.ping("left", count=2)
    right = lab.address("right")
    first = lab.sniff(f"esp and dst host {right}", since=Mark(), timeout=0)[0][IP]
    spi = first[ESP].spi
    before = lab.counters("right").replay(spi)
    mark = lab.send(first, side="left", wait=1)
    assert lab.counters("right").replay(spi) == before + 1
    assert not lab.sniff(f"esp and src host {right}", since=mark, timeout=0), "the replayed ping was answered"


@pytest.mark.interop
def test_kernel_peer_decrypts_to_what_ipseclab_decrypts(kernel_peer):
    """The Linux kernel (under UML) with SAs whose keys we chose: its ESP decrypts in ipseclab's EspSA."""
    left, right = kernel_peer.left_address, kernel_peer.right_address
    key, ikey = os.urandom(16), os.urandom(32)
    out = KernelSa(left, right, 0x1001, enc=("cbc(aes)", key), auth=("hmac(sha256)", ikey, 128))
    back = KernelSa(right, left, 0x2002, enc=("cbc(aes)", os.urandom(16)), auth=("hmac(sha256)", ikey, 128))
    kernel_peer.install(out, back)
    kernel_peer.ping_out(2, wait=0.3)
    ours = EspSA.from_xfrm(0x1001, enc=out.enc, auth=out.auth, tunnel=(left, right))
    sent = [p for p in kernel_peer.captured() if getattr(p, "proto", None) == 50]
    assert len(sent) == 2
    inner = ours.decrypt(IP(sent[0].packet))
    assert inner[ICMP].type == 8 and inner[IP].dst == right

"""The REPL lab against live peers: ipseclab's endpoint (left) and strongSwan under UML (right).

The oracles are the peers themselves: strongSwan answers an INFORMATIONAL request we encrypted with the
IKE keys ``ike_sas()`` gave (so the keys are the live SA's, both ways), and ESP the right kernel sent
decrypts with the ``EspSA`` ``sas("right")`` built from its ``ip -s xfrm state``.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.packet import Raw

from ipseclab.errors import LabError
from ipseclab.esp import EspSA
from ipseclab.lab.live import Mark
from ipseclab.packets.enums import ExchangeType
from ipseclab.packets.message import EncryptedPayload, Message, decode, encode

pytestmark = pytest.mark.interop


def test_live_sas_ike_keys_counters_and_one_line_errors(ipseclab_lab):
    lab = ipseclab_lab("esp-tunnel", "ipseclab", "strongswan")
    lab.initiate("left")
    assert "3 received" in lab.ping("left", count=3)
    left, right = lab.address("left"), lab.address("right")

    # the right kernel's outbound SA decrypts what the right kernel sent
    out = next(sa for sa in lab.sas("right") if isinstance(sa, EspSA) and sa.tunnel == (right, left))
    from_right = lab.sniff(f"esp and src host {right}", since=Mark(), timeout=0)
    assert len(from_right) == 3
    inner = out.decrypt(from_right[0][IP])
    assert inner[ICMP].type == 0 and inner[IP].src == "203.0.113.65"  # an echo reply from right's subnet
    assert lab.counters("right").of(out.spi)["oseq"] == 3

    # an INFORMATIONAL request made with the live IKE SA's keys: strongSwan answers it (message ID 2 is the
    # initiator's next one after IKE_SA_INIT and IKE_AUTH)
    (ike,) = lab.ike_sas()
    request = Message(ike.spi_i, ike.spi_r, ExchangeType.INFORMATIONAL, 2, [EncryptedPayload(payloads=[])])
    mark = lab.send(IP(src=left, dst=right) / UDP(sport=500, dport=500) / Raw(encode(request, ike.crypto)))
    answers = lab.sniff(f"udp and src host {right}", count=1, timeout=10, since=mark)
    assert answers, "strongSwan did not answer the INFORMATIONAL request"
    udp = bytes(answers[0][UDP].payload)
    answer = decode(udp[4:] if answers[0][UDP].sport == 4500 else udp, ike.crypto)
    assert answer.summary() == "INFORMATIONAL response #2 [SK{}]"

    # the ipseclab endpoint's counters are its own status; it has no kernel SAs
    assert lab.counters("left").endpoint["state"] == "established"
    with pytest.raises(LabError, match="the left peer is the ipseclab endpoint: it has no kernel SAs"):
        lab.sas("left")
    with pytest.raises(LabError, match="bad capture filter 'esp and'"):
        lab.sniff("esp and", timeout=0)
    with pytest.raises(LabError, match="no link 'left-nat' in this lab; its links: left-right"):
        lab.sniff("esp", link="left-nat")
    lab.down()
    with pytest.raises(LabError, match="the lab is down"):
        lab.send(IP(src=left, dst=right) / ICMP())

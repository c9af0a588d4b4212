"""Scapy and the byte codec produce and accept the same bytes."""

from __future__ import annotations

from hypothesis import assume, given, settings

from ipseclab.packets import scapy_glue
from ipseclab.packets.builders import ike_sa_init_request
from ipseclab.packets.message import decode, encode
from tests.unit.strategies import message


def test_bind_is_explicit_and_idempotent():
    ikev2 = scapy_glue.bind()
    assert ikev2 is scapy_glue.bind()
    assert hasattr(ikev2, "IKEv2")


def test_ike_sa_init_from_our_codec_reads_identically_in_scapy():
    msg, ke = ike_sa_init_request("aes256gcm16-prfsha256-ecp256", "aes256-sha256-modp2048",
                                  nat=("198.51.100.1", 500, "198.51.100.2", 500))
    data = encode(msg)
    pkt = scapy_glue.to_scapy(data)
    assert bytes(pkt) == data
    ikev2 = scapy_glue.bind()
    assert pkt[ikev2.IKEv2_KE].group == 19
    assert pkt[ikev2.IKEv2_KE].ke == ke.public_bytes
    assert scapy_glue.from_scapy(pkt) == msg


def test_message_built_with_scapy_decodes_and_reencodes_identically():
    ikev2 = scapy_glue.bind()
    from scapy.layers.inet import IP, UDP

    pkt = (
        IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=500, dport=500)
        / ikev2.IKEv2(init_SPI=b"A" * 8, resp_SPI=b"\x00" * 8, exch_type=34, flags="Initiator")
        / ikev2.IKEv2_SA(prop=ikev2.IKEv2_Proposal(trans_nb=4, trans=ikev2.IKEv2_Transform(transform_type="Encryption",
                                                                              transform_id=12, length=12,
                                                                              key_length=0x800E0100)
                                                   / ikev2.IKEv2_Transform(transform_type="PRF", transform_id=5)
                                                   / ikev2.IKEv2_Transform(transform_type="Integrity",
                                                                           transform_id=12)
                                                   / ikev2.IKEv2_Transform(transform_type="GroupDesc",
                                                                           transform_id=14)))
        / ikev2.IKEv2_KE(group=14, ke=b"\x01" * 256)
        / ikev2.IKEv2_Nonce(nonce=b"\x02" * 32)
        / ikev2.IKEv2_Notify(type=16430)
    )
    wire = bytes(pkt[ikev2.IKEv2])
    msg = decode(wire)
    assert encode(msg) == wire
    assert msg.summary() == "IKE_SA_INIT request #0 [SA KE No N(IKEV2_FRAGMENTATION_SUPPORTED)]"
    assert msg.payloads[0].proposals[0].transforms[0].key_length == 256


def _scapy_can_express(m) -> bool:
    """Scapy's IKEv2 layer fixes a few formats: IPv4/IPv6 IDs are addresses, REDIRECT notifies have
    structure, and a transform carries at most a Key Length attribute."""
    from ipseclab.packets.payloads import IdPayload, NotifyPayload, SaPayload

    for p in m.payloads:
        if isinstance(p, IdPayload) and (p.id_type, len(p.data)) not in ((1, 4), (5, 16)) and p.id_type in (1, 5):
            return False
        if isinstance(p, NotifyPayload) and p.notify_type in (16407, 16408):
            return False
        if isinstance(p, SaPayload):
            for pr in p.proposals:
                for t in pr.transforms:
                    if t.attributes and (len(t.attributes) > 1 or t.attributes[0][0] != 14
                                         or not isinstance(t.attributes[0][1], int)):
                        return False
    return True


@given(message(encrypted=False))
@settings(max_examples=150, deadline=None)
def test_scapy_accepts_generated_clear_messages_byte_for_byte(m):
    assume(_scapy_can_express(m))
    data = encode(m)
    assert bytes(scapy_glue.to_scapy(data)) == data


def test_decrypted_scapy_view_shows_inner_payloads():
    import os

    from ipseclab.crypto import IkeSuite, derive_ike_sa
    from ipseclab.packets.message import EncryptedPayload, IkeSaCrypto, Message
    from ipseclab.packets.payloads import IdiPayload, NotifyPayload

    suite = IkeSuite.from_ids(20, 5, key_bits=256)
    _, keys = derive_ike_sa(suite, os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(8), os.urandom(8))
    crypto = IkeSaCrypto.from_keys(suite, keys)
    m = Message(b"i" * 8, b"r" * 8, 35, 1,
                [EncryptedPayload(payloads=[IdiPayload(2, b"left"), NotifyPayload(16384)])])
    view = scapy_glue.decrypted_scapy(encode(m, crypto), crypto)
    ikev2 = scapy_glue.bind()
    assert view[ikev2.IKEv2_IDi].ID == b"left"
    assert view[ikev2.IKEv2_Notify].type == 16384

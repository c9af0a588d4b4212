"""The sans-I/O IKEv2 engine: an initiator and a responder wired together in memory.

Each test drives both ``IkeConnection`` objects with a fake clock, loses or forges datagrams where
it needs to, and checks the events, states and counters.  Two independent checks sit on top: the
negotiated Child SA keys must make ipseclab ESP SAs that talk to each other (the keys are the same
KEYMAT slices on both sides), and Wireshark must decrypt the engine's own IKE messages with the key
table built from the IkeSaEstablished event (``test_tshark_decrypts_the_engines_messages``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.crypto import EncrId, IntegId, KeId
from ipseclab.errors import ConfigError, LocalProtocolError
from ipseclab.esp import EspSA
from ipseclab.ike import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    DatagramDropped,
    IkeConnection,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeState,
)
from ipseclab.ike.events import NatDetected
from ipseclab.ike.state import Role, Trigger, transition
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import decode

from .ike_wire import Wire, configs, handshake, sent, wireshark_view


def esp_pair(child: ChildSaEstablished) -> tuple[EspSA, EspSA]:
    """(outbound, inbound) ipseclab ESP SAs from the engine's event, as the endpoint will make them."""
    kw = dict(mode=child.mode, esn=child.esn, key_bits=child.encr_key_bits)
    if child.mode == "tunnel":
        kw["tunnel"] = ("198.51.100.10", "198.51.100.20")
    out = EspSA(child.spi_out, child.encr_id, child.encr_key_out, integ=child.integ_id,
                integ_key=child.integ_key_out, **kw)  # type: ignore[arg-type]
    inn = EspSA(child.spi_in, child.encr_id, child.encr_key_in, integ=child.integ_id,
                integ_key=child.integ_key_in, **kw)  # type: ignore[arg-type]
    return out, inn


PING = bytes.fromhex("4500001c00010000400100000a0100010a020001") + bytes.fromhex("0800f7ff00000000")


@pytest.mark.parametrize(("ike", "esp", "encr", "integ", "ke"), [
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16", EncrId.AES_GCM_16, None, KeId.ECP256),
    ("aes128-sha256-modp2048", "aes128-sha256-esn", EncrId.AES_CBC, IntegId.HMAC_SHA2_256_128, KeId.MODP2048),
    ("chacha20poly1305-prfsha256-curve25519", "chacha20poly1305", EncrId.CHACHA20_POLY1305, None, KeId.CURVE25519),
    ("aes256-sha384-ecp384", "aes256-sha512", EncrId.AES_CBC, IntegId.HMAC_SHA2_384_192, KeId.ECP384),
    ("aes128-aesxcbc-modp3072", "aes128gmac", EncrId.AES_CBC, IntegId.AES_XCBC_96, KeId.MODP3072),
])
def test_psk_handshake_brings_up_the_ike_sa_and_a_working_child_sa(ike, esp, encr, integ, ke):
    w = handshake(*configs(ike_proposals=(ike,), esp_proposals=(esp,)))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED, (w.events, w.i.state, w.r.state)
    (ei,), (er,) = w.of("i", IkeSaEstablished), w.of("r", IkeSaEstablished)
    assert ei.keys == er.keys and ei.spi_i == er.spi_i == w.i.spi_i and ei.spi_r == er.spi_r == w.r.spi_r
    assert (ei.encr_id, ei.integ_id) == (encr, integ) and w.i.neg.suite.ke.id == ke  # type: ignore[union-attr]
    assert ei.peer_id == "sun.strongswan.org" and er.peer_id == "moon.strongswan.org"
    (ci,), (cr,) = w.of("i", ChildSaEstablished), w.of("r", ChildSaEstablished)
    assert (ci.spi_in, ci.spi_out) == (cr.spi_out, cr.spi_in) and ci.spi_in != ci.spi_out
    assert (ci.encr_key_out, ci.integ_key_out) == (cr.encr_key_in, cr.integ_key_in)
    assert (ci.encr_key_in, ci.integ_key_in) == (cr.encr_key_out, cr.integ_key_out)
    assert ci.encr_key_in != ci.encr_key_out
    assert ci.esn == cr.esn == esp.endswith("-esn")
    # the keys work: what one side's outbound SA makes, the other side's inbound SA takes
    i_out, i_in = esp_pair(ci)
    r_out, r_in = esp_pair(cr)
    assert r_in.unprotect(i_out.protect(PING)) == PING
    assert i_in.unprotect(r_out.protect(PING)) == PING
    assert not w.of("i", DatagramDropped) and not w.of("r", DatagramDropped)
    assert [d for d, _ in w.log] == ["i>r", "r>i", "i>r", "r>i"]


def test_an_ah_child_sa_is_negotiated_when_configured():
    w = handshake(*configs(protocol="ah", ah_proposals=("sha256", "sha512-esn"), r_ah_proposals=("sha512-esn",)))
    (ci,), (cr,) = w.of("i", ChildSaEstablished), w.of("r", ChildSaEstablished)
    assert ci.protocol == cr.protocol == 2 and ci.encr_id is None and ci.integ_id == IntegId.HMAC_SHA2_512_256
    assert ci.esn and len(ci.integ_key_out) == 64 and ci.integ_key_out == cr.integ_key_in and not ci.encr_key_out
    sa_payload = decode(w.log[2][1], w.i.neg.crypto).find(type(w.i.neg.child_offer))[0]
    assert [p.protocol for p in sa_payload.proposals] == [2, 2]


def test_the_messages_are_what_rfc_7296_says():
    w = handshake(*configs(mode="transport", local_endpoint=("198.51.100.10", 500),
                           remote_endpoint=("198.51.100.20", 500), r_local_endpoint=("198.51.100.20", 500)))
    init_req, init_resp, auth_req, auth_resp = (d for _, d in w.log)
    assert decode(init_req).summary() == (
        "IKE_SA_INIT request #0 [SA KE No N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP) "
        "N(IKEV2_FRAGMENTATION_SUPPORTED)]")
    assert decode(init_resp).summary().startswith("IKE_SA_INIT response #0 [SA KE No N(NAT_DETECTION_SOURCE_IP)")
    assert decode(auth_req, w.i.neg.crypto).summary() == (
        "IKE_AUTH request #1 [SK{IDi IDr AUTH N(USE_TRANSPORT_MODE) SA TSi TSr}]")
    assert decode(auth_resp, w.i.neg.crypto).summary() == (
        "IKE_AUTH response #1 [SK{IDr AUTH N(USE_TRANSPORT_MODE) SA TSi TSr}]")
    assert w.of("i", ChildSaEstablished)[0].mode == "transport"


@pytest.mark.parametrize("nat", [True, False])
def test_nat_detection_moves_ike_and_esp_to_udp_4500(nat):
    """RFC 7296 2.23: the initiator's address is rewritten on the way (a masquerading router) or not."""
    seen_by_responder = ("203.0.113.129", 500) if nat else ("198.51.100.10", 500)
    w = handshake(*configs(local_endpoint=("198.51.100.10", 500), remote_endpoint=("203.0.113.130", 500),
                           r_local_endpoint=("203.0.113.130", 500)),
                  sources={"i>r": seen_by_responder, "r>i": ("203.0.113.130", 500)})
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    if nat:
        assert w.of("i", NatDetected) == [NatDetected(local=True, remote=False)]
        assert w.of("r", NatDetected) == [NatDetected(local=False, remote=True)]
    else:
        assert not w.of("i", NatDetected) and not w.of("r", NatDetected)
    assert w.i.use_natt == w.r.use_natt == nat
    (ci,), (cr,) = w.of("i", ChildSaEstablished), w.of("r", ChildSaEstablished)
    assert ci.udp_encap == cr.udp_encap == nat
    # the responder's NAT_DETECTION_DESTINATION_IP names the address it saw, as a NAT-aware peer expects
    from ipseclab.crypto.natd import nat_detection_hash

    resp = decode(w.log[1][1])
    dst = [p.data for p in resp.payloads if getattr(p, "notify_type", 0) == NotifyType.NAT_DETECTION_DESTINATION_IP]
    assert dst == [nat_detection_hash(w.i.spi_i, w.r.spi_r, *seen_by_responder)]


def test_wrong_psk_fails_both_sides_with_authentication_failed():
    ci, cr = configs()
    w = handshake(ci, dataclasses.replace(cr, psk=b"not the same secret"))
    assert w.i.state == w.r.state == IkeState.FAILED
    (fr,) = w.of("r", IkeSaFailed)
    assert fr.notify == NotifyType.AUTHENTICATION_FAILED and "pre-shared key" in fr.reason and not fr.remote
    (fi,) = w.of("i", IkeSaFailed)
    assert fi.notify == NotifyType.AUTHENTICATION_FAILED and fi.remote
    assert not w.of("i", IkeSaEstablished) and not w.of("r", IkeSaEstablished)


def test_unexpected_peer_identity_is_an_authentication_failure():
    ci, cr = configs()
    w = handshake(ci, dataclasses.replace(cr, remote_id="carol@strongswan.org"))
    (fr,) = w.of("r", IkeSaFailed)
    assert fr.notify == NotifyType.AUTHENTICATION_FAILED and "'moon.strongswan.org'" in fr.reason


def test_no_common_ike_proposal_ends_with_no_proposal_chosen():
    """The responder answers NO_PROPOSAL_CHOSEN and keeps no state; the initiator, since the notify is not
    authenticated, keeps trying until its retransmissions give up (RFC 7296 2.21.1), then reports it."""
    w = handshake(*configs(ike_proposals=("aes256gcm16-prfsha256-ecp256",),
                           r_ike_proposals=("aes128-sha1-modp2048",), retransmit_tries=3))
    assert w.i.state == IkeState.INIT_SENT and not w.of("i", IkeSaFailed)
    w.run_timers(until=60)
    (fi,) = w.of("i", IkeSaFailed)
    assert fi.notify == NotifyType.NO_PROPOSAL_CHOSEN and fi.remote and "NO_PROPOSAL_CHOSEN" in fi.reason
    assert w.r.state == IkeState.INITIAL and not w.of("r", IkeSaFailed)
    refusals = w.of("r", DatagramDropped)
    assert len(refusals) == 3 == w.r.counters.dropped_unacceptable  # each transmission answered, none kept
    assert "aes128-sha1-modp2048" in refusals[0].reason and "ENCR_AES_GCM_16_256" in refusals[0].reason


def test_invalid_ke_payload_makes_the_initiator_retry_with_the_responders_group():
    w = handshake(*configs(ike_proposals=("aes256gcm16-prfsha256-ecp256", "aes256gcm16-prfsha256-modp2048"),
                           r_ike_proposals=("aes256gcm16-prfsha256-modp2048",)))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    first, retry = decode(w.log[0][1]), decode(w.log[2][1])
    notify = decode(w.log[1][1]).payloads[0]
    assert notify.notify_type == NotifyType.INVALID_KE_PAYLOAD and notify.data == (14).to_bytes(2, "big")
    assert first.find(type(retry.payloads[1]))[0].group == KeId.ECP256  # the KE payload
    assert retry.payloads[1].group == KeId.MODP2048 and retry.spi_i == first.spi_i and retry.message_id == 0
    assert w.i.neg.suite.ke.id == KeId.MODP2048  # type: ignore[union-attr]


def test_child_sa_proposal_mismatch_keeps_the_ike_sa():
    w = handshake(*configs(esp_proposals=("aes128gcm16",), r_esp_proposals=("aes256-sha256",)))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    (fi,) = w.of("i", ChildSaFailed)
    assert fi.notify == NotifyType.NO_PROPOSAL_CHOSEN and fi.remote
    assert not w.of("i", ChildSaEstablished) and not w.of("r", ChildSaEstablished)


def test_traffic_selectors_are_narrowed_or_refused():
    w = handshake(*configs(local_ts=("10.0.0.0/8",), remote_ts=("0.0.0.0/0",),
                           r_local_ts=("192.168.0.0/24",), r_remote_ts=("10.1.0.0/16",)))
    (ci,), (cr,) = w.of("i", ChildSaEstablished), w.of("r", ChildSaEstablished)
    assert [str(t) for t in ci.local_ts] == ["10.1.0.0-10.1.255.255"] == [str(t) for t in cr.remote_ts]
    assert [str(t) for t in ci.remote_ts] == ["192.168.0.0-192.168.0.255"] == [str(t) for t in cr.local_ts]
    w = handshake(*configs(local_ts=("10.0.0.0/8",), r_remote_ts=("172.16.0.0/12",)))
    (fi,) = w.of("i", ChildSaFailed)
    assert fi.notify == NotifyType.TS_UNACCEPTABLE and w.i.state == IkeState.ESTABLISHED


def test_a_lost_response_is_recovered_by_retransmission_and_answered_from_the_cache():
    lost = []

    def deliver(direction: str, d: bytes) -> bool:
        if direction == "r>i" and decode(d).exchange == ExchangeType.IKE_AUTH and not lost:
            lost.append(d)
            return False
        return True

    w = handshake(*configs(), deliver=deliver)
    assert w.i.state == IkeState.AUTH_SENT and w.r.state == IkeState.ESTABLISHED
    assert w.i.get_timer() == pytest.approx(1.0)
    w.run_timers(until=10)
    assert w.i.state == IkeState.ESTABLISHED and w.i.counters.retransmits == 1
    assert w.r.counters.duplicate_requests == 1 and len(w.of("r", ChildSaEstablished)) == 1  # processed once
    assert w.log[-1][1] == lost[0]  # the very same bytes again


def test_a_lost_ike_sa_init_response_is_answered_again_though_the_request_has_no_responder_spi():
    lost = []

    def deliver(direction: str, d: bytes) -> bool:
        if direction == "r>i" and not lost:
            lost.append(d)
            return False
        return True

    w = handshake(*configs(), deliver=deliver)
    w.run_timers(until=10)
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    assert w.r.counters.duplicate_requests == 1 and w.log[3][1] == lost[0]  # the same answer again
    assert len(w.of("r", IkeSaEstablished)) == 1


def test_a_request_with_a_used_message_id_but_other_bytes_is_not_a_retransmission():
    w = handshake(*configs())
    (auth_req,) = [d for direction, d in w.log if direction == "i>r" and decode(d).exchange == ExchangeType.IKE_AUTH]
    forged = bytearray(auth_req)
    forged[-1] ^= 0x55
    w.r.receive_datagram(bytes(forged), w.now)
    assert w.r.counters.duplicate_requests == 0 and sent(w.r, w.now) == []
    assert w.r.counters.total_dropped() == 1


def test_no_answer_fails_after_the_retransmission_schedule():
    w = handshake(*configs(retransmit_timeout=0.5, retransmit_tries=4), deliver=lambda d, _b: d == "r>i")
    sent_at = []
    while (t := w.i.get_timer()) is not None:
        w.now = t
        w.i.handle_timer(t)
        sent_at += [t] * len(sent(w.i, t))
        w.collect()
    assert sent_at == pytest.approx([0.5, 0.5 + 0.9, 0.5 + 0.9 + 1.62])  # timeout * 1.8**n
    (f,) = w.of("i", IkeSaFailed)
    assert "no answer to our IKE_SA_INIT request" in f.reason and "after 4 transmissions" in f.reason
    assert w.i.state == IkeState.FAILED


def test_malformed_forged_and_stray_datagrams_are_counted_and_dropped():
    ci, cr = configs()
    w = Wire(ci, cr)
    w.i.initiate(0)
    w.pump(rounds=1)  # IKE_SA_INIT both ways; the IKE_AUTH request is now queued at the initiator
    (auth_req,) = sent(w.i, 0)
    forged = bytearray(auth_req)
    forged[-1] ^= 1
    for junk in (b"", b"\x00" * 10, auth_req[:40], bytes(forged), auth_req[:16] + bytes(8) + auth_req[24:]):
        w.r.receive_datagram(junk, 0)
    w.collect()
    drops = w.of("r", DatagramDropped)
    assert len(drops) == 5 and w.r.state == IkeState.INIT_DONE
    assert w.r.counters.dropped_malformed == 3 and w.r.counters.dropped_integrity == 1
    assert w.r.counters.dropped_unexpected == 1 and "ICV" in drops[3].reason
    w.r.receive_datagram(auth_req, 0)  # the real one still works
    w.pump()
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_delete_closes_both_sides_and_liveness_is_answered():
    w = handshake(*configs())
    w.r.check_liveness(w.now)
    w.pump()
    assert w.r.get_timer() is None and w.r.state == IkeState.ESTABLISHED  # answered
    w.i.close(w.now)
    assert w.i.state == IkeState.DELETING
    w.pump()
    assert w.i.state == w.r.state == IkeState.CLOSED
    assert w.of("i", IkeSaDeleted) == [IkeSaDeleted(by_peer=False)]
    assert w.of("r", IkeSaDeleted) == [IkeSaDeleted(by_peer=True)]
    w.i.receive_datagram(w.log[-1][1], w.now)  # anything after the end is dropped, not processed
    assert w.i.counters.dropped_unexpected == 1


def test_child_sa_delete_is_answered_with_our_spi():
    from ipseclab.packets.enums import ProtocolId
    from ipseclab.packets.payloads import DeletePayload

    w = handshake(*configs())
    (ci,) = w.of("i", ChildSaEstablished)
    w.i.delete_child(ci.spi_in, w.now)
    w.pump()
    assert w.of("r", ChildSaDeleted) == [ChildSaDeleted(ci.spi_out, ci.spi_in, by_peer=True)]
    assert w.of("i", ChildSaDeleted) == [ChildSaDeleted(ci.spi_in, ci.spi_out, by_peer=False)]
    assert not w.i.child_sas() and not w.r.child_sas()
    answer = decode(w.log[-1][1], w.i.neg.crypto).all_payloads()
    assert answer == [DeletePayload(ProtocolId.ESP, [ci.spi_out.to_bytes(4, "big")])]


def test_large_ike_auth_messages_are_fragmented_and_reassembled():
    many = tuple(f"10.{n}.0.0/16" for n in range(60))
    w = handshake(*configs(fragment_size=576, local_ts=many, r_remote_ts=("10.0.0.0/8",)))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED
    auth = [d for direction, d in w.log if direction == "i>r" and decode(d).exchange == ExchangeType.IKE_AUTH]
    assert len(auth) > 1 and all(len(d) <= 576 for d in auth)
    assert len(w.of("r", ChildSaEstablished)[0].remote_ts) == 60


def test_state_table_refuses_impossible_steps():
    assert transition(Role.INITIATOR, IkeState.INITIAL, Trigger.SEND_INIT) == IkeState.INIT_SENT
    with pytest.raises(LocalProtocolError, match="responder in state initial cannot send IKE_SA_INIT request"):
        transition(Role.RESPONDER, IkeState.INITIAL, Trigger.SEND_INIT)
    with pytest.raises(LocalProtocolError):
        IkeConnection(configs()[1], initiator=False).initiate(0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("psk", b"", "pre-shared key is empty"),
    ("ike_proposals", ("aes256gcm16-prfsha256",), "no key exchange method"),
    ("esp_proposals", ("aes128-sha999",), "unknown esp proposal keyword 'sha999'"),
    ("local_ts", ("10.1.0.0/33",), "traffic selector '10.1.0.0/33'"),
    ("mode", "beet", "use 'tunnel' or 'transport'"),
    ("local_id", "", "empty identity"),
])
def test_bad_configuration_is_refused_at_once_with_the_reason(field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(configs()[0], **{field: value})


@pytest.mark.tshark
def test_tshark_decrypts_the_engines_messages(tmp_path: Path):
    """Wireshark, given only the key table made from the IkeSaEstablished event, decrypts every SK payload."""
    w = handshake(*configs(ike_proposals=("aes256-sha256-ecp256",)))
    w.i.close(w.now)
    w.pump()
    records = wireshark_view(w, tmp_path)
    assert [r.exchange for r in records] == [34, 34, 35, 35, 37, 37]
    encrypted = [r for r in records if r.encrypted]
    assert len(encrypted) == 4 and all(r.decrypted and r.icv_ok for r in encrypted), records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 40))
def test_mutated_datagrams_never_raise_and_forged_ones_never_advance_the_state(which, flips, cut):
    """The handshake runs until its ``which``-th datagram, which arrives with bytes changed or cut off: the
    receiver never raises, and an encrypted message that was changed is dropped without any state change."""
    ci, cr = configs()
    i, r = IkeConnection(ci, initiator=True), IkeConnection(cr, initiator=False)
    i.initiate(0)
    sender, receiver = i, r
    for step in range(which + 1):
        (original,) = sent(sender, 0)
        if step < which:
            receiver.receive_datagram(original, 0)
            sender, receiver = receiver, sender
    for conn in (i, r):  # the genuine messages' events (IkeSaKeysDerived after IKE_SA_INIT)
        list(iter(conn.next_event, None))
    data = bytearray(original)
    for pos, value in flips:
        data[pos % len(data)] = value
    mutated = bytes(data[: max(0, len(data) - cut)])
    before, dropped = receiver.state, receiver.counters.total_dropped()
    receiver.receive_datagram(mutated, 0)  # must not raise
    events = list(iter(receiver.next_event, None))
    if mutated != original and which >= 2:  # IKE_AUTH: everything that matters is under the ICV
        assert receiver.state == before and receiver.counters.total_dropped() == dropped + 1, events
        assert all(isinstance(e, DatagramDropped) for e in events)

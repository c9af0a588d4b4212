"""EAP for IKEv2: MS-CHAPv2 against RFC 2759 / RFC 3079, MD4 against RFC 1320, the EAP peer and server, and
IKE_AUTH with EAP in memory (RFC 7296 2.16, RFC 5998), each failure named."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.crypto import mschapv2
from ipseclab.crypto.ca import Ca
from ipseclab.errors import ConfigError, DecodeError, RemoteProtocolError
from ipseclab.ike import IkeConfig, IkeConnection, IkeSaEstablished, IkeSaFailed
from ipseclab.ike.auth import EapClient, EapServer, Psk, PubkeyAuth, TrustedCas
from ipseclab.ike.eap import EapAuthenticator, EapCode, EapPacket, EapPeer, EapType, decode
from ipseclab.ike.loopback import handshake
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import IkeSaCrypto
from ipseclab.packets.message import decode as decode_message
from tests.unit.ike_wire import Wire
from tests.vectors import load

RFC = load("rfc2759_mschapv2")
V = RFC["vectors"][0]
AC, PC, USER = bytes.fromhex(V["authenticator_challenge"]), bytes.fromhex(V["peer_challenge"]), V["user_name"].encode()


@pytest.mark.parametrize(("text", "digest"), RFC["md4"])
def test_md4_rfc1320_suite(text, digest):
    assert mschapv2.md4(text.encode()).hex() == digest


def test_mschapv2_rfc2759_section_9_2():
    assert mschapv2.challenge_hash(PC, AC, USER).hex() == V["challenge"]
    assert mschapv2.nt_password_hash(V["password"]).hex() == V["password_hash"]
    assert mschapv2.md4(mschapv2.nt_password_hash(V["password"])).hex() == V["password_hash_hash"]
    nt = mschapv2.generate_nt_response(AC, PC, USER, V["password"])
    assert nt.hex() == V["nt_response"]
    assert mschapv2.generate_authenticator_response(V["password"], nt, PC, AC, USER).decode() == \
        V["authenticator_response"]


def test_mppe_keys_rfc3079_section_3_5_3_and_the_msk_layout():
    nt = bytes.fromhex(V["nt_response"])
    master = mschapv2.master_key(V["password"], nt)
    assert master.hex() == V["master_key"]
    assert mschapv2.asymmetric_start_key(master, 16, send=True, server=True).hex() == V["send_start_key_128_server"]
    # the client's receive key is the server's send key (both Magic3)
    assert mschapv2.asymmetric_start_key(master, 16, send=False, server=False).hex() == V["send_start_key_128_server"]
    msk = mschapv2.msk(V["password"], nt)
    # MSK = server MasterReceiveKey | MasterSendKey (the RFC's SendStartKey128) | 32 zero bytes
    assert len(msk) == 64 and msk[16:32].hex() == V["send_start_key_128_server"] and msk[32:] == bytes(32)
    assert msk[:16] == mschapv2.asymmetric_start_key(master, 16, send=True, server=False)


def test_chap_md5_is_md5_of_identifier_secret_challenge():
    # RFC 1994 4.1 / RFC 3748 5.4, with hashlib as the oracle
    assert mschapv2.chap_md5(7, b"pw", b"chal") == hashlib.md5(b"\x07pwchal").digest()


# --- the EAP codec --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x00", b"\x01\x02\x00\x09\x01", b"\x03\x01\x00\x05\x00",
                                  b"\x05\x01\x00\x04", b"\x01\x01\x00\x04"])
def test_malformed_eap_packets_are_decode_errors(data):
    with pytest.raises(DecodeError):
        decode(data)


def test_eap_packet_round_trip():
    p = EapPacket(EapCode.REQUEST, 9, EapType.MD5_CHALLENGE, b"\x01x")
    assert decode(p.encode()) == p and decode(EapPacket(EapCode.SUCCESS, 3).encode()).code == EapCode.SUCCESS


def _counter():
    n = iter(range(1, 1 << 30))
    return lambda k: bytes((next(n) + i) % 256 for i in range(k))


def _run(client: EapClient, server: EapServer, name: bytes = b"carol") -> tuple[EapPeer, EapAuthenticator]:
    peer, srv = EapPeer(client, name, _counter()), EapAuthenticator(server, name, _counter())
    msg = srv.start()
    while True:
        reply = peer.receive(msg)
        if reply is None:
            return peer, srv
        msg = srv.receive(reply)


@pytest.mark.parametrize("method", ["md5", "mschapv2"])
def test_eap_peer_and_server_agree(method):
    peer, srv = _run(EapClient("pw", methods=(method,)), EapServer((("carol", "pw"),), method=method))
    assert peer.done and srv.outcome is True and peer.msk == srv.msk
    assert (len(peer.msk) == 64) == (method == "mschapv2")


@pytest.mark.parametrize("method", ["md5", "mschapv2"])
def test_wrong_eap_password_fails_on_both_sides(method):
    with pytest.raises(RemoteProtocolError, match="Failure") as exc:
        _run(EapClient("wrong", methods=(method,)), EapServer((("carol", "pw"),), method=method))
    assert exc.value.notify == NotifyType.AUTHENTICATION_FAILED and exc.value.from_peer


def test_eap_server_names_the_wrong_password_and_the_unknown_user():
    peer, srv = EapPeer(EapClient("wrong"), b"carol", _counter()), EapAuthenticator(
        EapServer((("carol", "pw"),)), b"carol", _counter())
    msg = srv.start()
    msg = srv.receive(peer.receive(msg) or b"")  # the MSCHAPv2 Failure request, E=691
    final = srv.receive(peer.receive(msg) or b"")
    assert decode(final).code == EapCode.FAILURE and srv.outcome is False and "wrong password" in srv.reason
    with pytest.raises(RemoteProtocolError, match="E=691"):
        peer.receive(final)
    srv2 = EapAuthenticator(EapServer((("dave", "pw"),), method="md5"), b"carol", _counter())
    reply = EapPeer(EapClient("pw"), b"carol", _counter()).receive(srv2.start())
    assert decode(srv2.receive(reply or b"")).code == EapCode.FAILURE and "not a configured user" in srv2.reason


def test_a_method_the_client_refuses_is_naked_and_fails():
    srv = EapAuthenticator(EapServer((("carol", "pw"),), method="mschapv2"), b"carol", _counter())
    nak = EapPeer(EapClient("pw", methods=("md5",)), b"carol", _counter()).receive(srv.start())
    assert decode(nak or b"").type == EapType.NAK
    assert decode(srv.receive(nak or b"")).code == EapCode.FAILURE and "Nak, it wants: md5" in srv.reason


def test_a_server_that_does_not_know_the_password_is_caught_by_the_mschapv2_peer():
    srv = EapAuthenticator(EapServer((("carol", "pw"),)), b"carol", _counter())
    peer = EapPeer(EapClient("pw"), b"carol", _counter())
    resp = peer.receive(srv.start()) or b""
    success = decode(srv.receive(resp))
    forged = bytearray(success.data)
    forged[6] ^= 1  # one hex digit of S=... changed
    with pytest.raises(RemoteProtocolError, match="authenticator response does not verify"):
        peer.receive(EapPacket(success.code, success.identifier, success.type, bytes(forged)).encode())


def test_eap_success_without_a_method_is_refused():
    with pytest.raises(RemoteProtocolError, match="before any EAP method"):
        EapPeer(EapClient("pw"), b"carol", _counter()).receive(EapPacket(EapCode.SUCCESS, 1).encode())


# --- IKE_AUTH with EAP, in memory ------------------------------------------------------------------

CA = Ca.create("EAP test CA")
SUN_CERT, SUN_KEY = CA.issue("sun.example")


def _configs(client: EapClient, server: EapServer, *, responder_cert: bool = True) -> tuple[IkeConfig, IkeConfig]:
    if responder_cert:
        ci = IkeConfig("carol@example", "sun.example", local_auth=client, remote_auth=TrustedCas((CA.certificate,)))
        cr = IkeConfig("sun.example", "carol@example", local_auth=PubkeyAuth(SUN_CERT, SUN_KEY), remote_auth=server)
    else:
        ci = IkeConfig("carol@example", "sun.example", local_auth=client, remote_auth=Psk(b"responder key"))
        cr = IkeConfig("sun.example", "carol@example", local_auth=Psk(b"responder key"), remote_auth=server)
    return ci, cr


def _exchanges(w: Wire) -> list[tuple[str, list[str]]]:
    """(direction, the payloads inside SK) of every IKE_AUTH message, decrypted with the IKE SA's keys."""
    est = w.of("i", IkeSaEstablished)
    suite = w.i.neg.suite
    if not est or suite is None:
        return []
    crypto = IkeSaCrypto.from_keys(suite, est[0].keys)
    return [(d, decode_message(data, crypto).summary().split("SK{")[1].rstrip("}]").split())
            for d, data in w.log if data[18] == ExchangeType.IKE_AUTH]


USERS = (("carol@example", "carol's password"),)


@pytest.mark.parametrize("method", ["md5", "mschapv2"])
@pytest.mark.parametrize("responder_cert", [True, False], ids=["cert-responder", "psk-responder"])
def test_eap_initiator_establishes_with_the_eap_server(method, responder_cert):
    ci, cr = _configs(EapClient("carol's password", methods=(method,)), EapServer(USERS, method=method),
                      responder_cert=responder_cert)
    w = Wire(ci, cr)
    w.i.initiate(0.0)
    w.pump()
    ei, er = w.of("i", IkeSaEstablished), w.of("r", IkeSaEstablished)
    assert len(ei) == 1 and len(er) == 1, (w.events)
    assert f"EAP-{method}" in ei[0].auth and f"EAP-{method}" in er[0].auth
    assert ("MSK-based" in er[0].auth) == (method == "mschapv2")
    flow = _exchanges(w)
    assert "EAP" in flow[1][1] and ("CERT" in flow[1][1]) == responder_cert and "AUTH" in flow[1][1]
    assert "AUTH" in flow[-2][1] and "SA" in flow[-1][1] and "TSi" in flow[-1][1]
    assert w.i.child_sas() and w.r.child_sas()


def test_eap_only_authentication_rfc5998_with_mschapv2():
    ci, cr = _configs(EapClient("carol's password", eap_only=True), EapServer(USERS))
    w = Wire(ci, cr)
    w.i.initiate(0.0)
    w.pump()
    ei = w.of("i", IkeSaEstablished)
    assert ei and ei[0].auth.startswith("EAP-only, EAP-mschapv2")
    flow = _exchanges(w)
    assert "N(EAP_ONLY_AUTHENTICATION)" in flow[0][1]
    assert "AUTH" not in flow[1][1] and "CERT" not in flow[1][1]


def test_eap_only_with_a_one_way_method_keeps_the_responder_signature():
    ci, cr = _configs(EapClient("carol's password", methods=("md5",), eap_only=True), EapServer(USERS, method="md5"))
    i, _r = handshake(ci, cr)
    est = i.of(IkeSaEstablished)
    assert est and "DIGITAL_SIGNATURE" in est[0].auth  # type: ignore[attr-defined]


def test_responder_without_credentials_needs_eap_only():
    server = EapServer(USERS)
    cr = IkeConfig("sun.example", "carol@example", remote_auth=server)
    ci = IkeConfig("carol@example", "sun.example", local_auth=EapClient("carol's password"),
                   remote_auth=TrustedCas((CA.certificate,)))
    i, r = handshake(ci, cr)
    fail = r.of(IkeSaFailed)
    assert fail and "did not ask for EAP-only" in fail[0].reason  # type: ignore[attr-defined]
    assert i.of(IkeSaFailed)[0].notify == NotifyType.AUTHENTICATION_FAILED  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["md5", "mschapv2"])
def test_wrong_eap_password_refused_in_ike_auth(method):
    ci, cr = _configs(EapClient("guess", methods=(method,)), EapServer(USERS, method=method))
    i, r = handshake(ci, cr)
    fi, fr = i.of(IkeSaFailed), r.of(IkeSaFailed)
    assert fi and fi[0].remote and fi[0].notify == NotifyType.AUTHENTICATION_FAILED  # type: ignore[attr-defined]
    assert fr and "wrong password" in fr[0].reason  # type: ignore[attr-defined]
    assert not i.of(IkeSaEstablished) and not r.of(IkeSaEstablished)


def test_eap_roles_are_checked_when_the_connection_is_made():
    ci, cr = _configs(EapClient("pw"), EapServer(USERS))
    with pytest.raises(ConfigError, match="only the initiator"):
        IkeConnection(ci, initiator=False)
    with pytest.raises(ConfigError, match="only the responder"):
        IkeConnection(cr, initiator=True)
    with pytest.raises(ConfigError, match="EAP method 'tls'"):
        EapClient("pw", methods=("tls",))
    with pytest.raises(ConfigError, match="without users"):
        EapServer(())


def test_a_lost_eap_round_is_retransmitted_and_the_handshake_completes():
    ci, cr = _configs(EapClient("carol's password"), EapServer(USERS))
    dropped: list[bytes] = []

    def lose_first_eap_answer(direction: str, data: bytes) -> bool:
        # message id 2 is the second IKE_AUTH round trip (the MSCHAPv2 Response and its Success request)
        if direction == "r>i" and data[18] == ExchangeType.IKE_AUTH and data[20:24] == (2).to_bytes(4, "big") \
                and not dropped:
            dropped.append(data)
            return False
        return True

    w = Wire(ci, cr, lose_first_eap_answer)
    w.i.initiate(0.0)
    w.pump()
    assert dropped and not w.of("i", IkeSaEstablished)
    w.run_timers(10.0)
    assert w.of("i", IkeSaEstablished) and w.of("r", IkeSaEstablished)
    assert w.r.counters.duplicate_requests == 1  # answered from the cache, EAP not run twice


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=80), st.sampled_from(["md5", "mschapv2"]))
def test_hostile_eap_bytes_give_declared_errors_only(data, method):
    """An authentic peer may still send garbage inside EAP: each side raises its declared errors, or answers."""
    srv = EapAuthenticator(EapServer((("carol", "pw"),), method=method), b"carol", _counter())
    first = srv.start()
    peer = EapPeer(EapClient("pw", methods=(method,)), b"carol", _counter())
    for target in (peer.receive, srv.receive):
        with contextlib.suppress(DecodeError, RemoteProtocolError):
            target(data)
    # and after garbage, the genuine exchange still works from a fresh peer
    reply = EapPeer(EapClient("pw", methods=(method,)), b"carol", _counter()).receive(first)
    assert reply is not None


def test_one_listener_serves_every_user_of_its_eap_server_and_refuses_a_wrong_password():
    """remote_id '%any': each initiator is whoever its EAP credentials prove (RFC 7296 2.16; strongSwan's %any)."""
    from ipseclab.ike.responder import Responder

    users = (("carol@example", "carol's"), ("dave@example", "dave's"))
    listener = Responder(IkeConfig("sun.example", "%any", local_auth=PubkeyAuth(SUN_CERT, SUN_KEY),
                                   remote_auth=EapServer(users)))
    results = {}
    for n, (name, password) in enumerate((*users, ("dave@example", "carol's"))):
        addr = (f"192.0.2.{10 + n}", 500)
        conn = IkeConnection(IkeConfig(name, "sun.example", local_auth=EapClient(password),
                                       remote_auth=TrustedCas((CA.certificate,))), initiator=True)
        conn.initiate(0.0)
        for _ in range(10):
            for d in conn.datagrams_to_send(0.0):
                listener.receive_datagram(d.data, 0.0, addr)
            for d in listener.datagrams_to_send(0.0):
                if d.addr == addr:
                    conn.receive_datagram(d.data, 0.0, d.addr)
        results[(name, password)] = [type(e).__name__ for e in iter(conn.next_event, None)]
    assert results[users[0]][:2] == results[users[1]][:2] == ["IkeSaKeysDerived", "IkeSaEstablished"]
    assert results[("dave@example", "carol's")] == ["IkeSaKeysDerived", "IkeSaFailed"]
    peers = {c.peer_id for c in listener.ike_connections() if c.state == "established"}
    assert peers == {"carol@example", "dave@example"}
    with pytest.raises(ConfigError, match="'%any' needs a remote_auth that proves an identity"):
        IkeConfig("sun.example", "%any", psk=b"k")

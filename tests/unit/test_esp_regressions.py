"""Regressions of issue 9 (items 8-10): authentic-but-odd and replayed packets on the ESP/AH receive path.

Each refused packet must raise a declared error type (``ipseclab.errors``) and bump the matching
counter, and must leave the replay window as it was.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import DecodeError, IntegrityError, ReplayError
from ipseclab.esp import AhSA, EspSA
from ipseclab.esp.iphdr import PROTO_ESP, OuterHeader

TUN = ("198.51.100.1", "198.51.100.2")
INNER = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=7, dport=9) / Raw(b"payload" * 4))


def _gcm(**kw) -> EspSA:
    return EspSA(0x4242, EncrId.AES_GCM_16, bytes(range(20)), tunnel=TUN, **kw)


def _ah(**kw) -> AhSA:
    return AhSA(0x77, IntegId.HMAC_SHA2_256_128, bytes(32), tunnel=TUN, **kw)


# --- item 8: a 2-byte authentic payload with next header 41 ------------------------------------------


@pytest.mark.parametrize("payload", [b"\x60\x00", b"\x60", b"\x45\x00", b"\x60" + bytes(38)])
def test_fast_path_refuses_a_short_authentic_inner_packet_as_the_general_path_does(payload):
    nh = 41 if payload[0] >> 4 == 6 else 4
    tx, fast, general = _gcm(), _gcm(), _gcm()
    esp = tx.encapsulate(payload, nh)
    packet = OuterHeader(*TUN).build(PROTO_ESP, len(esp)) + esp
    with pytest.raises(DecodeError):
        fast.unprotect(packet)  # the inline AEAD path (tunnel mode, IPv4 outer header)
    with pytest.raises(DecodeError):
        general.decapsulate(esp)
    for sa in (fast, general):
        assert sa.counters.decode_errors == 1 and sa.window.top == 0 and sa.counters.packets_in == 0


# --- item 9: AH tunnel mode on truncated inner packets; the Scapy face; protect of a stub ---------------


@pytest.mark.parametrize("inner", [b"\x45", INNER[:25], INNER[:19], b"\x60" + bytes(20)])
def test_ah_tunnel_mode_refuses_an_authentic_truncated_inner_packet_as_esp_does(inner):
    ah_tx, ah_rx = _ah(), _ah()
    esp_tx, esp_rx = _gcm(), _gcm()
    nh = 41 if inner[0] >> 4 == 6 else 4
    esp = esp_tx.encapsulate(inner, nh)
    with pytest.raises(DecodeError):
        esp_rx.decapsulate(esp)
    wire = ah_tx.protect(INNER)
    # the same packet with a truncated inner packet, authentic: signed by the sender's key
    forged_inner = _ah_tunnel_packet(ah_tx, inner)
    with pytest.raises(DecodeError):
        ah_rx.unprotect(forged_inner)
    assert ah_rx.counters.decode_errors == 1 and ah_rx.window.top == 0
    assert ah_rx.unprotect(wire) == INNER  # the window did not move: the genuine packet still gets in


def _ah_tunnel_packet(sa: AhSA, inner: bytes) -> bytes:
    """An authentic tunnel-mode AH packet around ``inner``, bytes the sender would never build from a whole packet."""
    from ipseclab.esp.ah import _AH, zero_mutable
    from ipseclab.esp.iphdr import PROTO_AH

    sa.seq += 1
    ah_len = sa.ah_length(4)
    head = OuterHeader(*TUN).build(PROTO_AH, ah_len + len(inner))
    ah0 = _AH.pack(4 if inner[0] >> 4 == 4 else 41, ah_len // 4 - 2, 0, sa.spi, sa.seq)
    zero_icv = bytes(ah_len - 12)
    icv = sa._ikey.compute(zero_mutable(head) + ah0 + zero_icv + inner)
    return head + ah0 + icv + zero_icv[sa.icv_size :] + inner


def test_ah_decrypt_on_a_scapy_packet_with_a_truncated_inner_packet_gives_a_decode_error():
    tx, rx = _ah(), _ah()
    with pytest.raises(DecodeError):
        rx.decrypt(IP(_ah_tunnel_packet(tx, b"\x45")))
    assert rx.counters.decode_errors == 1


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("stub", [b"", b"\x45", b"\x45\x00\x00", b"\x60", b"\x60" + bytes(10), b"\x10\x00"])
def test_protect_of_a_stub_gives_decode_error_for_ah_as_for_esp(mode, stub):
    tun = TUN if mode == "tunnel" else None
    esp = EspSA(1, EncrId.AES_GCM_16, bytes(20), mode=mode, tunnel=tun)
    ah = AhSA(1, IntegId.HMAC_SHA2_256_128, bytes(32), mode=mode, tunnel=tun)
    for sa in (esp, ah):
        with pytest.raises(DecodeError):
            sa.protect(stub)
        assert sa.seq == 0 and sa.counters.packets_out == 0  # nothing was spent on a refused packet


# --- item 10: with ESN, left of the window is a replay, not an integrity failure -----------------------


def _cbc(**kw) -> EspSA:
    return EspSA(0x99, EncrId.AES_CBC, bytes(16), integ=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32), tunnel=TUN,
                 **kw)


@pytest.mark.parametrize(("make", "fast"), [(_gcm, True), (_cbc, True), (_ah, True), (_gcm, False), (_cbc, False)],
                         ids=["esp-gcm-unprotect", "esp-cbc-unprotect", "ah-unprotect", "esp-gcm-decapsulate",
                              "esp-cbc-decapsulate"])
def test_esn_packet_left_of_the_window_counts_as_a_replay(make, fast):
    tx, rx = make(esn=True, replay_window=32), make(esn=True, replay_window=32)
    send = tx.protect if fast else (lambda: tx.encapsulate(INNER, 4))
    recv = rx.unprotect if fast else rx.decapsulate
    old = send(INNER) if fast else send()
    for _ in range(100):
        recv(send(INNER) if fast else send())
    top = rx.window.top
    with pytest.raises(ReplayError, match="left of the replay window"):
        recv(old)
    assert (rx.counters.replay_drops, rx.counters.integrity_failures) == (1, 0)
    assert rx.window.top == top


@pytest.mark.parametrize("make", [_gcm, _ah], ids=["esp", "ah"])
def test_esn_forgery_left_of_the_window_is_still_an_integrity_failure_and_moves_nothing(make):
    tx, rx = make(esn=True, replay_window=32), make(esn=True, replay_window=32)
    old = bytearray(tx.protect(INNER))
    for _ in range(100):
        rx.unprotect(tx.protect(INNER))
    top = rx.window.top
    old[-1] ^= 1  # a forged packet with an old sequence number: it authenticates in no subspace
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(old))
    assert (rx.counters.replay_drops, rx.counters.integrity_failures) == (0, 1)
    assert rx.window.top == top
    genuine = tx.protect(INNER)
    assert rx.unprotect(genuine) == INNER and rx.window.top == top + 1

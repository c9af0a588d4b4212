"""Hypothesis properties of the data plane: broken input raises only ipseclab errors and never moves the window.

Plus model checks: the replay window against a set-based reference, and ESN inference
recovering every sequence number the RFC 4303 Appendix A algorithm is meant to cover.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from ipseclab.crypto import EncrId, IntegId, get_encr
from ipseclab.errors import IpsecLabError
from ipseclab.esp import AhSA, EspSA, ReplayWindow

TUN = ("198.51.100.1", "198.51.100.2")
K = bytes(range(64))
INNER4 = bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=7, dport=9) / Raw(b"payload" * 9))
INNER6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8:1::1") / UDP(sport=7, dport=9) / Raw(b"payload" * 9))


def _factories():
    esp = {
        "gcm16": dict(encr=EncrId.AES_GCM_16, key=K[:20]),
        "gcm8": dict(encr=EncrId.AES_GCM_8, key=K[:20]),
        "chacha": dict(encr=EncrId.CHACHA20_POLY1305, key=K[:36]),
        "gmac": dict(encr=EncrId.NULL_AUTH_AES_GMAC, key=K[:20]),
        "cbc-sha256": dict(encr=EncrId.AES_CBC, key=K[:16], integ=IntegId.HMAC_SHA2_256_128, integ_key=K[:32]),
        "null-sha1": dict(encr=EncrId.NULL, key=b"", integ=IntegId.HMAC_SHA1_96, integ_key=K[:20]),
    }
    out = {}
    for name, kw in esp.items():
        for mode in ("tunnel", "transport"):
            for udp in (False, True):
                for esn in (False, True):
                    def make(kw=kw, mode=mode, udp=udp, esn=esn):
                        return EspSA(0x1234, **kw, mode=mode, tunnel=TUN if mode == "tunnel" else None, udp=udp,
                                     esn=esn)
                    out[f"esp-{name}-{mode}{'-udp' if udp else ''}{'-esn' if esn else ''}"] = make
    for mode in ("tunnel", "transport"):
        for esn in (False, True):
            def make_ah(mode=mode, esn=esn):
                return AhSA(0x1234, IntegId.HMAC_SHA2_256_128, K[:32], mode=mode,
                            tunnel=TUN if mode == "tunnel" else None, esn=esn)
            out[f"ah-{mode}{'-esn' if esn else ''}"] = make_ah
    return out


FACTORIES = _factories()
NAMES = sorted(FACTORIES)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fresh(name: str, inner: bytes, already: int = 3):
    """A sender, a receiver that has accepted ``already`` packets, and the next packet on the wire."""
    tx, rx = FACTORIES[name](), FACTORIES[name]()
    for _ in range(already):
        rx.unprotect(tx.protect(inner))
    return rx, tx.protect(inner)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 40), st.integers(0, 255)),
)


def _mutate(wire: bytes, how: tuple[str, int, int]) -> bytes:
    kind, pos, val = how
    if kind == "flip":
        i = pos % len(wire)
        return wire[:i] + bytes([wire[i] ^ val]) + wire[i + 1 :]
    if kind == "truncate":
        return wire[: pos % len(wire)]
    return wire + bytes([val]) * pos


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(how=st.lists(mutation, min_size=1, max_size=3), v6=st.booleans())
def test_a_mangled_packet_raises_only_ipseclab_errors_and_never_moves_the_window(name, how, v6):
    inner = INNER6 if v6 else INNER4
    rx, wire = _fresh(name, inner)
    for h in how:
        wire = _mutate(wire, h) if wire else wire
    top, accepted = rx.window.top, rx.counters.packets_in
    try:
        out = rx.unprotect(wire)
    except IpsecLabError:
        assert rx.window.top == top and rx.counters.packets_in == accepted
        return
    # what survives a mangling is only what IPsec does not protect (outer/transport header fields)
    assert out is not None and rx.window.top == top + 1


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("esp")])
@SETTINGS
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_bit_flipped_from_spi_to_icv_is_refused(name, pos, bit):
    rx, wire = _fresh(name, INNER4)
    start = wire.index((0x1234).to_bytes(4, "big"), 20)  # the SPI: where ESP starts
    i = start + pos % (len(wire) - start)
    bad = wire[:i] + bytes([wire[i] ^ (1 << bit)]) + wire[i + 1 :]
    with pytest.raises(IpsecLabError):
        rx.unprotect(bad)
    assert rx.window.top == 3


@pytest.mark.parametrize("name", ["esp-gcm16-tunnel-udp", "esp-cbc-sha256-transport-esn", "ah-transport"])
@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_ipseclab_errors(name, data):
    rx = FACTORIES[name]()
    with contextlib.suppress(IpsecLabError):
        rx.unprotect(data)
    assert rx.window.top == 0


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=1500), nh=st.sampled_from([6, 17, 58, 253]), pad_to=st.sampled_from([0, 64, 900]))
def test_esp_payloads_of_any_length_round_trip(payload, nh, pad_to):
    tx = EspSA(0x99, EncrId.AES_CBC, K[:32], integ=IntegId.HMAC_SHA2_512_256, integ_key=K[:64], mode="transport",
               tfc_pad_to=pad_to)
    rx = EspSA(0x99, EncrId.AES_CBC, K[:32], integ=IntegId.HMAC_SHA2_512_256, integ_key=K[:64], mode="transport")
    esp = tx.encapsulate(payload, nh)
    assert (len(esp) - 8 - 16 - 32) % 16 == 0
    got, got_nh = rx.decapsulate(esp)
    assert got_nh == nh
    # TFC padding goes only after payloads that carry their own length, and comes off again; a UDP
    # datagram ends at its length field, as the UDP stack would read it
    udp_len = int.from_bytes(payload[4:6], "big") if nh == 17 and len(payload) >= 8 else 0
    assert got == (payload[:udp_len] if 8 <= udp_len < len(payload) else payload)


# --- model checks -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 200), seqs=st.lists(st.integers(0, 600), max_size=120))
def test_replay_window_matches_a_set_model(size, seqs):
    w = ReplayWindow(size)
    seen: set[int] = set()
    top = 0
    for s in seqs:
        expected = s > 0 and (size == 0 or s > top or (top - s < size and s not in seen))
        try:
            w.check(s)
            ok = True
        except IpsecLabError:
            ok = False
        assert ok == expected, (s, top)
        if ok:
            w.update(s)
            seen.add(s)
            top = max(top, s)
    assert w.top == top


@settings(max_examples=500, deadline=None)
@given(size=st.sampled_from([0, 1, 32, 64, 1024, 4096]), top=st.integers(1, 2**40), delta=st.integers(-5000, 2**31))
def test_esn_inference_recovers_every_number_the_rfc_algorithm_covers(size, top, delta):
    """RFC 4303 A2.2 gets Seqh right for any Seq in [T - W + 1, T + 2^31 - W] (W = 1 when the window is off)."""
    w = ReplayWindow(size, esn=True)
    w.update(top)
    eff = size or 1
    seq = top + delta
    if not max(1, top - eff + 1) <= seq <= top + 2**31 - eff:
        return
    assert w.infer(seq & 0xFFFFFFFF) == seq


def test_fuzz_inputs_are_not_trivially_accepted():
    """Sanity for the properties above: the unmangled packet is accepted by the same construction."""
    for name in NAMES:
        rx, wire = _fresh(name, INNER4)
        assert rx.unprotect(wire) is not None, name
        assert rx.window.top == 4




@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=16, max_size=16), st.integers(1, 40)), min_size=1, max_size=12),
       st.sampled_from([16, 24, 32]))
def test_aes_cbc_keyed_object_matches_a_fresh_context_per_message(messages, key_len):
    """Any sequence of messages through one keyed AES-CBC object equals cryptography's CBC, fresh per message."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(key_len))
    keyed = get_encr(EncrId.AES_CBC, key_len * 8).keyed(key)
    for iv, blocks in messages:
        pt = bytes((i * 7 + blocks) & 0xFF for i in range(16 * blocks))
        oracle = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ct = oracle.update(pt) + oracle.finalize()
        assert keyed.encrypt(iv, pt) == ct
        assert keyed.decrypt(iv, ct) == pt

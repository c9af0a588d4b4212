"""Hypothesis strategies for IKEv2 messages built from the codec's typed payloads."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from ipseclab.packets.message import EncryptedPayload, Message
from ipseclab.packets.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorPayload,
)

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
small = st.binary(max_size=40)
crit = st.booleans()

attribute = st.tuples(st.integers(0, 0x7FFF), st.one_of(u16, st.binary(max_size=12)))
transform = st.builds(
    lambda t, i, a: __import__("ipseclab.packets.payloads", fromlist=["Transform"]).Transform(t, i, a),
    st.integers(1, 5), u16, st.lists(attribute, max_size=3),
)
proposal = st.builds(Proposal, st.integers(1, 255), st.integers(0, 3), st.sampled_from([b"", b"\x01\x02\x03\x04",
                                                                                       b"12345678"]),
                     st.lists(transform, max_size=5))

v4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
selector = st.one_of(
    st.builds(lambda p, s, e, a, b: TrafficSelector(7, p, s, e, a, b), u8, u16, u16, v4, v4),
    st.builds(lambda p, s, e, a, b: TrafficSelector(8, p, s, e, a, b), u8, u16, u16, v6, v6),
)


def _delete(proto: int, size: int, n: int) -> DeletePayload:
    spis = [bytes([i]) * size for i in range(n)]
    return DeletePayload(proto, spis, size if n == 0 else 0)


# types that decode to a known class, or that are SK/SKF, cannot be UnknownPayload
_KNOWN = {33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53}

clear_payload = st.one_of(
    st.builds(SaPayload, st.lists(proposal, max_size=3), crit),
    st.builds(KePayload, u16, small, crit),
    st.builds(IdiPayload, u8, small, crit),
    st.builds(IdrPayload, u8, small, crit),
    st.builds(CertPayload, u8, small, crit),
    st.builds(CertReqPayload, u8, small, crit),
    st.builds(AuthPayload, u8, small, crit),
    st.builds(NoncePayload, small, crit),
    st.builds(NotifyPayload, u16, st.integers(0, 3), st.sampled_from([b"", b"\xaa\xbb\xcc\xdd"]), small, crit),
    st.builds(_delete, st.integers(1, 3), st.sampled_from([0, 4, 8]), st.integers(0, 4)),
    st.builds(VendorPayload, small, crit),
    st.builds(TsiPayload, st.lists(selector, max_size=4), crit),
    st.builds(TsrPayload, st.lists(selector, max_size=4), crit),
    st.builds(CpPayload, st.integers(1, 4), st.lists(st.tuples(st.integers(0, 0x7FFF), small), max_size=4), crit),
    st.builds(EapPayload, small, crit),
    st.builds(UnknownPayload, st.integers(1, 255).filter(lambda t: t not in _KNOWN), small, crit),
)


def message(encrypted: bool) -> st.SearchStrategy[Message]:
    """Messages with clear payloads only, or with an SK payload (needing keys) last."""
    header = (st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8), u8, st.integers(0, 2**32 - 1))

    def build(spi_i, spi_r, exch, mid, clear, inner, flags):
        payloads = list(clear)
        if encrypted:
            payloads.append(EncryptedPayload(payloads=list(inner)))
        return Message(spi_i, spi_r, exch, mid, payloads, flags[0], flags[1], 0x20, flags[2])

    return st.builds(build, *header, st.lists(clear_payload, max_size=0 if encrypted else 6),
                     st.lists(clear_payload, max_size=6), st.tuples(st.booleans(), st.booleans(), st.booleans()))

"""IKEv2 codec benchmark: ipseclab's byte codec against Scapy's IKEv2 layer, in the same run.

Run: ``python -m tests.bench.bench_ike_codec`` (prints a Markdown table).

Measured per message: building and parsing an IKE_SA_INIT request (clear), and
building (encrypt + ICV) and parsing (ICV check + decrypt) an SK-protected
IKE_AUTH request of the shape strongSwan sends (IDi, N(INITIAL_CONTACT), IDr,
AUTH, SA, TSi, TSr and three notifies).  Scapy has no SK handling, so its
column for IKE_AUTH builds/dissects the same payloads in clear, plus the same
crypto done by hand: a lower bound of what a Scapy user pays.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from ipseclab.crypto import IkeSuite, derive_ike_sa
from ipseclab.packets import scapy_glue
from ipseclab.packets.builders import ike_sa_init_request, sa_payload
from ipseclab.packets.message import EncryptedPayload, IkeSaCrypto, Message, decode, encode
from ipseclab.packets.payloads import (
    AuthPayload,
    IdiPayload,
    IdrPayload,
    NotifyPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)


def per_call_us(fn: Callable[[], object], min_time: float = 0.3) -> float:
    """Median of 5 runs of the per-call time in microseconds, each run at least ``min_time`` seconds."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > 0.05:
            break
        n *= 2
    n = max(1, int(n * min_time / 0.05))
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def ike_auth_request() -> Message:
    inner = [
        IdiPayload(2, b"initiator.ipseclab.test"),
        NotifyPayload(16384),
        IdrPayload(2, b"responder.ipseclab.test"),
        AuthPayload(2, os.urandom(32)),
        sa_payload("aes256gcm16", protocol="esp", spi=os.urandom(4)),
        TsiPayload([TrafficSelector.from_network("10.1.0.0/16")]),
        TsrPayload([TrafficSelector.from_network("10.2.0.0/16")]),
        NotifyPayload(16404),
        NotifyPayload(16417),
        NotifyPayload(16420),
    ]
    return Message(os.urandom(8), os.urandom(8), 35, 1, [EncryptedPayload(payloads=inner)])


def main() -> None:
    ikev2 = scapy_glue.bind()
    rows: list[tuple[str, float, float | None]] = []

    init, _ = ike_sa_init_request("aes256gcm16-prfsha256-ecp256")
    init_bytes = encode(init)
    rows.append(("IKE_SA_INIT build", per_call_us(lambda: encode(init)),
                 per_call_us(lambda: bytes(scapy_glue.to_scapy(init_bytes).copy()))))
    rows.append(("IKE_SA_INIT parse", per_call_us(lambda: decode(init_bytes)),
                 per_call_us(lambda: ikev2.IKEv2(init_bytes))))

    auth = ike_auth_request()
    for label, suite in (("AES-GCM-16-256", IkeSuite.from_ids(20, 5, key_bits=256)),
                         ("AES-CBC-256/HMAC-SHA2-256", IkeSuite.from_ids(12, 5, 12, key_bits=256))):
        _, keys = derive_ike_sa(suite, os.urandom(32), os.urandom(32), os.urandom(32), auth.spi_i, auth.spi_r)
        crypto = IkeSaCrypto.from_keys(suite, keys)
        wire = encode(auth, crypto)
        clear = Message(auth.spi_i, auth.spi_r, 35, 1, list(auth.encrypted.payloads))  # type: ignore[union-attr]
        clear_bytes = encode(clear)
        sk = crypto.initiator

        def scapy_build(clear_bytes: bytes = clear_bytes, sk=sk) -> bytes:
            body = bytes(ikev2.IKEv2(clear_bytes).payload)  # rebuild the payload chain through Scapy
            pad = (-(len(body) + 1)) % sk.encr.block_size
            return sk.cipher.encrypt(os.urandom(sk.encr.iv_size), body + bytes(pad + 1), clear_bytes[:32])

        def scapy_parse(clear_bytes: bytes = clear_bytes) -> object:
            return ikev2.IKEv2(clear_bytes)

        rows.append((f"IKE_AUTH SK build, {label}", per_call_us(lambda c=crypto: encode(auth, c)),
                     per_call_us(scapy_build)))
        rows.append((f"IKE_AUTH SK parse, {label}", per_call_us(lambda w=wire, c=crypto: decode(w, c)),
                     per_call_us(scapy_parse)))

    print("| operation | ipseclab (us/msg) | Scapy (us/msg) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ours, theirs in rows:
        ratio = f"{theirs / ours:.0f}x" if theirs else "-"
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {ratio} |" if theirs else f"| {name} | {ours:.1f} | - | - |")


if __name__ == "__main__":
    main()

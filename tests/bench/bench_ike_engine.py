"""IKEv2 engine benchmark: whole PSK handshakes (IKE_SA_INIT + IKE_AUTH + the first Child SA) in memory.

Run: ``python -m tests.bench.bench_ike_engine`` (prints a Markdown table).

An initiator and a responder ``IkeConnection`` are wired together in one process, as in the unit
tests, so the figure is the CPU cost of both ends of a handshake with no network.  Next to it, in
the same run, the reference: the same key exchange done twice (both ends' key pair and shared
secret, straight through ``cryptography``) — the part no engine can avoid — so the rest of the row
is what the engine itself costs (codec, SK payloads, PRF, AUTH, state).  Median of five runs.
"""

from __future__ import annotations

import statistics
import time
import warnings

from ipseclab.crypto import get_ke_group
from ipseclab.crypto.proposals import parse_proposal
from ipseclab.crypto.registry import TransformType
from ipseclab.ike import ChildSaEstablished, IkeConfig, loopback

SUITES = [
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16"),
    ("aes256gcm16-prfsha256-curve25519", "aes256gcm16"),
    ("aes128-sha256-modp2048", "aes128-sha256"),
    ("aes256-sha384-ecp384", "aes256-sha384-esn"),
]


def handshake(ike: str, esp: str) -> None:
    ci = IkeConfig("moon.example", "sun.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
    cr = IkeConfig("sun.example", "moon.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
    i, _ = loopback.handshake(ci, cr)
    assert i.of(ChildSaEstablished), i.events


def key_exchange_only(ike: str) -> None:
    group_id = next(s.id for s in parse_proposal(ike, "ike") if s.type == TransformType.KE)
    group = get_ke_group(group_id)
    a, b = group.generate(), group.generate()
    assert a.shared_secret(b.public_bytes) == b.shared_secret(a.public_bytes)


def per_call(fn: object, *args: str, n: int) -> float:
    """Median seconds per call over five runs of ``n`` calls, after one warm-up call."""
    fn(*args)  # type: ignore[operator]
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn(*args)  # type: ignore[operator]
        runs.append((time.perf_counter() - t) / n)
    return statistics.median(runs)


def main() -> None:
    # MODP groups are still IKEv2 methods; cryptography's general FFDH deprecation warning is noise here
    warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields")
    print("| IKE proposal | ESP proposal | handshakes/s | ms per handshake (both ends) "
          "| of which key exchange (reference) | engine's own share |")
    print("|---|---|---:|---:|---:|---:|")
    for ike, esp in SUITES:
        n = 5 if "modp" in ike else 40
        whole = per_call(handshake, ike, esp, n=n)
        ke = per_call(key_exchange_only, ike, n=n)
        print(f"| {ike} | {esp} | {1 / whole:,.0f} | {whole * 1e3:.2f} | {ke * 1e3:.2f} "
              f"| {(whole - ke) * 1e3:.2f} ms ({(whole - ke) / whole:.0%}) |", flush=True)


if __name__ == "__main__":
    main()

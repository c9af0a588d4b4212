"""IKEv2 engine benchmark: whole PSK handshakes (IKE_SA_INIT + IKE_AUTH + the first Child SA) in memory,
Child SA rekeys without PFS, and the memory an established IKE SA with one Child SA takes.

Run: ``python -m tests.bench.bench_ike_engine`` (prints Markdown tables; ``--count N`` for the memory run).

An initiator and a responder ``IkeConnection`` are wired together in one process, as in the unit
tests, so the figure is the CPU cost of both ends of a handshake with no network.  Next to it, in
the same run, the reference: the same key exchange done twice (both ends' key pair and shared
secret, straight through ``cryptography``) — the part no engine can avoid — so the rest of the row
is what the engine itself costs (codec, SK payloads, PRF, AUTH, state).  Median of five runs.

A Child SA rekey is the whole of it as the issue counts it: CREATE_CHILD_SA with REKEY_SA (no KE) and the
INFORMATIONAL that deletes the old pair, both ends; its reference is the KEYMAT both ends must derive
(prf+ over SK_d and the nonces).  Memory: 10,000 IKE SAs established in one process, each side keeping its
connection (one IKE SA, one Child SA) and nothing else; Python's heap (tracemalloc) and the process's
resident set (which also sees OpenSSL's cipher contexts) per connection.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
import warnings

from ipseclab.crypto import child_sa_keys, get_ke_group, get_prf
from ipseclab.crypto.proposals import parse_proposal
from ipseclab.crypto.registry import PrfId, TransformType
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


REKEY_SUITE = ("aes256gcm16-prfsha256-curve25519", "aes256gcm16")


class Rekeying:
    """One established pair that rekeys its Child SA again and again (the initiator asks, the responder answers)."""

    def __init__(self) -> None:
        ike, esp = REKEY_SUITE
        ci = IkeConfig("moon.example", "sun.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
        cr = IkeConfig("sun.example", "moon.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
        self.i, self.r = loopback.handshake(ci, cr)
        self.spi = next(iter(self.i.conn.children))

    def rekey(self) -> None:
        self.spi = self.i.conn.rekey_child(self.spi, 0.0)
        loopback.exchange(self.i, self.r)
        self.i.events.clear()
        self.r.events.clear()
        assert len(self.i.conn.children) == 1 and self.spi in self.i.conn.children


_PRF = get_prf(PrfId.HMAC_SHA2_256)


def keymat_only() -> None:
    """Both ends' KEYMAT for an AES-GCM-256 pair: the derivation a rekey cannot avoid."""
    for _ in range(2):
        child_sa_keys(_PRF, bytes(32), bytes(32), bytes(32), 36, 0)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _establish(count: int) -> list[object]:
    ike, esp = REKEY_SUITE
    ci = IkeConfig("moon.example", "sun.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
    cr = IkeConfig("sun.example", "moon.example", b"secret", ike_proposals=(ike,), esp_proposals=(esp,))
    kept: list[object] = []
    for _ in range(count):
        i, r = loopback.handshake(ci, cr)
        assert len(i.conn.child_sas()) == 1
        kept += [i.conn, r.conn]  # the connections only, not the loopback's event lists
    return kept


def memory_per_sa(count: int) -> tuple[float, float]:
    """(Python heap bytes, resident bytes) per established connection (IKE SA + one Child SA), ``count`` a side.

    Two runs: the resident set without tracemalloc (whose own bookkeeping would count), then the heap with it.
    """
    _establish(1)  # warm-up: imports, caches
    gc.collect()
    rss0 = _rss()
    kept = _establish(count)
    gc.collect()
    rss = _rss() - rss0
    del kept
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = _establish(count)
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(kept) == 2 * count
    return heap / (2 * count), rss / (2 * count)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000, help="IKE SAs for the memory figure")
    args = parser.parse_args()
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
    pair = Rekeying()
    rekey = per_call(pair.rekey, n=500)
    keymat = per_call(keymat_only, n=500)
    print()
    print("| Child SA rekey, no PFS | rekeys/s | ms per rekey (both ends, with the Delete of the old pair) "
          "| of which KEYMAT (reference) | engine's own share |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {REKEY_SUITE[0]} / {REKEY_SUITE[1]} | {1 / rekey:,.0f} | {rekey * 1e3:.3f} | {keymat * 1e3:.3f} "
          f"| {(rekey - keymat) * 1e3:.3f} ms ({(rekey - keymat) / rekey:.0%}) |", flush=True)
    heap, rss = memory_per_sa(args.count)
    print()
    print("| established connections (IKE SA + one Child SA) | Python heap per connection "
          "| resident set per connection |")
    print("|---:|---:|---:|")
    print(f"| {args.count:,} per side ({2 * args.count:,} in all) | {heap / 1024:.1f} KiB | {rss / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()

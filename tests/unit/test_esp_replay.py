"""Anti-replay (RFC 4303 3.4.3 and Appendix A) and ESN (RFC 4304), on the window alone and through SAs."""

from __future__ import annotations

import pytest

from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import ConfigError, IntegrityError, ReplayError, SequenceExhaustedError
from ipseclab.esp import AhSA, EspSA, ReplayWindow

TUN = ("198.51.100.1", "198.51.100.2")
INNER = bytes.fromhex("4500001c00010000401165cf0a0000010a000101003500350008ea72")  # IPv4/UDP, 28 bytes


def _accept(w: ReplayWindow, seq: int) -> None:
    w.check(seq)
    w.update(seq)


def test_in_order_packets_advance_the_window():
    w = ReplayWindow(64)
    for seq in range(1, 101):
        _accept(w, seq)
    assert w.top == 100 and w.bottom == 37


def test_duplicate_is_refused_and_check_changes_nothing():
    w = ReplayWindow(64)
    _accept(w, 1)
    _accept(w, 2)
    with pytest.raises(ReplayError, match="duplicate"):
        w.check(2)
    with pytest.raises(ReplayError, match="duplicate"):
        w.update(2)  # update re-checks: a caller that skipped check() stays safe
    assert w.top == 2 and w.seen(1) and w.seen(2)


def test_sequence_number_zero_is_never_valid():
    with pytest.raises(ReplayError, match="0 is never sent"):
        ReplayWindow(64).check(0)


def test_left_of_the_window_is_refused_and_its_edge_accepted():
    w = ReplayWindow(64)
    _accept(w, 100)
    with pytest.raises(ReplayError, match="left of the replay window"):
        w.check(36)  # 100 - 36 = 64: just outside
    _accept(w, 37)  # the bottom edge: inside


def test_out_of_order_inside_the_window():
    w = ReplayWindow(64)
    _accept(w, 100)
    for seq in (90, 99, 95, 40, 98):
        _accept(w, seq)
    assert w.top == 100
    for seq in (90, 99, 95, 40, 98, 100):
        with pytest.raises(ReplayError):
            w.check(seq)
    _accept(w, 91)


def test_window_advance_forgets_what_slid_out_and_keeps_what_stays():
    w = ReplayWindow(64)
    for seq in (100, 98):
        _accept(w, seq)
    _accept(w, 130)  # slides by 30: 100 and 98 still inside
    with pytest.raises(ReplayError):
        w.check(98)
    _accept(w, 99)
    _accept(w, 1000)  # jump far beyond the window: only 1000 is marked
    assert w.seen(1000) and not w.seen(999)
    _accept(w, 999)
    with pytest.raises(ReplayError, match="left"):
        w.check(130)


def test_zero_size_disables_the_check_but_tracks_the_top():
    w = ReplayWindow(0)
    for seq in (5, 5, 1, 5):
        _accept(w, seq)
    assert w.top == 5


@pytest.mark.parametrize("size", [2, 32, 64, 1024, 4096, 65536])
def test_any_size_catches_a_duplicate_at_its_far_edge(size):
    w = ReplayWindow(size)
    _accept(w, size + 10)
    _accept(w, 11)  # the last slot
    with pytest.raises(ReplayError):
        w.check(11)
    with pytest.raises(ReplayError, match="left"):
        w.check(10)


def test_a_one_packet_window_accepts_only_increasing_numbers():
    w = ReplayWindow(1)
    _accept(w, 5)
    with pytest.raises(ReplayError, match="left"):
        w.check(4)
    _accept(w, 6)


def test_bad_sizes_are_config_errors():
    for size in (-1, 2**31):
        with pytest.raises(ConfigError):
            ReplayWindow(size)


def test_memory_grows_with_the_window_size_in_bits():
    small, big = ReplayWindow(4096).memory_bytes(), ReplayWindow(65536).memory_bytes()
    assert small <= 4096 // 8 + 64  # a bit per packet and an int header
    assert 14 < big / small < 17


# --- ESN: the high-order bits inferred as in RFC 4303 Appendix A2.2 -------------------------------------


def _window_at(top: int, size: int = 64) -> ReplayWindow:
    w = ReplayWindow(size, esn=True)
    w.update(top)
    return w


def test_esn_case_a_window_inside_one_subspace():
    w = _window_at(2**32 - 10)  # Tl >= W - 1
    assert w.infer(2**32 - 30) == 2**32 - 30  # inside the window: Th
    assert w.infer(2**32 - 5) == 2**32 - 5  # right of it, same subspace
    assert w.infer(5) == 2**32 + 5  # below Bl: the next subspace (the sender wrapped)


def test_esn_case_b_window_spans_two_subspaces():
    w = _window_at(2**32 + 10)  # Th = 1, Tl = 10 < W - 1
    assert w.infer(2**32 - 20) == 2**32 - 20  # >= Bl: the previous subspace (Th - 1)
    assert w.infer(5) == 2**32 + 5
    assert w.infer(1000) == 2**32 + 1000


def test_esn_inference_at_the_start_stays_in_subspace_zero():
    w = ReplayWindow(64, esn=True)
    assert w.infer(1) == 1 and w.infer(2**32 - 1) == 2**32 - 1


def test_without_esn_inference_is_the_identity():
    assert ReplayWindow(64).infer(12345) == 12345


# --- through SAs --------------------------------------------------------------------------------------


def _pair(esn: bool = False, seq: int = 0, window: int = 64, **kw) -> tuple[EspSA, EspSA]:
    key = bytes(range(20))
    tx = EspSA(0x4242, EncrId.AES_GCM_16, key, tunnel=TUN, esn=esn, seq=seq, **kw)
    rx = EspSA(0x4242, EncrId.AES_GCM_16, key, tunnel=TUN, esn=esn, replay_window=window, **kw)
    return tx, rx


def test_sa_duplicate_is_dropped_and_counted():
    tx, rx = _pair()
    pkt = tx.protect(INNER)
    assert rx.unprotect(pkt) == INNER
    with pytest.raises(ReplayError):
        rx.unprotect(pkt)
    assert rx.counters.replay_drops == 1 and rx.counters.packets_in == 1


def test_sa_out_of_order_inside_the_window_and_left_of_it():
    tx, rx = _pair(window=32)
    pkts = [tx.protect(INNER) for _ in range(100)]
    rx.unprotect(pkts[99])
    rx.unprotect(pkts[80])  # seq 81, inside
    with pytest.raises(ReplayError, match="left"):
        rx.unprotect(pkts[50])  # seq 51 < 100 - 32 + 1
    assert rx.window.top == 100 and rx.counters.replay_drops == 1


def test_failed_icv_does_not_advance_the_window_nor_mark_the_slot():
    tx, rx = _pair()
    good = [tx.protect(INNER) for _ in range(3)]
    rx.unprotect(good[0])
    forged = bytearray(good[2])
    forged[-1] ^= 0x80
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(forged))
    assert rx.window.top == 1 and not rx.window.seen(3)
    assert rx.unprotect(good[2]) == INNER  # the genuine seq 3 is still accepted
    assert rx.unprotect(good[1]) == INNER
    assert rx.counters.integrity_failures == 1


def test_replay_is_checked_before_the_icv():
    """RFC 4303 3.4.3: a duplicate is dropped on its sequence number, whatever its ICV says."""
    tx, rx = _pair()
    pkt = tx.protect(INNER)
    rx.unprotect(pkt)
    forged = bytearray(pkt)
    forged[-1] ^= 1
    with pytest.raises(ReplayError):
        rx.unprotect(bytes(forged))
    assert rx.counters.integrity_failures == 0


def test_esn_wrap_across_2_32_in_order_and_out_of_order():
    tx, rx = _pair(esn=True, seq=2**32 - 4)
    pkts = {}
    for _ in range(6):  # 2^32-3 .. 2^32+2
        wire = tx.protect(INNER)
        pkts[tx.seq] = wire
    seqs = sorted(pkts)
    assert seqs[0] == 2**32 - 3 and seqs[-1] == 2**32 + 2
    order = [2**32 - 3, 2**32 + 1, 2**32 - 1, 2**32 - 2, 2**32, 2**32 + 2]  # reordered across the wrap
    for s in order:
        assert rx.unprotect(pkts[s]) == INNER
    assert rx.window.top == 2**32 + 2
    with pytest.raises(ReplayError):
        rx.unprotect(pkts[2**32 - 1])  # inferred into subspace 0 again: a duplicate there


def test_esn_wrong_high_bits_fail_the_icv_not_the_window():
    """A receiver whose window is a whole subspace behind infers the wrong Seqh: the ICV catches it."""
    tx, rx = _pair(esn=True, seq=2 * 2**32 + 100)
    rx.window.update(50)  # Th = 0, far from the sender's Th = 2
    with pytest.raises(IntegrityError):
        rx.unprotect(tx.protect(INNER))
    assert rx.window.top == 50


def test_sequence_exhaustion_without_esn_stops_the_sa():
    tx, rx = _pair(seq=2**32 - 2)
    last = tx.protect(INNER)
    assert last[24:28] == b"\xff\xff\xff\xff"  # 2^32-1 is the last one sent
    for _ in range(2):
        with pytest.raises(SequenceExhaustedError, match="rekeyed"):
            tx.protect(INNER)
    assert tx.seq == 2**32 - 1 and tx.counters.packets_out == 1
    assert rx.unprotect(last) == INNER


def test_esn_extends_the_counter_to_64_bits():
    tx, _ = _pair(esn=True, seq=2**32 - 1)
    tx.protect(INNER)
    assert tx.seq == 2**32
    tx.seq = 2**64 - 1
    with pytest.raises(SequenceExhaustedError):
        tx.protect(INNER)


def test_ah_replay_and_failed_icv():
    key = bytes(32)
    tx = AhSA(0x77, IntegId.HMAC_SHA2_256_128, key, mode="transport")
    rx = AhSA(0x77, IntegId.HMAC_SHA2_256_128, key, mode="transport")
    pkt = tx.protect(INNER)
    bad = bytearray(pkt)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(bad))
    assert rx.window.top == 0
    assert rx.unprotect(pkt) == INNER
    with pytest.raises(ReplayError):
        rx.unprotect(pkt)
    assert (rx.counters.integrity_failures, rx.counters.replay_drops) == (1, 1)

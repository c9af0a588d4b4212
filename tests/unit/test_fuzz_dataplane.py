"""CI fuzz suite (Hypothesis, bounded) of the data plane, the IKE codec and the capture and key-file readers.

The targets and their properties live in ``tests/fuzz/dataplane.py``, shared with the long run
(``python -m tests.fuzz.dataplane --seconds N``); here Hypothesis draws the inputs, so a failure
shrinks to a small one.  What each property means is said there; in short: only declared errors
escape, nothing unauthenticated moves an SA's window or any counter but one drop counter, the
genuine packet still gets in after any forgeries, the codec decrypts only authentic bytes, a broken
capture says where it broke, and memory stays bounded.

The existing properties of ``test_esp_properties.py`` (one mangled packet per fresh SA, the replay
window against a set model, ESN inference) and ``test_codec_properties.py`` (round trips, random and
corrupted synthetic messages) are not repeated: these add sequences of forgeries on a live SA, the
ESP-only and Scapy faces, authentic-but-hostile payloads, real strongSwan messages, captures and key files.
"""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.errors import IpsecLabError
from ipseclab.pcap.reader import MAX_RECORD, BadFrame, PcapFollower, read_ip
from tests.fuzz.dataplane import (
    ACCEPTED,
    FUTURE,
    ODD_NEXT_HEADERS,
    SaConfig,
    SaEpisode,
    capture_seeds,
    check_capture,
    check_ike,
    check_key_file,
    ike_seeds,
    inner_packets,
    key_file_seeds,
    mutate,
    pcap_frames,
    run_sa,
    sa_configs,
)

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

op = st.tuples(st.integers(0, 7), st.integers(0, 2**16), st.integers(0, 2**16), st.binary(min_size=1, max_size=40))
ops = st.lists(op, min_size=1, max_size=4)


@st.composite
def odd_payload(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """What a peer with the keys but a broken stack might encrypt: stubs, truncated and padded packets."""
    inner = draw(st.sampled_from(sorted(inner_packets().values())))
    payload = draw(st.one_of(
        st.binary(max_size=60),
        st.integers(0, len(inner)).map(lambda n: inner[:n]),
        st.binary(min_size=1, max_size=30).map(lambda tail: inner + tail),
    ))
    return "odd", payload, draw(st.sampled_from(ODD_NEXT_HEADERS))


sa_input = st.one_of(
    st.tuples(st.integers(0, ACCEPTED + FUTURE - 1), ops),  # a mutated seed
    st.tuples(st.integers(0, ACCEPTED + FUTURE - 1), st.just(())),  # a replay, or a packet not yet delivered
    st.binary(max_size=120),
    odd_payload(),
)
CONFIGS = sa_configs()
ESP_CONFIGS = [c for c in CONFIGS if not c.ah]
AH_CONFIGS = [c for c in CONFIGS if c.ah]


@settings(FUZZ, max_examples=250)
@given(config=st.sampled_from(ESP_CONFIGS), inputs=st.lists(sa_input, max_size=12))
def test_esp_sa_keeps_its_state_through_forgeries_and_takes_the_genuine_packet(config, inputs):
    run_sa(config, inputs)


@settings(FUZZ, max_examples=120)
@given(config=st.sampled_from(AH_CONFIGS), inputs=st.lists(sa_input, max_size=12))
def test_ah_sa_keeps_its_state_through_forgeries_and_takes_the_genuine_packet(config, inputs):
    run_sa(config, inputs)


def test_the_configurations_cover_every_path():
    """Fast path and general path, both modes, IPv4 and IPv6 outside, UDP, ESN across 2^32, all three faces."""
    esp = {(c.mode, c.outer, c.udp, c.esn, c.wrap, c.layer) for c in ESP_CONFIGS}
    assert ("tunnel", 4, False, False, False, "packet") in esp  # the inline AEAD path
    assert ("tunnel", 4, True, True, True, "packet") in esp
    assert ("transport", 6, False, True, True, "esp") in esp
    assert {c.layer for c in ESP_CONFIGS} == {"packet", "esp", "scapy"} and {c.layer for c in AH_CONFIGS} == {
        "packet", "scapy"}
    assert {c.suite for c in CONFIGS} >= {"gcm16", "chacha", "gmac", "cbc-sha256", "null-sha1", "ah-sha256"}


def test_a_receiving_sa_keeps_no_state_per_forged_packet():
    """Memory: 3,000 forged and odd packets leave a receiving SA (and the process) no bigger than before."""
    rng = random.Random(5)
    ep = SaEpisode(SaConfig("gcm16", "tunnel", 4, 4, True, True, True))
    forged = [mutate(ep.seeds[i % 10], [(0, rng.getrandbits(16), rng.getrandbits(8), b"")]) for i in range(3000)]
    odd = [ep.odd(rng.randbytes(rng.randrange(40)), 41) for _ in range(300)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for data in forged:
            ep.feed(data)
        for data in odd:
            if data is not None:
                ep.feed(data, authentic=True)
        ep.delivered.clear()  # the harness's own record of what was delivered is not the SA's
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 16_384, f"{grown} bytes kept after 3,300 packets"
    ep.finish()


# --- the IKE codec on real strongSwan messages ---------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(which=st.integers(0, 10_000), how=ops)
def test_mutated_strongswan_messages_raise_only_declared_errors_and_decrypt_only_when_authentic(which, how):
    seeds = ike_seeds()
    data, crypto = seeds[which % len(seeds)]
    check_ike(mutate(data, how, [d for d, _ in seeds]), crypto)


def test_every_strongswan_message_decrypts_unmodified():
    """The codec target's positive control: its seeds are authentic and decrypt."""
    assert sum(check_ike(data, crypto) for data, crypto in ike_seeds()) >= 20


# --- capture readers ---------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=120)
@given(which=st.integers(0, 100), how=st.lists(op, min_size=1, max_size=6))
def test_mutated_captures_are_read_to_the_end_or_to_a_stated_break(which, how):
    seeds = capture_seeds()
    check_capture(mutate(seeds[which % len(seeds)], how, seeds))


@settings(FUZZ, max_examples=150)
@given(head=st.sampled_from([b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(12) + b"\xe4\x00\x00\x00",
                             b"\xa1\xb2\x3c\x4d\x00\x02\x00\x04" + bytes(12) + b"\x00\x00\x00\x01",
                             b"\x0a\x0d\x0d\x0a", b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a", b"\x1f\x8b",
                             b""]),
       body=st.binary(max_size=600))
def test_random_bytes_after_a_capture_header_are_reported_not_fatal(head, body):
    check_capture(head + body, decrypt=False)


@pytest.mark.parametrize("which", range(0, 10, 3))
def test_every_prefix_of_a_capture_reads_what_is_whole_and_says_the_rest_is_truncated(which):
    data = capture_seeds()[which]
    whole = [x for x in read_ip(data)]
    ng = data[:4] == b"\x0a\x0d\x0d\x0a"
    ends, pos = {0 if ng else 24}, 0 if ng else 24  # where records (pcap) or blocks (pcapng) end
    while pos < len(data):
        step = int.from_bytes(data[pos + 4 : pos + 8], "little") if ng else None
        pos += step if step is not None else 16 + len(pcap_frames(data[:24] + data[pos:])[0])
        ends.add(pos)
    for cut in range(4 if ng else 24, len(data), 3):
        items = list(read_ip(data[:cut]))
        if cut in ends:
            assert items == whole[: len(items)]
            continue
        last = items[-1]
        assert isinstance(last, BadFrame) and last.reason.startswith("capture truncated"), (cut, last)
        assert items[:-1] == whole[: len(items) - 1]


def test_reading_a_hostile_capture_takes_bounded_memory():
    """Lengths that promise 4 GiB, and many maximal records: no record costs more than MAX_RECORD."""
    rng = random.Random(3)
    head = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(8) + b"\xff\xff\xff\xff\x01\x00\x00\x00"
    big = b"".join(bytes(8) + MAX_RECORD.to_bytes(4, "little") * 2 + rng.randbytes(MAX_RECORD) for _ in range(8))
    huge = bytes(8) + b"\xf0\xff\xff\xff" * 2 + rng.randbytes(1 << 20)
    ng_huge = b"\x0a\x0d\x0d\x0a\xf0\xff\xff\x7f\x4d\x3c\x2b\x1a" + rng.randbytes(1 << 20)
    for capture, reason in ((head + big + huge, "undecodable record 9"), (ng_huge, "undecodable block")):
        tracemalloc.start()
        try:
            items = list(read_ip(capture))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert isinstance(items[-1], BadFrame) and items[-1].reason.startswith(reason), items[-1]
        assert peak < 3 * MAX_RECORD, peak


@settings(FUZZ, max_examples=40)
@given(which=st.integers(0, 100), how=st.lists(op, min_size=1, max_size=4), split=st.integers(0, 4000))
def test_the_follower_on_a_mutated_capture_written_in_two_steps(tmp_path_factory, which, how, split):
    seeds = [s for s in capture_seeds() if s[:4] == b"\xd4\xc3\xb2\xa1"]
    data = mutate(seeds[which % len(seeds)], how)
    path = tmp_path_factory.mktemp("follow") / "live.pcap"
    path.write_bytes(data[:split])
    follower = PcapFollower(path)
    try:
        follower.read()
        path.write_bytes(data)
        follower.read()
    except IpsecLabError:
        pass


# --- key files ------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(which=st.integers(0, 100), how=st.lists(op, min_size=1, max_size=6))
def test_mutated_key_files_raise_only_declared_errors(which, how):
    seeds = key_file_seeds()
    kind, data = seeds[which % len(seeds)]
    check_key_file(kind, mutate(data, how))


@settings(FUZZ, max_examples=200)
@given(kind=st.sampled_from(["ike", "esp"]), text=st.text(max_size=300), raw=st.binary(max_size=100))
def test_random_key_files_raise_only_declared_errors(kind, text, raw):
    check_key_file(kind, text.encode("utf-8", "surrogatepass") + raw)


def test_the_key_file_seeds_parse():
    """Positive control: the seed tables' rows pass the checks ``ipseclab decrypt`` makes (the ChaCha20 table
    is comments only: Wireshark 4.0 cannot name it)."""
    assert [check_key_file(kind, data) for kind, data in key_file_seeds()] == [1, 1, 1, 1, 0, 5]

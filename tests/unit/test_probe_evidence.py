"""What a probe step waits for (probes.py): each packet's evidence, the victim's drop counters, the wait itself.

The waits replace fixed sleeps, so what they expect must match what the verdicts (testcases/verdicts.py) count:
every packet a verdict counts as dropped is a "drop" the step waits for, every echo that must get one more
reply is a "reply".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from ipseclab.esp.esp import EspSA
from ipseclab.pcap.reader import IpPacket
from ipseclab.probes import (
    ENDPOINT_DROPS,
    EVIDENCE_TIMEOUT,
    SETTLE,
    Sent,
    _access,
    _replay,
    _tfc,
    await_evidence,
    drop_count,
    esp_spi,
)

# --- each packet's evidence, from the probes themselves on a stand-in for the lab --------------------------


@dataclass
class _Run:
    window: int
    top: int = 10


@dataclass
class _Peer:
    host: object = None


@dataclass
class _Lab:
    def peer(self, side: str) -> _Peer:
        return _Peer()


@dataclass
class FakeProber:
    """What the probe functions use of ``_Prober``: an SA with made-up keys, the steps they would send."""

    window: int
    victim: str = "right"
    captured: dict[int, bytes] = field(default_factory=lambda: {1: b"c1", 2: b"c2", 3: b"c3", 4: b"c4"})
    steps: list[tuple[str, list[Sent]]] = field(default_factory=list)
    icmp_seq: int = 0
    lab: _Lab = field(default_factory=_Lab)

    def __post_init__(self) -> None:
        self.run = _Run(self.window)

    def sa(self, **kwargs: Any) -> EspSA:
        return EspSA(0x1234, 20, os.urandom(20), mode="tunnel", tunnel=("198.51.100.10", "198.51.100.20"), **kwargs)

    def ping(self, src: str | None = None) -> tuple[bytes, int]:
        self.icmp_seq += 1
        header = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0]) + bytes([203, 0, 113, 1, 203, 0, 113, 65])
        return header + bytes([8, 0, 0, 0, 0x1E, 0x13, 0, self.icmp_seq]), self.icmp_seq

    def step(self, name: str, packets: list[tuple[bytes, Sent]]) -> None:
        self.steps.append((name, [s for _, s in packets]))


def _evidence(pr: FakeProber) -> dict[str, list[str]]:
    return {name: [s.evidence for s in sent] for name, sent in pr.steps}


def test_replay_with_a_window_waits_for_each_replay_edge_and_forgery_to_be_counted() -> None:
    pr = FakeProber(window=32)
    _replay(pr)  # type: ignore[arg-type]
    assert _evidence(pr) == {
        "exact replays of captured packets": ["drop"] * 4,
        "reordered inside the window": ["reply"] * 4,
        "exact replay of a reordered ping": ["drop"],
        "window edges": ["reply", "reply", "drop"],
        "forged ICV far ahead": ["drop"],
        "after the forgery": ["reply"],
    }
    # what ReplayCase counts: replays (4 captured + 1) and the edge in XfrmInStateSeqError (or, with ESN, the edge
    # in XfrmInStateProtoError), the forgery in XfrmInStateProtoError: one drop a packet, replays + 2 in all
    drops = sum(s.evidence == "drop" for _, sent in pr.steps for s in sent)
    assert drops == (len(pr.captured) + 1) + 2


def test_replay_without_a_window_waits_for_the_replays_to_be_answered() -> None:
    pr = FakeProber(window=0)
    _replay(pr)  # type: ignore[arg-type]
    ev = _evidence(pr)
    assert ev["exact replays of captured packets"] == ["reply"] * 4
    assert ev["exact replay of a reordered ping"] == ["reply"]
    assert "window edges" not in ev and ev["forged ICV far ahead"] == ["drop"]
    # an evidence of a reply is exactly a packet whose echo gets one more reply in the trace
    for name, sent in pr.steps:
        for s in sent:
            assert (s.evidence == "reply") == (s.replies >= 1), (name, s)


@pytest.mark.parametrize(("window", "want"), [(32, ["drop"] * 4), (0, [""] * 4)])
def test_replays_toward_an_initiator_are_replies_judged_by_its_counters(window: int, want: list[str]) -> None:
    """Toward the initiator the captured packets are echo replies: counted as replays, or taken without a word."""
    pr = FakeProber(window=window, victim="left")
    _replay(pr)  # type: ignore[arg-type]
    first = pr.steps[0][1]
    assert [s.replies for s in first] == [-1] * 4
    assert [s.evidence for s in first] == want


def test_tfc_and_access_wait_for_the_drops_their_verdicts_count() -> None:
    tfc = FakeProber(window=32)
    _tfc(tfc)  # type: ignore[arg-type]
    assert _evidence(tfc) == {"TFC-padded ping": ["reply"], "dummy packets": ["drop"] * 3,
                              "ping after the dummies": ["reply"]}
    access = FakeProber(window=32)
    _access(access)  # type: ignore[arg-type]
    assert list(_evidence(access).values()) == [["reply"], ["drop"], ["drop"]]


def test_evidence_is_not_written_to_probe_json() -> None:
    assert "evidence" not in Sent("x", 1, 2, 1, evidence="reply").as_dict()


# --- the victim's drops -------------------------------------------------------------------------------------


def test_a_kernel_s_drops_are_its_inbound_xfrm_statistics() -> None:
    counters = {"source": "kernel", "sas": [{"spi": "0x1", "replay": 9}],
                "xfrm_stat": {"XfrmInStateSeqError": 5, "XfrmInStateProtoError": 2, "XfrmInNoPols": 1,
                              "XfrmInTmplMismatch": 1, "XfrmOutNoStates": 7, "XfrmFwdHdrError": 3}}
    assert drop_count(counters) == 9  # not the outbound or forwarding errors, not the SA's own counters
    assert drop_count({"source": "kernel", "error": "guest gone"}) == 0


def test_the_endpoint_s_drops_are_its_data_plane_s() -> None:
    dataplane = {name: 1 for name in ENDPOINT_DROPS} | {"packets_in": 50, "packets_out": 40, "dummies_out": 3,
                                                       "no_policy": 2, "checksum_fixed": 4}
    assert drop_count({"source": "ipseclab", "dataplane": dataplane}) == len(ENDPOINT_DROPS)


def _ip(proto: int, payload: bytes) -> IpPacket:
    return IpPacket(1, 0.0, "198.51.100.20", "198.51.100.10", proto, payload)


def test_esp_spi_plain_and_in_udp_but_not_ike() -> None:
    assert esp_spi(_ip(50, bytes.fromhex("c0ffee01 00000007") + bytes(16))) == 0xC0FFEE01
    udp = (4500).to_bytes(2, "big") * 2 + bytes(4)
    assert esp_spi(_ip(17, udp + bytes.fromhex("c0ffee01 00000007") + bytes(16))) == 0xC0FFEE01
    assert esp_spi(_ip(17, udp + bytes(4) + b"IKE header......")) is None  # the non-ESP marker
    assert esp_spi(_ip(17, (500).to_bytes(2, "big") * 2 + bytes(20))) is None
    assert esp_spi(_ip(1, bytes(20))) is None


# --- the wait ------------------------------------------------------------------------------------------------


class Clock:
    """A clock that moves only when slept on, and every sleep it saw."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _seen(values: list[int]) -> Any:
    """A reader that returns ``values`` in turn, then the last forever; how often it was asked."""
    calls = []

    def read() -> int:
        calls.append(1)
        return values[min(len(calls) - 1, len(values) - 1)]

    read.calls = calls  # type: ignore[attr-defined]
    return read


def test_the_wait_ends_with_the_evidence_then_settles() -> None:
    clock = Clock()
    replies, drops = _seen([0, 1, 2]), _seen([0, 1])
    got = await_evidence(2, 1, replies, drops, clock=clock, sleep=clock.sleep)
    assert got["complete"] and got["replies"] == [2, 2] and got["drops"] == [1, 1]
    assert len(replies.calls) == 3
    assert len(drops.calls) == 2  # the counters (a command in the guest) only once the replies were in
    assert clock.sleeps[-1] == SETTLE and got["seconds"] < 0.1


def test_a_step_with_nothing_to_wait_for_only_settles() -> None:
    clock = Clock()
    replies, drops = _seen([5]), _seen([5])
    got = await_evidence(0, 0, replies, drops, clock=clock, sleep=clock.sleep)
    assert got["complete"] and clock.sleeps == [SETTLE]
    assert not replies.calls and not drops.calls


def test_a_victim_that_answers_instead_of_dropping_makes_the_step_wait_out_its_bound() -> None:
    """A replay answered (no drop counted): the wait gives up after EVIDENCE_TIMEOUT and says so; the verdict
    then finds the reply in the capture (test_verdicts: test_replay_fails_when_a_dropped_ping_was_answered)."""
    clock = Clock()
    got = await_evidence(0, 1, _seen([1]), _seen([0]), clock=clock, sleep=clock.sleep)
    assert not got["complete"] and got["drops"] == [0, 1]
    assert EVIDENCE_TIMEOUT <= got["seconds"] < EVIDENCE_TIMEOUT + 0.1
    assert clock.sleeps[-1] == SETTLE

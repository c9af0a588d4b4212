"""The lifecycle steps that end on evidence: ``Until`` reading a capture's clear headers as it grows, pings
stopped once the steps are done (their last echoes left out of the loss count), and the checks on such
records.  The captures are four lab runs' (``tests/vectors/lifecycle_child_rekey``: strongSwan rekeying the
Child SA twice, frames 73-76 and 135-138; ``lifecycle_ike_rekey``: an IKE SA rekey, frames 77-82, then a
Child SA rekey on the new IKE SA, frames 113-116; ``lifecycle_dpd_restart``: strongSwan's liveness checks to a
Libreswan killed and started again, frames 21, 25 and 34, then its new IKE SA, frames 45-48, and ESP on new
SPIs from frames 49 and 50; ``lifecycle_dpd_restart_libreswan``: Libreswan restarting toward a strongSwan
killed and started again, its new IKE SA in frames 50-53 and a second Child SA on it at once, frames 54-55,
which carries the pings); Wireshark's reading of them is the oracle for where each exchange is, and a
capture cut before an exchange must not show it done."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from ipseclab.errors import CheckFailed
from ipseclab.interop_steps import settled_echoes
from ipseclab.interop_wire import (
    Wire,
    child_rekey_done,
    collision_done,
    ike_rekey_done,
    responder_link,
    restart_done,
)
from ipseclab.testcases.lifecycle import CHILD_REKEY_INITIATOR, DPD_RESTART
from ipseclab.testcases.lifecycle_checks import check_pings_answered, traffic_span

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CHILD = VECTORS / "lifecycle_child_rekey"
IKE = VECTORS / "lifecycle_ike_rekey"
RESTART = VECTORS / "lifecycle_dpd_restart"
RESTART_CHILD = VECTORS / "lifecycle_dpd_restart_libreswan"
SIDES = {"left": ["198.51.100.10"], "right": ["198.51.100.20"]}


def _frames(pcap: Path) -> tuple[bytes, list[tuple[float, bytes]]]:
    """A classic little-endian pcap's header and its records (time, whole record)."""
    data = pcap.read_bytes()
    head, pos, out = data[:24], 24, []
    while pos + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        out.append((sec + usec / 1e6, data[pos : pos + 16 + caplen]))
        pos += 16 + caplen
    return head, out


def _cut(pcap: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames of ``pcap``, as tcpdump had written them by then."""
    head, records = _frames(pcap)
    out.write_bytes(head + b"".join(r for _, r in records[:frames]))
    return out


def _time(pcap: Path, frame: int) -> float:
    return _frames(pcap)[1][frame - 1][0]


def _wire(pcap: Path) -> Wire:
    wire = Wire(pcap, SIDES)
    wire.poll()
    return wire


def test_a_child_rekey_is_done_at_the_later_of_its_delete_and_new_esp_both_ways(tmp_path: Path):
    wire = _wire(CHILD / "left-right.pcap")
    done = child_rekey_done(wire, "left", 0.0)
    delete_answered = _time(CHILD / "left-right.pcap", 76)
    assert done is not None and done >= delete_answered
    # ESP on SPIs not seen before the request, both ways, by then; none of them before the response
    old = {p.spi for p in wire.esp if p.time < _time(CHILD / "left-right.pcap", 73)}
    new = [p for p in wire.esp if p.spi not in old and p.time <= done]
    assert len({(p.src, p.dst) for p in new}) == 2
    assert all(p.time > _time(CHILD / "left-right.pcap", 74) for p in new)
    # the second rekey is the next one; none after it, and none by the other side
    second = child_rekey_done(wire, "left", done)
    assert second is not None and second >= _time(CHILD / "left-right.pcap", 138)
    assert child_rekey_done(wire, "left", second) is None
    assert child_rekey_done(wire, "right", 0.0) is None


@pytest.mark.parametrize(("frames", "why"), [(72, "no request yet"), (74, "answered, no Delete yet"),
                                             (75, "Delete not answered yet")])
def test_a_child_rekey_cut_short_is_not_done(tmp_path: Path, frames: int, why: str):
    assert child_rekey_done(_wire(_cut(CHILD / "left-right.pcap", frames, tmp_path / "cut.pcap")), "left", 0.0) \
        is None, why


def test_a_growing_capture_is_read_as_far_as_it_goes(tmp_path: Path):
    """The Wire follows the file tcpdump writes: a rekey shows done once the frames that prove it are in."""
    head, records = _frames(CHILD / "left-right.pcap")
    live = tmp_path / "live.pcap"
    live.write_bytes(head + b"".join(r for _, r in records[:75]))
    wire = Wire(live, SIDES)
    wire.poll()
    assert child_rekey_done(wire, "left", 0.0) is None
    with live.open("ab") as f:
        f.write(b"".join(r for _, r in records[75:100]))
    wire.poll()
    assert child_rekey_done(wire, "left", 0.0) == child_rekey_done(_wire(CHILD / "left-right.pcap"), "left", 0.0)


def test_an_ike_rekey_is_done_when_the_old_sas_delete_is_answered(tmp_path: Path):
    pcap = IKE / "left-right.pcap"
    wire = _wire(pcap)
    done = ike_rekey_done(wire, "left", 0.0)
    assert done == pytest.approx(_time(pcap, 82))
    assert ike_rekey_done(wire, "right", 0.0) is None
    assert ike_rekey_done(_wire(_cut(pcap, 80, tmp_path / "cut.pcap")), "left", 0.0) is None
    # the Child SA rekey after it, on the new IKE SA: found after the IKE rekey's end, not before it
    child = child_rekey_done(wire, "left", done)
    assert child is not None and child >= _time(pcap, 116)


def test_no_collision_without_a_request_from_each_side():
    assert collision_done(_wire(CHILD / "left-right.pcap"), "left", 0.0) is None


def test_the_responder_link_is_the_one_the_checks_read():
    assert responder_link(["left-nat", "nat-right"]) == "nat-right"
    assert responder_link(["left-right"]) == "left-right"
    assert responder_link(["b", "a"]) == "a"


# --- stopped pings ---------------------------------------------------------------------------------


PING_LOG = """PING 203.0.113.65 (203.0.113.65) from 203.0.113.1 : 56(84) bytes of data.
64 bytes from 203.0.113.65: icmp_seq=1 ttl=64 time=1.82 ms
64 bytes from 203.0.113.65: icmp_seq=2 ttl=64 time=0.42 ms
64 bytes from 203.0.113.65: icmp_seq=2 ttl=64 time=0.50 ms (DUP!)
From 203.0.113.1 icmp_seq=3 Destination Host Unreachable
64 bytes from 203.0.113.65: icmp_seq=4 ttl=64 time=0.51 ms
64 bytes from 203.0.113.65: icmp_seq=9 ttl=64 time=0.51 ms

--- 203.0.113.65 ping statistics ---
10 packets transmitted, 5 received, +1 duplicates, +1 errors, 50% packet loss, time 1802ms
"""


def test_a_stopped_pings_last_echoes_are_not_counted_nor_errors_and_duplicates_as_answers():
    # 0.5 s at 0.2 s: the last 3 of 10 are still on their way; of seqs 1-7, 1, 2 and 4 were answered
    assert settled_echoes(PING_LOG, 10, 0.2, 0.5) == {"drain": 0.5, "settled_transmitted": 7, "settled_received": 3}
    # a Delay's 4 s round trip on top: only the first 0 of 10 (nothing to judge)
    assert settled_echoes(PING_LOG, 10, 0.2, 4.5)["settled_transmitted"] == 0


def _stopped(sent: int, got: int, **kw: object) -> dict[str, object]:
    return {"step": "Ping", "start": 100.0, "seconds": 30, "stopped": 105.0, "drain": 0.5, "transmitted": sent + 3,
            "received": got, "settled_transmitted": sent, "settled_received": got, "summary": "x", **kw}


def test_a_stopped_ping_is_judged_on_its_settled_echoes_and_its_span_ends_before_its_drain():
    check_pings_answered({"steps": [_stopped(20, 17)]})  # 15% lost
    with pytest.raises(CheckFailed, match=r"stopped: 15 of the 20 echoes .* \(more than 20% lost\)"):
        check_pings_answered({"steps": [_stopped(20, 15)]})
    with pytest.raises(CheckFailed, match="more than 20% lost"):
        check_pings_answered({"steps": [_stopped(0, 0)]})  # stopped before any echo could be answered
    assert traffic_span({"steps": [_stopped(20, 20)]}, None) == (101.0, 104.5)  # type: ignore[arg-type]
    natural = {"step": "Ping", "start": 100.0, "seconds": 7}
    assert traffic_span({"steps": [natural]}, None) == (101.0, 106.0)  # type: ignore[arg-type]


@pytest.mark.tshark
def test_the_child_rekey_check_fails_on_a_run_cut_before_the_rekey_or_its_delete(tmp_path: Path):
    """The runner stops the pings once the wire shows the rekey done; had it stopped (or the daemon not rekeyed)
    before, the check on the decrypted trace fails and names what is missing."""
    from ipseclab.pcap.trace import Trace

    for name in ("esp_sa", "ikev2_decryption_table"):
        shutil.copy(CHILD / name, tmp_path / name)
    record = json.loads((CHILD / "steps.json").read_text())
    ping = record["steps"][0]
    for frames, stop, pattern in ((70, 72, "no decrypted CREATE_CHILD_SA with REKEY_SA"),
                                  (74, 74, "no traffic on the new Child SA in both directions")):
        _cut(CHILD / "left-right.pcap", frames, tmp_path / "left-right.pcap")
        stopped = _time(CHILD / "left-right.pcap", stop)
        ping.update(stopped=stopped, **settled_echoes("", 0, 0.2, 0.5))
        (tmp_path / "steps.json").write_text(json.dumps(record))
        with pytest.raises(CheckFailed, match=pattern):
            CHILD_REKEY_INITIATOR.check(Trace.load(tmp_path))


def test_keys_collected_again_after_the_cell_cover_an_ike_sa_that_came_up_as_it_ended(tmp_path: Path):
    """The live collection read the capture before the Child SA rekey on the rekeyed IKE SA (frame 113, the first
    message on its SPIs) was in; the collection after the halt reads the whole capture and adds its row."""
    from types import SimpleNamespace

    from ipseclab.lab.impls.strongswan import parse_charon_log
    from ipseclab.lab.lab import Lab
    from ipseclab.pcap.keyfiles import read_ikev2_decryption_table

    side_dir = tmp_path / "left"
    side_dir.mkdir()
    log = (IKE / "strongswan-charon.log").read_text()
    driver = SimpleNamespace(ike_keys=lambda d: parse_charon_log(log))
    lab = Lab.__new__(Lab)
    lab.run_dir, lab.ike_rows, lab.xfrm = tmp_path, [], {}
    lab.peers = {"left": SimpleNamespace(side="left", driver=driver, host=SimpleNamespace(dir=side_dir, alive=False))}
    pcap = tmp_path / "left-right.pcap"
    lab.captures = [SimpleNamespace(pcap=pcap)]
    _cut(IKE / "left-right.pcap", 112, pcap)
    lab._collect_keys()
    assert len(read_ikev2_decryption_table(tmp_path / "ikev2_decryption_table")) == 1
    shutil.copy(IKE / "left-right.pcap", pcap)
    lab._collect_keys(live=False)
    assert read_ikev2_decryption_table(tmp_path / "ikev2_decryption_table") == \
        read_ikev2_decryption_table(IKE / "ikev2_decryption_table")


def test_a_restart_is_done_when_a_new_ike_sa_carries_esp_both_ways_and_the_first_ike_sa_is_not_one(tmp_path: Path):
    pcap = RESTART / "left-right.pcap"
    assert restart_done(_wire(pcap), "left", 0.0) == _time(pcap, 50)  # the first IKE SA's IKE_AUTH (frame 8) is not
    assert restart_done(_wire(pcap), "right", 0.0) is None
    for frames in (44, 48, 49):  # before the new IKE SA; its IKE_AUTH answered, no ESP yet; ESP one way only
        assert restart_done(_wire(_cut(pcap, frames, tmp_path / f"cut{frames}.pcap")), "left", 0.0) is None


def test_the_dpd_restart_check_passes_on_the_run_and_fails_on_it_cut_before_the_new_ike_sa(tmp_path: Path):
    from ipseclab.pcap.trace import Trace

    DPD_RESTART.check(Trace.load(RESTART))
    for name in ("esp_sa", "ikev2_decryption_table", "steps.json"):
        shutil.copy(RESTART / name, tmp_path / name)
    for frames, pattern in ((46, "set up no new IKE SA after the kill"), (24, "was never retransmitted"),
                            (49, "Child SAs .* did not carry pings both ways")):
        _cut(RESTART / "left-right.pcap", frames, tmp_path / "left-right.pcap")
        with pytest.raises(CheckFailed, match=pattern):
            DPD_RESTART.check(Trace.load(tmp_path))


def test_the_dpd_restart_check_takes_the_pings_on_any_child_sa_of_the_new_ike_sa():
    """Libreswan 4.10 as the initiator made a second Child SA on its new IKE SA at once and moved the pings there."""
    from ipseclab.pcap.trace import Trace

    DPD_RESTART.check(Trace.load(RESTART_CHILD))
    pcap = RESTART_CHILD / "left-right.pcap"
    assert restart_done(_wire(pcap), "left", 0.0) == _time(pcap, 57)  # new ESP both ways: frames 56 and 57

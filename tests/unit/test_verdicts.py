"""The verdict cases (testcases/verdicts.py) against recorded lab runs, and the suite's own failure type.

The recorded runs in ``pcaps/verdicts/`` are whole interop cells (strongSwan 5.9.8 and Libreswan 4.10
under UML 7.2.7, see its README): the pcap, the key files the run wrote, the probe's record with the
victim's kernel counters around each step, and every peer's counters before teardown.  So the
expectations the checks hold are the kernel's and Wireshark's, not ipseclab's; the doctored
copies show each check failing when the evidence says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.errors import CheckFailed
from ipseclab.interop import counters_summary
from ipseclab.lab.impls.contract import kernel_counters
from ipseclab.lab.inject import macs_from_capture
from ipseclab.lab.keys import parse_xfrm_stat
from ipseclab.pcap.trace import IpsecPacket, LinkTrace, Trace
from ipseclab.testcases import by_name
from ipseclab.testcases.verdicts import KE_RETRY, REPLAY, TFC

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "pcaps" / "verdicts"
RECORDED = sorted(p.name for p in RUNS.iterdir() if p.is_dir())


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(RUNS / name, dst)
    return dst


def _bad_icv_trace() -> Trace:
    pkts = [IpsecPacket(frame=n, src="198.51.100.10", dst="198.51.100.20", proto="esp", spi=0x1000 + n % 2, seq=n,
                        udp_encap=False, udp_port=None, icv_good=False, decrypted=True, inner=("ip", "icmp"))
            for n in range(1, 9)]
    return Trace(Path("/nonexistent"), [], [], {"left-right": LinkTrace("left-right", Path("x.pcap"), [], pkts)})


@pytest.mark.parametrize("optimize", [False, True])
def test_a_bad_cell_fails_under_python_O(optimize: bool) -> None:
    """``python -O`` strips ``assert``: the checks must still fail a bad trace (here: ESP ICVs Wireshark rejected)."""
    script = (
        "import sys\n"
        "from tests.unit.test_verdicts import _bad_icv_trace\n"
        "from ipseclab.testcases.base import check_ipsec_traffic\n"
        "from ipseclab.testcases.modes import ESP_TUNNEL\n"
        "from ipseclab.errors import CheckFailed\n"
        "print('optimize', sys.flags.optimize)\n"
        "try:\n"
        "    check_ipsec_traffic(_bad_icv_trace(), ESP_TUNNEL)\n"
        "except CheckFailed as exc:\n"
        "    print('FAILED', exc)\n"
        "else:\n"
        "    print('PASSED')\n"
    )
    out = subprocess.run([sys.executable, *(["-O"] if optimize else []), "-c", script], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"optimize {int(optimize)}" in out
    assert "FAILED ESP ICV not verified by Wireshark at frame 1" in out


def test_no_bare_assert_in_the_cases_and_the_runner() -> None:
    for path in [*(ROOT / "testcases").glob("*.py"), ROOT / "ipseclab" / "interop.py", ROOT / "ipseclab" / "probes.py"]:
        lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith("assert ")]
        assert not lines, f"{path.name}: bare assert on lines {lines}"


@pytest.mark.tshark
@pytest.mark.parametrize("run", RECORDED)
def test_recorded_run_passes_its_case(run: str) -> None:
    case = by_name(run.split("--")[0])
    case.check(Trace.load(RUNS / run))


@pytest.mark.tshark
def test_replay_fails_when_the_kernel_did_not_count_the_replays(tmp_path: Path) -> None:
    run = _copy("replay--strongswan-to-libreswan", tmp_path)
    probe = json.loads((run / "probe.json").read_text())
    last = probe["steps"][-1]["after"]
    for sa in last["sas"]:
        if sa["spi"] == probe["spi_in"]:
            sa["replay"] = 0
    (run / "probe.json").write_text(json.dumps(probe))
    with pytest.raises(CheckFailed, match="replay rose by 0, expected 5"):
        REPLAY.check(Trace.load(run))


@pytest.mark.tshark
def test_replay_fails_when_a_dropped_ping_was_answered(tmp_path: Path) -> None:
    """Declare the window's new top (which the kernel answered) a packet that must be dropped."""
    run = _copy("replay--strongswan-to-libreswan", tmp_path)
    probe = json.loads((run / "probe.json").read_text())
    edges = next(s for s in probe["steps"] if s["step"] == "window edges")["sent"]
    edges[0]["replies"] = 0
    (run / "probe.json").write_text(json.dumps(probe))
    with pytest.raises(CheckFailed, match="got 1 echo replies, expected 0"):
        REPLAY.check(Trace.load(run))


@pytest.mark.tshark
def test_window_0_run_fails_the_window_32_case() -> None:
    case = dataclasses.replace(REPLAY, name="replay-window-0")
    with pytest.raises(CheckFailed, match="replay window 0"):
        case.check(Trace.load(RUNS / "replay-window-0--libreswan-to-strongswan"))


@pytest.mark.tshark
def test_tfc_fails_when_the_victim_pads_less_than_promised() -> None:
    case = dataclasses.replace(TFC, tfc_padding=1300)
    with pytest.raises(CheckFailed, match="not TFC-padded to 1300 bytes"):
        case.check(Trace.load(RUNS / "tfc--libreswan-to-strongswan"))


@pytest.mark.tshark
def test_access_control_fails_when_the_policy_counter_did_not_move(tmp_path: Path) -> None:
    run = _copy("access-control--strongswan-to-libreswan", tmp_path)
    probe = json.loads((run / "probe.json").read_text())
    clear = next(s for s in probe["steps"] if s["step"].startswith("ping in the clear"))
    clear["after"]["xfrm_stat"]["XfrmInTmplMismatch"] = clear["before"]["xfrm_stat"]["XfrmInTmplMismatch"]
    (run / "probe.json").write_text(json.dumps(probe))
    with pytest.raises(CheckFailed, match="XfrmInTmplMismatch rose by 0, expected 1"):
        by_name("access-control").check(Trace.load(run))


@pytest.mark.tshark
def test_refusals_fail_on_another_refusal_s_capture() -> None:
    other = Trace.load(RUNS / "refuse-no-proposal--libreswan-to-strongswan")
    with pytest.raises(CheckFailed, match="no INVALID_KE_PAYLOAD"):
        KE_RETRY.check(other)


def test_counters_summary_names_the_drops() -> None:
    text = counters_summary(RUNS / "replay--strongswan-to-libreswan")
    assert text.startswith(" | counters: left (strongswan): ")
    assert "right (libreswan): XfrmInStateProtoError=1, XfrmInStateSeqError=6" in text
    assert "replay-window=1 replay=5 failed=1" in text


XFRM_STATE = """src 198.51.100.10 dst 198.51.100.20
\tproto esp spi 0x71f32f10(1911762704) reqid 16393(0x00004009) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec esn (0x10100000)
\tauth-trunc hmac(sha256) 0x5281501fcf9adc1e8c87b4992dafa79084d137ffa5f87b1862ec8ac01ce81fec (256 bits) 128
\tenc cbc(aes) 0xf6411773b254014d5b8a05cc6bece782 (128 bits)
\tanti-replay esn context:
\t seq-hi 0x0, seq 0x58, oseq-hi 0x0, oseq 0x0
\t replay_window 64, bitmap-length 2
\t 00000000 00c00000
\tlifetime current:
\t  924(bytes), 11(packets)
\tstats:
\t  replay-window 0 replay 5 failed 2
"""
XFRM_STAT = "XfrmInError             \t0\nXfrmInStateSeqError     \t5\nXfrmInNoPols            \t1\n"


class _Guest:
    def exec(self, script: str, check: bool = True, timeout: float = 30) -> tuple[int, str]:
        assert "ip -s xfrm state" in script and "/proc/net/xfrm_stat" in script
        return 0, XFRM_STATE + "=== xfrm_stat\n" + XFRM_STAT


def test_kernel_counters_from_a_guest() -> None:
    """Text from a Libreswan victim's guest (iproute2 6.1, UML 7.2.7) after the replay-esn probe."""
    c = kernel_counters(_Guest())
    assert c["xfrm_stat"] == {"XfrmInError": 0, "XfrmInStateSeqError": 5, "XfrmInNoPols": 1}
    (sa,) = c["sas"]
    assert sa["spi"] == "0x71f32f10" and sa["esn"] and sa["replay_window"] == 64
    assert (sa["replay"], sa["failed"], sa["seq"], sa["packets"]) == (5, 2, 0x58, 11)
    assert parse_xfrm_stat("junk\nXfrmOutNoStates 3 extra\n") == {}


def test_macs_from_the_capture() -> None:
    pcap = RUNS / "replay--strongswan-to-libreswan" / "left-right.pcap"
    right = macs_from_capture(pcap, "198.51.100.20")
    left = macs_from_capture(pcap, "198.51.100.10")
    assert right is not None and left is not None
    assert right == (left[1], left[0]) and right[0] != right[1]
    assert macs_from_capture(pcap, "198.51.100.99") is None


def test_which_cells_run() -> None:
    """Decided before anything boots, in the drivers' words."""
    from ipseclab.interop import case_configs, unsupported_reason
    from ipseclab.lab.topology import make_topology
    from ipseclab.testcases.verdicts import REPLAY_INITIATOR

    assert unsupported_reason(REPLAY, "strongswan", "libreswan") is None
    assert unsupported_reason(REPLAY, "ipseclab", "strongswan") is None  # ipseclab injects, strongSwan is the victim
    # the endpoint as the victim: its status answer and esp_sa file, its own counters
    assert unsupported_reason(REPLAY, "strongswan", "ipseclab") is None
    assert unsupported_reason(REPLAY_INITIATOR, "ipseclab", "strongswan") is None
    assert unsupported_reason(TFC, "libreswan", "ipseclab") is None
    from ipseclab.lab.impls import driver

    assert driver("ipseclab").probe_refusal == "" and driver("openiked").probe_refusal
    init, resp = case_configs(TFC, make_topology("direct", "t"))
    assert (init.tfc_padding, resp.tfc_padding) == (0, 1200)
    init, resp = case_configs(KE_RETRY, make_topology("direct", "t"))
    assert (init.ike_proposals, resp.ike_proposals) == (("aes256-sha256-ecp256-modp2048",), ("aes256-sha256-modp2048",))


def test_tfc_padding_in_each_renderer() -> None:
    """strongSwan's child ``tfc_padding`` and Libreswan's conn ``tfc=`` (both daemons loaded these in the tfc cells)."""
    from ipseclab.errors import ConfigError
    from ipseclab.lab.impls import driver
    from ipseclab.lab.impls.libreswan import render_ipsec_conf
    from ipseclab.lab.impls.strongswan import render_swanctl_conf
    from ipseclab.lab.peerconfig import PeerConfig

    cfg = PeerConfig("lab", "198.51.100.10", "198.51.100.20", "psk", local_ts="203.0.113.0/26",
                     remote_ts="203.0.113.64/26", tfc_padding=1200)
    assert "            tfc_padding = 1200\n" in render_swanctl_conf(cfg)
    assert "\ttfc=1200\n" in render_ipsec_conf(cfg, log_path="/ipl/pluto.log")
    plain = dataclasses.replace(cfg, tfc_padding=0)
    assert "tfc" not in render_swanctl_conf(plain) and "tfc" not in render_ipsec_conf(plain, log_path="/x")
    driver("ipseclab").check_supported(cfg)  # the endpoint pads too (tests/unit/test_endpoint_dataplane.py)
    with pytest.raises(ConfigError, match="tfc_padding: TFC padding needs ESP in tunnel mode"):
        PeerConfig("lab", "198.51.100.10", "198.51.100.20", "psk", mode="transport", tfc_padding=1200)


# --- the ipseclab endpoint as the victim: its own status counters around each step --------------------------


def _doctor(tmp_path: Path, run: str, change) -> Trace:
    path = _copy(run, tmp_path)
    probe = json.loads((path / "probe.json").read_text())
    change(probe)
    (path / "probe.json").write_text(json.dumps(probe))
    return Trace.load(path)


@pytest.mark.tshark
def test_an_ipseclab_victim_fails_replay_esn_if_it_took_the_edge_for_a_forgery(tmp_path: Path) -> None:
    """With ESN, H-W fails its ICV in the next subspace; ipseclab must recognise it as a replay (not as Linux)."""
    def change(probe: dict) -> None:
        sa = probe["steps"][-1]["after"]["child_sas"][probe["spi_in"]]["in"]
        sa["replay_drops"] -= 1
        sa["integrity_failures"] += 1

    trace = _doctor(tmp_path, "replay-esn--strongswan-to-ipseclab", change)
    with pytest.raises(CheckFailed, match=r"in\.replay_drops rose by 5, expected 6; in\.integrity_failures rose by 2"):
        by_name("replay-esn").check(trace)


@pytest.mark.tshark
def test_an_ipseclab_victim_fails_tfc_if_a_dummy_reached_its_tun_device(tmp_path: Path) -> None:
    def change(probe: dict) -> None:
        next(s for s in probe["steps"] if s["step"] == "dummy packets")["after"]["dataplane"]["packets_in"] += 1

    with pytest.raises(CheckFailed, match=r"dataplane\.packets_in rose by 1, expected 0"):
        TFC.check(_doctor(tmp_path, "tfc--libreswan-to-ipseclab", change))


@pytest.mark.tshark
def test_tfc_fails_if_the_other_kernel_did_not_drop_the_ipseclab_victims_dummies(tmp_path: Path) -> None:
    def change(probe: dict) -> None:
        s = next(s for s in probe["steps"] if s["step"] == "dummy packets from the victim")
        s["peer_after"]["xfrm_stat"]["XfrmInStateProtoError"] = s["peer_before"]["xfrm_stat"]["XfrmInStateProtoError"]

    with pytest.raises(CheckFailed, match="XfrmInStateProtoError rose by 0, expected 3"):
        TFC.check(_doctor(tmp_path, "tfc--libreswan-to-ipseclab", change))


@pytest.mark.tshark
def test_access_control_fails_if_the_ipseclab_victim_did_not_drop_the_clear_ping(tmp_path: Path) -> None:
    def change(probe: dict) -> None:
        s = next(s for s in probe["steps"] if s["step"].startswith("ping in the clear"))
        s["after"]["dataplane"]["clear_dropped"] = s["before"]["dataplane"]["clear_dropped"]

    with pytest.raises(CheckFailed, match=r"dataplane\.clear_dropped rose by 0, expected 1"):
        by_name("access-control").check(_doctor(tmp_path, "access-control--strongswan-to-ipseclab", change))

"""The interop runner: test cases x initiator->responder pairs, each in a fresh lab, into a results matrix.

For each cell: the case's declaration becomes two PeerConfigs, a Lab boots the pair (left =
initiator, right = responder), the initiator negotiates and pings, the lab is torn down, and
the case checks Wireshark's view of the run's pcaps with the run's key files.  A peer that
cannot express the case (its renderer refuses the configuration) is UNSUPPORTED, not FAILED.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from testcases.base import TestCase

from .errors import ConfigError, IpsecLabError
from .lab import docker_images
from .lab.lab import Lab, LabSpec
from .lab.peerconfig import Identity, PeerConfig
from .lab.peers import driver
from .lab.topology import Topology, make_topology
from .pcap.trace import Trace

# the main job's matrix: the two daemons each way, and ipseclab's own endpoint against each, both roles
DEFAULT_PAIRS = [("strongswan", "libreswan"), ("libreswan", "strongswan"),
                 ("ipseclab", "strongswan"), ("strongswan", "ipseclab"),
                 ("ipseclab", "libreswan"), ("libreswan", "ipseclab"),
                 ("strongswan-libipsec", "strongswan"), ("strongswan", "strongswan-libipsec"),
                 ("strongswan-libipsec", "ipseclab"), ("ipseclab", "strongswan-libipsec"),
                 ("openiked", "strongswan"), ("strongswan", "openiked"), ("openiked", "libreswan"),
                 ("libreswan", "openiked"), ("openiked", "ipseclab"), ("ipseclab", "openiked")]
PSK = "ipseclab-interop-psk"

PASSED, FAILED, UNSUPPORTED, ERROR = "passed", "failed", "unsupported", "error"


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: str
    initiator: str
    responder: str
    status: str
    reason: str
    run_dir: str
    seconds: float


def case_configs(case: TestCase, topo: Topology) -> tuple[PeerConfig, PeerConfig]:
    """The initiator's (left) and responder's (right) configuration for a test case."""
    left, right = topo.hosts["left"], topo.hosts["right"]
    tunnel = case.mode == "tunnel"
    left_addr, right_addr = left.address, right.address
    if case.transit == "ipv6":
        if not (left.address6 and right.address6):
            raise ConfigError(f"the {topo.kind} topology has no IPv6 transit")
        left_addr, right_addr = left.address6, right.address6
    common = dict(
        name="lab",
        psk=PSK,
        ike_proposals=(case.ike_proposal,),
        esp_proposals=(case.child_proposal,) if case.protocol == "esp" else ("aes128-sha256",),
        ah_proposals=(case.child_proposal,) if case.protocol == "ah" else ("sha256",),
        protocol=case.protocol,
        mode=case.mode,
        encap=case.encap,
    )
    init = PeerConfig(
        local_address=left_addr, remote_address=right_addr,
        local_id=Identity.fqdn("left.ipseclab.test"), remote_id=Identity.fqdn("right.ipseclab.test"),
        local_ts=(left.protected,) if tunnel else (), remote_ts=(right.protected,) if tunnel else (),
        role="initiator", **common,  # type: ignore[arg-type]
    )
    nat = topo.kind == "nat"
    resp = PeerConfig(
        local_address=right_addr,
        remote_address=None if nat else left_addr,
        local_id=Identity.fqdn("right.ipseclab.test"), remote_id=Identity.fqdn("left.ipseclab.test"),
        local_ts=(right.protected,) if tunnel else (),
        remote_ts=(left.protected,) if tunnel else (),
        role="responder", **common,  # type: ignore[arg-type]
    )
    return init, resp


def check_ipseclab_decrypts(run_dir: Path) -> None:
    """ipseclab's own decryption of the run (IKE codec, ESP data plane) agrees with the peers: every IKE
    message after IKE_SA_INIT and every ESP packet of every link decrypts with a good ICV."""
    from .decrypt import decrypt_capture
    from .esp_decrypt import decrypt_esp_capture
    from .pcap.esp_keyfiles import read_esp_sa
    from .pcap.keyfiles import read_ikev2_decryption_table

    ike_rows = read_ikev2_decryption_table(run_dir / "ikev2_decryption_table")
    esp_rows = read_esp_sa(run_dir / "esp_sa")
    for pcap in sorted(run_dir.glob("*.pcap")):
        bad = [r.line() for r in decrypt_capture(pcap, ike_rows) if r.error]
        assert not bad, f"ipseclab could not decrypt IKE in {pcap.name}: " + "; ".join(bad)
        esp = [r for r in decrypt_esp_capture(pcap, esp_rows) if r.proto == "esp"]
        bad = [r.line() for r in esp if not r.verified]
        assert not bad, f"ipseclab could not decrypt ESP in {pcap.name}: " + "; ".join(bad[:3])


def run_case(case: TestCase, initiator: str, responder: str, out_dir: Path, runtime: str = "") -> CaseResult:
    """One cell of the matrix on ``runtime`` (see LabSpec); never raises for a peer or lab failure."""
    run_dir = out_dir / f"{case.name}--{initiator}-to-{responder}"
    started = time.monotonic()

    def result(status: str, reason: str = "") -> CaseResult:
        return CaseResult(case.name, initiator, responder, status, reason, str(run_dir),
                          round(time.monotonic() - started, 1))

    topo = make_topology(case.topology, "probe")
    try:
        left_cfg, right_cfg = case_configs(case, topo)
        for impl, cfg in ((initiator, left_cfg), (responder, right_cfg)):
            drv = driver(impl)
            drv.check_topology(case.topology)
            drv.check_supported(cfg, case.topology)
            if drv.placement == "container" and not docker_images.engine_answers():
                raise ConfigError(f"{impl} runs in a container, and no Docker engine answers")
        if not (driver(initiator).gives_ike_keys or driver(responder).gives_ike_keys):
            raise ConfigError(f"neither {initiator} nor {responder} gives its IKE keys, so the trace's IKE "
                              "messages cannot be checked")
    except ConfigError as exc:
        return result(UNSUPPORTED, str(exc))
    try:
        with Lab(LabSpec(left_cfg, right_cfg, case.topology, initiator, responder, runtime), run_dir=run_dir) as lab:
            lab.initiate("left")
            lab.ping("left", count=case.pings)
        case.check(Trace.load(run_dir))
        check_ipseclab_decrypts(run_dir)
    except AssertionError as exc:
        return result(FAILED, str(exc) or "assertion failed")
    except IpsecLabError as exc:
        return result(ERROR, str(exc))
    return result(PASSED)


def run_matrix(cases: Sequence[TestCase], pairs: Sequence[tuple[str, str]], out_dir: Path,
               progress: bool = True, runtime: str = "") -> list[CaseResult]:
    """Run every case for every pair; writes results.json and results.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        for initiator, responder in pairs:
            res = run_case(case, initiator, responder, out_dir, runtime)
            results.append(res)
            if progress:
                print(f"{res.case:<16} {res.initiator:>10} -> {res.responder:<10} {res.status.upper():<11} "
                      f"{res.seconds:5.1f}s {res.reason.splitlines()[0] if res.reason else ''}", flush=True)
            write_results(results, out_dir)
    return results


def write_results(results: list[CaseResult], out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out_dir / "results.md").write_text(matrix_markdown(results))


def matrix_markdown(results: list[CaseResult]) -> str:
    """Cases as rows, initiator->responder pairs as columns."""
    pairs = list(dict.fromkeys(f"{r.initiator} -> {r.responder}" for r in results))
    cases = list(dict.fromkeys(r.case for r in results))
    cell = {(r.case, f"{r.initiator} -> {r.responder}"): r for r in results}
    lines = ["| case | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
    for c in cases:
        row = []
        for p in pairs:
            r = cell.get((c, p))
            row.append("" if r is None else f"{r.status.upper()} ({r.seconds:.0f}s)")
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    notes = [f"- {r.case}, {r.initiator} -> {r.responder}: {r.reason.splitlines()[0]}"
             for r in results if r.status != PASSED and r.reason]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")

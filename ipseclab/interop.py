"""The interop runner: test cases x initiator->responder pairs, each in a fresh lab, into a results matrix.

For each cell: the case's declaration becomes two PeerConfigs, a Lab boots the pair (left =
initiator, right = responder), the initiator negotiates and pings, the lab is torn down, and
the case checks Wireshark's view of the run's pcaps with the run's key files.  A peer that
cannot express the case (its renderer refuses the configuration) is UNSUPPORTED, not FAILED.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckFailed, ConfigError, IpsecLabError, LabError
from .interop_steps import run_steps
from .lab.impls import driver, implementations
from .lab.lab import Lab, LabSpec
from .lab.peerconfig import Identity, PeerConfig
from .lab.pool import LabPool
from .lab.runtimes import docker_images
from .lab.topology import Topology, make_topology
from .matrix import (
    ERROR,
    FAILED,
    PASSED,
    UNSUPPORTED,
    CaseResult,
    Cell,
    Selection,
    Shard,
    cell_id,
    order,
    pair_id,
    write_results,
)
from .pcap.trace import Trace
from .testcases.base import TestCase
from .testcases.steps import Delay, Kill, Ping, Rekey, Revive, StartChild, TcpTransfer, Until, Wait, WaitSasGone

# the main job's matrix: the two daemons each way, and ipseclab's own endpoint against each, both roles
DEFAULT_PAIRS = [("strongswan", "libreswan"), ("libreswan", "strongswan"),
                 ("ipseclab", "strongswan"), ("strongswan", "ipseclab"),
                 ("ipseclab", "libreswan"), ("libreswan", "ipseclab"),
                 ("strongswan-libipsec", "strongswan"), ("strongswan", "strongswan-libipsec"),
                 ("strongswan-libipsec", "ipseclab"), ("ipseclab", "strongswan-libipsec"),
                 ("openiked", "strongswan"), ("strongswan", "openiked"), ("openiked", "libreswan"),
                 ("libreswan", "openiked"), ("openiked", "ipseclab"), ("ipseclab", "openiked")]
PSK = "ipseclab-interop-psk"

def case_configs(case: TestCase, topo: Topology, responder: str = "") -> tuple[PeerConfig, PeerConfig]:
    """The initiator's (left) and responder's (right) configuration for a test case.

    ``responder`` (the implementation) decides whose certificate has expired in an ``expired-cert`` refusal:
    the responder's, unless its driver has an ``expired_cert_refusal`` (it will not present an expired
    certificate of its own: the ipseclab endpoint, Libreswan), then the initiator's.
    """
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
        replay_window=case.replay_window,
        esn=case.esn,
    )
    i_auth, r_auth = case.auth, case.responder_auth or ("pubkey" if case.auth.startswith("eap-") else case.auth)
    creds_i = creds_r = None
    if i_auth != "psk" or r_auth != "psk":
        from .lab.pki import make_pki

        expired = expired_side(responder) if case.refusal == "expired-cert" else ""
        pki = make_pki("left.ipseclab.test", "right.ipseclab.test", key_type=case.key_type, chain=case.chain,
                       expired=expired)
        creds_i, creds_r = pki.left, pki.right
        if case.refusal == "wrong-eap-password":
            creds_r = dataclasses.replace(creds_r, eap_password="not-" + creds_r.eap_password)
    init = PeerConfig(
        local_address=left_addr, remote_address=right_addr,
        local_id=Identity.fqdn("left.ipseclab.test"), remote_id=Identity.fqdn("right.ipseclab.test"),
        local_ts=(left.protected,) if tunnel else (), remote_ts=(right.protected,) if tunnel else (),
        role="initiator", auth=i_auth, remote_auth=r_auth, credentials=creds_i,  # type: ignore[arg-type]
        **common,  # type: ignore[arg-type]
    )
    nat = topo.kind == "nat"
    resp = PeerConfig(
        local_address=right_addr,
        remote_address=None if nat else left_addr,
        local_id=Identity.fqdn("right.ipseclab.test"), remote_id=Identity.fqdn("left.ipseclab.test"),
        local_ts=(right.protected,) if tunnel else (),
        # transport mode behind the NAT: the initiator protects its own address, which the NAT hides (Libreswan's
        # responder must be told it: rightsubnet=, impls/libreswan.py)
        remote_ts=(left.protected,) if tunnel else ((ipaddress.ip_network(left_addr),) if nat else ()),
        role="responder", auth=r_auth, remote_auth=i_auth, credentials=creds_r,  # type: ignore[arg-type]
        tfc_padding=case.tfc_padding,
        **{**common, "psk": "not-" + PSK if case.refusal == "wrong-psk" else PSK},  # type: ignore[arg-type]
    )
    if case.responder_ike_proposal:
        resp = dataclasses.replace(resp, ike_proposals=(case.responder_ike_proposal,))
    return _with_settings(init, case.left_settings), _with_settings(resp, case.right_settings)


def expired_side(responder: str) -> str:
    """Whose certificate has expired in an ``expired-cert`` refusal (see case_configs): "right" or "left"."""
    return "left" if responder and getattr(driver(responder), "expired_cert_refusal", "") else "right"


def _with_settings(cfg: PeerConfig, settings: tuple[tuple[str, object], ...]) -> PeerConfig:
    """``cfg`` with a case's per-side settings (lifetimes, DPD, ...); a bad one is the case's ConfigError."""
    if not settings:
        return cfg
    try:
        return dataclasses.replace(cfg, **dict(settings))  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"a case setting is not a PeerConfig field: {exc}") from None


def check_ipseclab_decrypts(run_dir: Path, probed: frozenset[tuple[int, int]] = frozenset(), *,
                            retries_without_keys: bool = False) -> None:
    """ipseclab's own decryption of the run (IKE codec, ESP data plane) agrees with the peers: every IKE
    message after IKE_SA_INIT and every ESP packet of every link decrypts with a good ICV, but the
    ``probed`` (SPI, sequence number) pairs: a probe sent those as replays, out of the window or with a bad
    ICV on purpose, and ipseclab's own replay window rightly refuses them.

    ``retries_without_keys`` (a case whose IKE_AUTH is refused): an IKE SA the initiator started over with
    after the refusal may have no keys in the run's table (they were logged after the lab collected them)."""
    from .analysis import EspRecord, records
    from .pcap.esp_keyfiles import read_esp_sa
    from .pcap.keyfiles import read_ikev2_decryption_table

    ike_rows = read_ikev2_decryption_table(run_dir / "ikev2_decryption_table")
    esp_rows = read_esp_sa(run_dir / "esp_sa")
    for pcap in sorted(run_dir.glob("*.pcap")):
        bad_ike: list[str] = []
        bad_esp: list[str] = []
        for r in records(pcap, ike_rows, esp_rows):  # one pass over the capture for both
            if isinstance(r, EspRecord):
                if r.proto == "esp" and not r.verified and (r.spi, r.seq) not in probed:
                    bad_esp.append(r.line())
            elif r.error and not (retries_without_keys and r.error.startswith("no keys for IKE SA")):
                bad_ike.append(r.line())
        if bad_ike:
            raise CheckFailed(f"ipseclab could not decrypt IKE in {pcap.name}: " + "; ".join(bad_ike))
        if bad_esp:
            raise CheckFailed(f"ipseclab could not decrypt ESP in {pcap.name}: " + "; ".join(bad_esp[:3]))


# The lifecycle steps (testcases/steps.py) whose traces the reset between two cells clears (Lab.next_cell:
# uml.RESET in a guest, a new endpoint process after EndpointHost.halt, which ends every process in its namespace):
#   Ping          background pings: killed
#   Wait, WaitSasGone, Until   nothing (Until reads the host's capture)
#   Rekey, StartChild   SAs and policies (flushed), the extra Child SAs' addresses on lo (flushed), daemon state
#                       (a new daemon); the endpoint's: a new process
#   Kill          the daemon is gone and the SAs flushed already; a killed endpoint is not running, so Lab.reusable()
#                 tears that lab down (its namespace keeps what the kill left: rp_filter, no TUN device)
#   Revive        a daemon started again: killed like any (a new daemon); a revived endpoint: a new process
#   Delay         netem on vec0 (its root qdisc deleted); the endpoint's own delay (a new process)
#   TcpTransfer   busybox httpd (killed), its files in /run and /tmp (emptied) or the cell's own directory
RESET_CLEARS = (Ping, Wait, Until, Rekey, StartChild, Kill, Revive, WaitSasGone, Delay, TcpTransfer)


def reusable(case: TestCase) -> bool:
    """Whether ``case`` may run on peers booted for an earlier cell of its pair and topology (lab.pool): when every
    lifecycle step it has is one whose traces the reset clears (``RESET_CLEARS``; a new kind of step is not,
    until it is listed there with what clears it).  Probe cells are: the injector is the cell's (closed when it
    ends), the victim's SAs are the cell's own and its counters are read relative to the reset
    (``Lab.peer_counters``).  NAT cells are: next_cell empties the router's connection tracking.

    What cannot be reused is decided when the lab is up (``Lab.reusable``): a container peer (no reset for it:
    the container's own layer keeps what the cell wrote, and its namespace is the container's), an endpoint
    that is not running (killed by a lifecycle step)."""
    return all(isinstance(step, RESET_CLEARS) for step in case.steps)


def reuse_group(case: TestCase) -> str:
    """The part of a pair's cells ``case`` shares booted peers with when the matrix spreads cells over workers
    (tests/interop/conftest.py, run_matrix's order), "" when it boots its own: the NAT cells, and the direct
    cells apart by kind (plain and probe cells, lifecycle cells), so that the long lifecycle cells of a pair are
    not one worker's queue with everything else of it (a group boots once: 3-4 CPU-s, against 10-15 s a lifecycle
    cell).  The probe cells went apart too once; joined to the plain ones they save a boot a pair (2026-12-01:
    six boots of the default matrix's 38)."""
    if not reusable(case):
        return ""
    if case.topology != "direct":
        return case.topology
    return "lifecycle" if case.steps else "direct"


WAITS, COMPUTES = "waits", "computes"


def cell_kind(case: TestCase) -> str:
    """What a cell of ``case`` spends its seconds on: WAITS for a case with lifecycle steps (a rekey 3-7 s after
    the SA came up and 2 s of pings after it, a dead peer's DPD: the daemons' timers), COMPUTES for the others
    (a reset, a negotiation, a few pings and tshark: CPU-bound under UML)."""
    return WAITS if case.steps else COMPUTES


def group_scope(case: TestCase, initiator: str, responder: str) -> str | None:
    """The scope a parallel run hands out a cell of ``case`` in, as one: ``INIT-to-RESP-GROUP`` for a pair's cells
    of one :func:`reuse_group`, None for a cell that boots its own lab (a scope of its own)."""
    group = reuse_group(case)
    return f"{pair_id(initiator, responder)}-{group}" if group else None


def joined_kind(before: str | None, kind: str) -> str:
    """A scope's kind once a cell of ``kind`` joined cells of kind ``before`` (None: the first): it waits only
    if all its cells do (a pair's NAT cells, a plain one and a TCP download, compute)."""
    return kind if before in (None, kind) else COMPUTES


def worker_kind(computing: int, cores: int) -> str:
    """The kind of cells a pytest-xdist worker takes first, ``computing`` workers having COMPUTES already: as
    many computing workers as the machine has cores, the others on the waiting cells."""
    return COMPUTES if computing < max(1, cores) else WAITS


def next_scope(queue: Iterable[str], kinds: Mapping[str, str], worker: str) -> str | None:
    """The scope (a group of cells, tests/interop/conftest.py) a worker of kind ``worker`` takes next from
    ``queue`` (in its order), ``kinds`` giving each scope's kind (:func:`cell_kind`; "" for a test that is no
    matrix cell): one of its own kind, else one that is no cell, else (a computing worker) a waiting one; None
    when nothing is left for it.  A waiting worker never takes computing cells: with a computing worker per
    core already, one more computing makes every cell slower and the matrix hardly sooner (2026-12-01, 2 cores:
    three computing workers 1.5-1.7 s a median cell, two 1.2-1.3 s, the matrix as soon)."""
    order = (worker, "", WAITS) if worker == COMPUTES else (WAITS, "")
    pending = list(queue)
    for kind in order:
        scope = next((s for s in pending if kinds.get(s, "") == kind), None)
        if scope is not None:
            return scope
    return None


def cell_order(case: TestCase) -> tuple[bool, str, str]:
    """Where ``case`` goes among its pair's cells: the reusable ones first, those of one topology together (the
    pool keeps one lab, of one topology), by group (reuse_group)."""
    return not reusable(case), case.topology, reuse_group(case)


def run_case(case: TestCase, initiator: str, responder: str, out_dir: Path, runtime: str = "",
             pool: LabPool | None = None) -> CaseResult:
    """One cell of the matrix on ``runtime`` (see LabSpec); never raises for a peer or lab failure.

    With a ``pool`` a :func:`reusable` cell runs on the pair's peers as the pool keeps them booted from the
    cell before, and leaves them there (a cell that does not pass makes the next one boot afresh)."""
    run_dir = out_dir / cell_id(case.name, initiator, responder)
    started = time.monotonic()

    def result(status: str, reason: str = "") -> CaseResult:
        if pool is not None and status in (FAILED, ERROR):
            pool.discard()
        return CaseResult(case.name, initiator, responder, status, reason, str(run_dir),
                          round(time.monotonic() - started, 1))

    topo = make_topology(case.topology, "probe")
    try:
        left_cfg, right_cfg = case_configs(case, topo, responder)
    except ConfigError as exc:
        return result(UNSUPPORTED, str(exc))
    why = unsupported_reason(case, initiator, responder)
    if why:
        return result(UNSUPPORTED, why)
    try:
        spec = LabSpec(left_cfg, right_cfg, case.topology, initiator, responder, runtime)
        with pool.lab(spec, run_dir, reusable(case)) if pool is not None else Lab(spec, run_dir=run_dir) as lab:
            victim = "left" if case.victim == "initiator" else "right"
            if case.probe:
                from .probes import prepare_probe

                prepare_probe(lab, victim)
            if case.refusal or not case.establishes:
                _initiate_refused(lab, run_dir)
            else:
                lab.initiate("left")
                if case.steps:
                    run_steps(lab, case.steps, run_dir)
                else:
                    lab.ping("left", count=case.pings)
                if case.probe:
                    from .probes import run_probe

                    run_probe(lab, case.probe, run_dir, victim=victim)
        case.check(Trace.load(run_dir))
        check_ipseclab_decrypts(run_dir, _probed(run_dir), retries_without_keys=bool(case.refusal))
    except AssertionError as exc:  # CheckFailed, the suite's failure type, is one
        return result(FAILED, f"{exc or 'assertion failed'}{counters_summary(run_dir)}")
    except KeyboardInterrupt:
        if pool is not None:
            pool.discard()
        raise  # LabInterrupted too: an interrupt stops the matrix, it is not this cell's result
    except IpsecLabError as exc:
        return result(ERROR, str(exc))
    return result(PASSED)


def _initiate_refused(lab: Lab, run_dir: Path) -> None:
    """Initiate a connection the case expects to be refused; CheckFailed if it comes up."""
    try:
        # the refusal comes within a second: the initiator's record of it ends the wait (the 8 s only bound it)
        out = lab.initiate("left", timeout=8, refused=True)
    except LabError as exc:
        (run_dir / "initiate.txt").write_text(f"refused, as the case expects:\n{exc}\n")
        return
    raise CheckFailed(f"the SA came up although the case expects the responder to refuse it: {out.strip()[-300:]}")


def _probed(run_dir: Path) -> frozenset[tuple[int, int]]:
    """The (SPI, sequence number) of every ESP packet a probe sent (see check_ipseclab_decrypts)."""
    path = run_dir / "probe.json"
    if not path.exists():
        return frozenset()
    probe = json.loads(path.read_text())
    spi = int(probe["spi_in"], 16)
    return frozenset((spi, s["esp_seq"]) for step in probe["steps"] for s in step["sent"] if s["esp_seq"] is not None)


def counters_summary(run_dir: Path) -> str:
    """The peers' nonzero drop counters from ``counters.json`` (saved before teardown), for a failed cell's
    reason: `` | counters: right (libreswan): XfrmInNoPols=1, SA 0x1234: replay=2 failed=1``."""
    path = run_dir / "counters.json"
    if not path.exists():
        return ""
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return ""
    parts = []
    for side, c in data.items():
        words = [f"{k}={v}" for k, v in sorted(c.get("xfrm_stat", {}).items()) if v]
        for sa in c.get("sas", []):
            drops = [f"{k}={sa[k]}" for k in ("replay-window", "replay", "failed") if sa.get(k)]
            if drops:
                words.append(f"SA {sa['spi']}: {' '.join(drops)}")
        dataplane = c.get("dataplane") or {}  # the ipseclab endpoint's status
        words += [f"{k}={dataplane[k]}" for k in ("replay", "integrity", "policy_mismatch", "clear_dropped",
                                                  "unknown_spi", "malformed", "dummies_in") if dataplane.get(k)]
        esp_in = c.get("esp_in") or {}
        words += [f"{k}={v}" for k, v in sorted(esp_in.items()) if v and ("drop" in k or "fail" in k or "mis" in k)]
        if c.get("error"):
            words.append(c["error"])
        parts.append(f"{side} ({c.get('impl', '?')}): {', '.join(words) or 'no drops'}")
    return " | counters: " + "; ".join(parts)


def unsupported_reason(case: TestCase, initiator: str, responder: str, *, host: bool = True,
                       ike_keys: bool = True) -> str | None:
    """Why the cell cannot run (the drivers' own words), or None; decided without booting anything.

    ``host=False`` leaves out what depends on this machine (a Docker engine for container peers), so that
    ``--list`` says what the implementations can do, not what this host has; ``ike_keys=False`` leaves out
    that one side must give its IKE keys (only the trace check needs them, not a lab at the REPL).
    """
    try:
        left_cfg, right_cfg = case_configs(case, make_topology(case.topology, "probe"), responder)
        for impl, cfg, peer in ((initiator, left_cfg, responder), (responder, right_cfg, initiator)):
            drv = driver(impl)
            drv.check_topology(case.topology)
            drv.check_supported(cfg, case.topology)
            check_pair = getattr(drv, "check_pair", None)  # optional: a trait of this pair, not of the peer alone
            if check_pair is not None:
                check_pair(cfg, case.topology, peer)
            if host and drv.placement == "container" and not docker_images.engine_answers():
                raise ConfigError(f"{impl} runs in a container, and no Docker engine answers")
        if case.probe:
            if case.topology != "direct":
                raise ConfigError(f"the {case.probe} probe injects on the direct topology only")
            victim = initiator if case.victim == "initiator" else responder
            why = driver(victim).probe_refusal
            if why:
                raise ConfigError(f"{victim} as the victim of the {case.probe} probe: {why}")
        for step in case.steps:
            for side, action in step.needs().items():  # type: ignore[attr-defined]
                impl = initiator if side == "left" else responder
                if action not in driver(impl).actions:
                    raise ConfigError(f"{impl} cannot be driven through {type(step).__name__} (it needs the "
                                      f"{action!r} action; {impl} offers {', '.join(sorted(driver(impl).actions))})")
        if ike_keys and not (driver(initiator).gives_ike_keys or driver(responder).gives_ike_keys):
            raise ConfigError(f"neither {initiator} nor {responder} gives its IKE keys, so the trace's IKE "
                              "messages cannot be checked")
        if case.refusal == "expired-cert" and expired_side(responder) == "right":
            why = getattr(driver(initiator), "silent_initiator_refusal", "")  # the check needs the notify
            if why:
                raise ConfigError(f"the responder's certificate has expired, and {why}")
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class Support:
    """What one implementation says about a case in each role: None where it can, else its reason."""

    impl: str
    initiator: str | None
    responder: str | None


def case_support(case: TestCase) -> list[Support]:
    """Each registered implementation's answer for ``case`` in each role, from its driver's checks alone."""
    try:
        cfgs = case_configs(case, make_topology(case.topology, "probe"))
    except ConfigError as exc:
        return [Support(impl, str(exc), str(exc)) for impl in implementations()]
    out = []
    for impl in implementations():
        drv = driver(impl)
        why: list[str | None] = []
        for role, cfg in zip(("initiator", "responder"), cfgs, strict=True):
            try:
                drv.check_topology(case.topology)
                drv.check_supported(cfg, case.topology)
                if case.probe and case.victim == role and drv.probe_refusal:
                    raise ConfigError(f"as the victim of the {case.probe} probe: {drv.probe_refusal}")
                why.append(None)
            except ConfigError as exc:
                why.append(str(exc))
        out.append(Support(impl, why[0], why[1]))
    return out


def progress_line(k: int, n: int, res: CaseResult) -> str:
    """``[k/n] case initiator->responder STATUS time reason``: one line per cell as the matrix runs."""
    width = len(str(n))
    reason = f"  {res.reason.splitlines()[0]}" if res.reason else ""
    return (f"[{k:>{width}}/{n}] {res.case} {res.initiator}->{res.responder} {res.status.upper()} "
            f"{res.seconds:.1f}s{reason}")


def run_order(cases: list[TestCase], pairs: list[tuple[str, str]], shard: Shard | None = None
              ) -> tuple[dict[str, TestCase], Selection, list[Cell]]:
    """The cases by name, the selection, and its cells (``shard``'s only) in the order they run: pair by pair,
    each pair's by :func:`cell_order`."""
    by_name = {c.name: c for c in cases}
    selection = Selection(tuple(by_name), tuple(pairs))
    rank = {pair: n for n, pair in enumerate(selection.pairs)}
    cells = sorted(selection.cells(shard),
                   key=lambda c: (rank[(c.initiator, c.responder)], cell_order(by_name[c.case])))
    return by_name, selection, cells


def run_matrix(cases: list[TestCase], pairs: list[tuple[str, str]], out_dir: Path, progress: bool = True,
               runtime: str = "", shard: Shard | None = None,
               report: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Run every cell of cases x pairs (or only ``shard``'s); results.json, results.md and results.xml (JUnit),
    in matrix order, are rewritten after each cell, so an interrupted run still leaves its matrix.

    The cells run pair by pair, each pair's :func:`reusable` cells first and by topology, on peers a LabPool keeps
    booted between them (the other cells boot their own)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name, selection, cells = run_order(cases, pairs, shard)
    results: list[CaseResult] = []
    with LabPool() as pool:
        for k, cell in enumerate(cells, 1):
            res = run_case(by_name[cell.case], cell.initiator, cell.responder, out_dir, runtime, pool)
            results.append(res)
            if progress:
                (report or _print)(progress_line(k, len(cells), res))
            write_results(order(results, selection), out_dir, selection, shard)
    if not cells:
        write_results(results, out_dir, selection, shard)
    return results


def _print(line: str) -> None:
    print(line, flush=True)

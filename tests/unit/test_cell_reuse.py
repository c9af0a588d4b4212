"""Which cells run on a pair's booted peers (interop.reusable), and how the matrix groups them (reuse_group,
cell_order; tests/interop/conftest.py gives each group to one xdist worker)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ipseclab.interop import (
    COMPUTES,
    RESET_CLEARS,
    WAITS,
    case_configs,
    cell_kind,
    cell_order,
    next_scope,
    reusable,
    reuse_group,
    worker_kind,
)
from ipseclab.testcases import ALL_CASES, by_name
from ipseclab.testcases import steps as step_types


@dataclass(frozen=True)
class Sysctl:
    """A step kind the reset was never shown to clear (a kernel setting it does not restore)."""

    key: str

    def needs(self) -> dict[str, str]:
        return {"left": "shell"}


def test_every_kind_of_lifecycle_step_is_one_the_reset_clears() -> None:
    """A new kind of step in testcases/steps.py must be listed with what clears it, or its cells boot their own."""
    kinds = set(step_types.Step.__args__)  # type: ignore[attr-defined]
    assert kinds == set(RESET_CLEARS)


def test_probe_lifecycle_and_nat_cells_are_reusable_and_an_unknown_step_is_not() -> None:
    for name in ("replay", "access-control", "tfc", "dpd-dead-peer", "rekey-collision", "tcp-transport-nat",
                 "esp-tunnel-nat", "esp-tunnel"):
        assert reusable(by_name(name)), name
    case = dataclasses.replace(by_name("child-rekey-initiator"), steps=(step_types.Ping(2), Sysctl("x")))
    assert not reusable(case)
    assert reuse_group(case) == "" and cell_order(case)[0] is True  # after the pair's reusable cells


def test_groups_part_a_pair_by_topology_then_kind() -> None:
    # the probe cells with the plain ones: one boot a pair less
    assert {reuse_group(by_name(n)) for n in ("esp-tunnel", "aes-ctr", "refuse-wrong-psk", "replay", "tfc",
                                             "access-control")} == {"direct"}
    assert {reuse_group(by_name(n)) for n in ("child-rekey-initiator", "dpd-dead-peer")} == {"lifecycle"}
    # the NAT cells share one group whatever their kind: the pool's lab is of one topology
    assert {reuse_group(by_name(n)) for n in ("esp-tunnel-nat", "tcp-transport-nat")} == {"nat"}


def test_a_pair_s_cells_of_one_topology_run_one_after_another() -> None:
    """In cell_order the pool (one parked lab, keyed by pair and topology) never has to trade a lab of one
    topology for the other and back: each topology's cells are contiguous, each group's too."""
    cases = sorted(ALL_CASES, key=cell_order)
    topologies = [c.topology for c in cases]
    assert topologies == sorted(topologies, key=topologies.index)  # each topology once, in one run
    groups = [reuse_group(c) for c in cases]
    runs = [g for n, g in enumerate(groups) if n == 0 or groups[n - 1] != g]
    assert len(runs) == len(set(runs))


class FakeGuest:
    """A booted guest as next_cell drives it: what it is asked to run, in order, into ``events``."""

    def __init__(self, side: str, events: list[str], directory: Path) -> None:
        self.side, self.events, self.dir = side, events, directory

    def exec(self, script: str, timeout: float = 30, check: bool = True) -> tuple[int, str]:
        self.events.append(f"{self.side}: {'end the daemon' if 'kill -9' in script else script}")
        return 0, ""

    def reset(self, new_dir: Path, script: str, batch: Sequence[str] = ()) -> str:
        self.events.append(f"{self.side}: reset")
        return "XfrmInNoStates 0\n"


def test_next_cell_ends_the_daemons_then_captures_then_resets_then_empties_the_router(tmp_path, monkeypatch):
    """The order that keeps the cell before out of this cell's pcaps: its daemons (which may still rekey or probe
    a dead peer while parked) end before the captures start; the new daemons start in the reset, after them; the
    router's connection tracking is emptied once no old daemon can send through it."""
    from ipseclab.lab import lab as lab_module
    from ipseclab.lab.capture import Capture
    from ipseclab.lab.impls import driver
    from ipseclab.lab.lab import Lab, LabSpec, PeerRun
    from ipseclab.lab.topology import make_topology

    events: list[str] = []
    monkeypatch.setattr(lab_module, "start_capture",
                        lambda link, run_dir: events.append(f"capture {link.name}") or Capture(link, run_dir, None))
    monkeypatch.setattr(lab_module.netns, "flush_conntrack", lambda topo: events.append(f"conntrack {topo.kind}"))
    case = by_name("tcp-transport-nat")
    spec = LabSpec(*case_configs(case, make_topology("nat", "t"), "libreswan"), "nat", "strongswan", "libreswan")
    lab = Lab(spec, run_dir=tmp_path / "one")
    lab.peers = {side: PeerRun(side, driver(impl), cfg, FakeGuest(side, events, tmp_path / "one" / side))  # type: ignore[arg-type]
                 for side, impl, cfg in (("left", "strongswan", spec.left_config),
                                         ("right", "libreswan", spec.right_config))}
    lab.next_cell(spec, tmp_path / "two")
    assert sorted(events[:2]) == ["left: end the daemon", "right: end the daemon"]
    assert events[2:4] == ["capture left-nat", "capture nat-right"]
    assert sorted(events[4:6]) == ["left: reset", "right: reset"]
    assert events[6:] == ["conntrack nat"]
    assert (tmp_path / "two" / "right" / "ipsec.conf").exists()  # the new cell's configuration, in its directory


def test_cells_that_wait_on_timers_are_the_lifecycle_ones() -> None:
    assert {c.name for c in ALL_CASES if cell_kind(c) == WAITS} == {c.name for c in ALL_CASES if c.steps}
    assert cell_kind(by_name("rekey-collision")) == WAITS and cell_kind(by_name("replay")) == COMPUTES


def test_one_computing_worker_per_core_and_the_others_wait() -> None:
    kinds = []
    for _ in range(5):
        kinds.append(worker_kind(kinds.count(COMPUTES), cores=2))
    assert kinds == [COMPUTES, COMPUTES, WAITS, WAITS, WAITS]
    assert worker_kind(0, cores=0) == COMPUTES  # a machine that reports no core still computes


def test_a_worker_takes_its_own_kind_first_and_a_waiting_one_never_computes() -> None:
    kinds = {"a-direct": COMPUTES, "a-lifecycle": WAITS, "b-direct": COMPUTES, "test_x": ""}
    queue = ["a-direct", "test_x", "a-lifecycle", "b-direct"]
    assert next_scope(queue, kinds, COMPUTES) == "a-direct"
    assert next_scope(queue, kinds, WAITS) == "a-lifecycle"
    # once its kind is gone: a test that is no cell, then (only a computing worker) the other kind
    assert next_scope(["b-direct", "test_x"], kinds, WAITS) == "test_x"
    assert next_scope(["b-direct"], kinds, WAITS) is None
    assert next_scope(["a-lifecycle", "test_x"], kinds, COMPUTES) == "test_x"
    assert next_scope(["a-lifecycle"], kinds, COMPUTES) == "a-lifecycle"
    assert next_scope([], kinds, COMPUTES) is None

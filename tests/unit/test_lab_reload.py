"""Reloading a daemon between two cells on a booted pair (Lab.end_cell/next_cell, Reload, keep_daemon_reset),
with a fake guest: a thread that answers the spool as the UML agent would, so the order of what the lab does
(the drop, the captures, the reset) and what it decides (reload or restart) are seen without a kernel."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ipseclab.errors import LabError
from ipseclab.interop import case_configs
from ipseclab.lab import lab as lab_module
from ipseclab.lab.images import Image
from ipseclab.lab.impls.contract import KERNEL_SNAPSHOT, kernel_counters, require_daemon
from ipseclab.lab.impls.libreswan import PLUTO_LOG, PLUTO_PID, WHACK, LibreswanDriver, add_conns
from ipseclab.lab.impls.strongswan import CHARON_PID, StrongswanDriver, StrongswanLibipsecDriver
from ipseclab.lab.lab import Lab, LabSpec, PeerRun
from ipseclab.lab.runtimes.uml import RESET, UmlHost, keep_daemon_reset
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

TOPO = make_topology("direct", "unit")


def _configs(case: str, responder: str):
    c = by_name(case)
    return case_configs(c, make_topology(c.topology, "unit"), responder)


# --- the drivers' decisions and scripts -------------------------------------------------------


def _written(tmp_path: Path, name: str, cfg) -> Path:
    d = tmp_path / name
    StrongswanDriver().write_config(cfg, d)
    return d


def test_strongswan_reloads_only_into_the_same_strongswan_conf(tmp_path: Path):
    left, _ = _configs("esp-tunnel", "strongswan")
    transport, _ = _configs("esp-transport", "strongswan")
    cert, _ = _configs("cert-rsa", "strongswan")
    old, same, other = _written(tmp_path, "a", left), _written(tmp_path, "b", transport), _written(tmp_path, "c", cert)
    drv = StrongswanDriver()
    plan = drv.reload(left, transport, old, same, TOPO.hosts["left"])
    assert plan is not None and plan.pidfile == "/run/charon.pid" and plan.keep == "/run/charon.*"
    lines = plan.load.splitlines()
    # the settings (and so the log in the new /ipl) before the new configuration; both through the one-plugin
    # control configuration (a PSK cell's swanctl has nothing to parse); the routes are the lab's network batch
    control = "STRONGSWAN_CONF=/ipl/swanctl-control.conf swanctl"
    assert lines == [f"{control} --reload-settings --uri unix:///run/charon.vici || exit 1",
                     f"{control} --load-all --clear --file /ipl/swanctl.conf --uri unix:///run/charon.vici || exit 1"]
    assert (same / "swanctl-control.conf").read_text() == "swanctl {\n    load = nonce\n}\n"
    tunnel = drv.reload(transport, left, same, old, TOPO.hosts["left"])
    assert tunnel is not None and tunnel.load == plan.load
    # a certificate cell's --load-all parses its files with strongswan.conf's swanctl plugins
    assert "STRONGSWAN_CONF=/ipl/strongswan.conf swanctl --load-all" in drv.start_script(cert, TOPO.hosts["left"])
    assert f"{control} --load-all" in drv.start_script(left, TOPO.hosts["left"])
    # a certificate cell loads pkcs8 into charon: another strongswan.conf, so a restart
    assert drv.reload(left, cert, old, other, TOPO.hosts["left"]) is None
    assert drv.reload(left, left, old, tmp_path / "missing", TOPO.hosts["left"]) is None
    assert StrongswanLibipsecDriver().reload(left, left, old, old, TOPO.hosts["left"]) is None


def test_strongswan_drop_ends_the_ike_sa_and_waits_until_charon_holds_none():
    left, _ = _configs("esp-tunnel", "strongswan")
    script = StrongswanDriver().drop_script(left)
    # a charon that died (a lifecycle Kill) has nothing to drop: the drop fails at once, so it is restarted, not
    # reloaded (swanctl's refusals would read as "no SA left")
    assert script.startswith(require_daemon(CHARON_PID, "charon"))
    # the addresses go first: the Delete must not reach the other peer (it could act on it)
    assert script.index("ip addr flush dev vec0 scope global") < script.index(
        f"swanctl --terminate --ike {left.name} --force --uri") < script.index("--list-sas --raw")
    assert script.count("STRONGSWAN_CONF=/ipl/swanctl-control.conf swanctl") == 2
    assert "*'list-sa event'*) ;; *) break;;" in script and "exit 1" in script


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_a_drop_goes_on_only_while_its_daemon_runs(tmp_path: Path, shell: str):
    """require_daemon's lines in a real shell (the guests' bash; dash, a container's sh): a pid file naming a
    running process lets the drop go on; a dead pid, an empty or a missing pid file ends it at once."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    pidfile = tmp_path / "daemon.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    for content, runs in ((f"{os.getpid()}\n", True), (f"{dead.pid}\n", False), ("", False), (None, False)):
        if content is None:
            pidfile.unlink(missing_ok=True)
        else:
            pidfile.write_text(content)
        out = subprocess.run([shell, "-c", require_daemon(str(pidfile), "charon") + "echo going on"],
                             capture_output=True, text=True, timeout=10)
        assert (out.returncode, out.stdout) == ((0, "going on\n") if runs else (1, "no charon\n")), (content, out)
        assert out.stderr == ""


def test_keep_daemon_reset_is_reset_but_for_the_daemon_and_its_run_files():
    script = keep_daemon_reset("/run/charon.pid", "/run/charon.*", dev="vec0")
    first, rest = script.split("\n", 1)
    assert first.startswith("d=; read -r d 2>/dev/null < /run/charon.pid;") and 'echo "no daemon"; exit 1' in first
    # both kill loops spare the daemon; every flush of RESET is still there
    assert rest.count('[ "$p" = "$d" ] ||') == 2
    for line in RESET.replace("{dev}", "vec0").splitlines():
        if not line.startswith(("for p", "  [", "rm -rf")):
            assert line in rest.splitlines()
    assert "rm -rf /run/*" not in script and 'case $f in /run/charon.*) ;;' in script


def test_libreswan_reloads_only_with_the_same_setup_and_no_certificates(tmp_path: Path):
    _, tunnel = _configs("esp-tunnel", "libreswan")
    _, transport = _configs("esp-transport", "libreswan")
    _, cert = _configs("cert-rsa", "libreswan")
    quiet = dataclasses.replace(transport, log_keys=False)
    drv = LibreswanDriver()
    dirs = {}
    for name, cfg in (("a", tunnel), ("b", transport), ("c", cert), ("d", quiet)):
        dirs[name] = tmp_path / name
        drv.write_config(cfg, dirs[name])
    plan = drv.reload(tunnel, transport, dirs["a"], dirs["b"], TOPO.hosts["right"])
    assert plan is not None and plan.pidfile == PLUTO_PID and plan.keep == "/run/pluto|/run/nss"
    lines = plan.load.splitlines()
    # what start_script does once pluto runs: the forwarder into the new /ipl, the interfaces, the secrets, the conns
    assert lines[1].startswith(f"tail -c +$((o + 1)) -F -s 0.05 {PLUTO_LOG} >> /ipl/pluto.log")
    assert lines[3:] == [f"{WHACK} --listen --rereadsecrets || exit 1", add_conns(transport).rstrip()]
    back = drv.reload(transport, tunnel, dirs["b"], dirs["a"], TOPO.hosts["right"])
    assert back is not None and "route add" not in back.load  # the lab's network batch adds the routes
    # certificates fill the NSS database; another plutodebug is another config setup: restarts
    assert drv.reload(tunnel, cert, dirs["a"], dirs["c"], TOPO.hosts["right"]) is None
    assert drv.reload(cert, tunnel, dirs["c"], dirs["a"], TOPO.hosts["right"]) is None
    assert drv.reload(tunnel, quiet, dirs["a"], dirs["d"], TOPO.hosts["right"]) is None
    assert drv.reload(tunnel, tunnel, dirs["a"], tmp_path / "missing", TOPO.hosts["right"]) is None


def test_libreswan_drop_deletes_every_conn_unheard_and_waits_for_an_empty_pluto():
    _, cfg = _configs("esp-tunnel", "libreswan")
    cfg = dataclasses.replace(cfg, extra_children=((cfg.local_ts[0], cfg.remote_ts[0]),))
    script = LibreswanDriver().drop_script(cfg)
    # a pluto that died (a kill action) is restarted at once, not waited for
    assert script.startswith(require_daemon(PLUTO_PID, "pluto"))
    assert script.index("ip addr flush dev vec0 scope global") < script.index(
        f"for c in {cfg.name} {cfg.name}-2; do {WHACK} --delete --name $c") < script.index("--status")
    assert "*'Total IPsec connections: loaded 0,'*" in script and "exit 1" in script
    # the cell's log is all in its /ipl before the drop ends
    assert script.index("--status") < script.index(f"stat -c %s {PLUTO_LOG}") < script.index("pluto.log not copied")


# pluto 4.10's `whack --status` (its end) with an IKE SA and its Child SA, as a guest printed it (2026-12-01)
STATUS_WITH_STATES = """000 Total IPsec connections: loaded 1, active 1
000
000 State Information: DDoS cookies not required, Accepting new IKE connections
000 IKE SAs: total(1), half-open(0), open(0), authenticated(1), anonymous(0)
000 IPsec SAs: total(1), authenticated(1), anonymous(0)
000
000 #1: "lab":500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 14129s; newest; idle;
000 #2: "lab":500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); REKEY in 3329s; IKE SA #1; idle;
000
000 Bare Shunt list:
000
"""
STATUS_EMPTY = """000 Total IPsec connections: loaded 0, active 0
000
000 State Information: DDoS cookies not required, Accepting new IKE connections
000 IKE SAs: total(0), half-open(0), open(0), authenticated(0), anonymous(0)
000 IPsec SAs: total(0), authenticated(0), anonymous(0)
000
000 Bare Shunt list:
000
"""


def _fake_whack(tmp_path: Path, answers: list[str]) -> Path:
    """A whack that prints ``answers`` in turn for --status (the last one again after that), counting the looks in
    ``tmp_path/n``."""
    for i, text in enumerate(answers):
        (tmp_path / f"status{i}").write_text(text)
    whack = tmp_path / "whack"
    whack.write_text(f"""#!/bin/bash
case "$*" in *--status*) n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n
  f={tmp_path}/status$n; [ -e $f ] || f={tmp_path}/status{len(answers) - 1}; cat $f;; esac
""")
    whack.chmod(0o755)
    return whack


@pytest.mark.parametrize(("answers", "ends"), [
    ([STATUS_EMPTY], "dropped"),
    ([STATUS_WITH_STATES, STATUS_WITH_STATES, STATUS_EMPTY], "dropped"),
    # a state left without its conn (pluto can hold one while it deletes): still waiting
    ([STATUS_WITH_STATES.replace("loaded 1, active 1", "loaded 0, active 0")] * 50, "pluto still holds"),
    ([STATUS_EMPTY.replace("loaded 0, active 0", "loaded 1, active 0")] * 50, "pluto still holds"),
])
def test_libreswan_drop_waits_in_bash_until_whack_status_shows_no_state_and_no_conn(tmp_path: Path, answers, ends):
    """The drop's wait in the guests' shell (bash), whack standing in with pluto's own --status texts in turn:
    it ends once no "#N:" state line is left and no conn is loaded, else gives up."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    _, cfg = _configs("esp-tunnel", "libreswan")
    whack = _fake_whack(tmp_path, answers)
    pid = tmp_path / "pluto.pid"
    pid.write_text(f"{os.getpid()}\n")
    script = LibreswanDriver().drop_script(cfg)
    script = script[:script.index("read -r o <")]  # up to the log's copy (the forwarder's, not the wait's)
    script = (script.replace(WHACK, str(whack)).replace(PLUTO_PID, str(pid))
              .replace("ip addr flush dev vec0 scope global", ": the addresses"))
    out = subprocess.run(["bash", "-c", "ipl_sleep() { :; }\n" + script + "echo dropped"], capture_output=True,
                         text=True, timeout=30)
    assert ends in out.stdout, out
    looks = int((tmp_path / "n").read_text())
    assert looks == (len(answers) if ends == "dropped" else 41), looks


@pytest.mark.parametrize(("answers", "ends"), [
    ([STATUS_EMPTY.replace("loaded 0,", "loaded 1,")], "started"),
    # pluto answers whack before it has added the conns of its --config (seen: an initiate found none)
    ([STATUS_EMPTY, STATUS_EMPTY, STATUS_WITH_STATES], "started"),
    ([STATUS_EMPTY] * 3, "pluto did not add its conns"),
])
def test_libreswan_start_waits_in_bash_until_whack_status_counts_its_conns(tmp_path: Path, answers, ends):
    """The start's wait in the guests' shell, whack standing in with pluto's own --status texts in turn: it goes
    on once the conns are loaded (pluto adds them itself), else gives up naming why."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    _, cfg = _configs("esp-tunnel", "libreswan")
    whack = _fake_whack(tmp_path, answers)
    launch = LibreswanDriver()._launch(cfg)
    wait = launch[launch.index("i=0; while :; do"):].replace(WHACK, str(whack))
    out = subprocess.run(["bash", "-c", "ipl_sleep() { :; }\n" + wait + "echo started"], capture_output=True,
                         text=True, timeout=30)
    assert ends in out.stdout, out
    assert int((tmp_path / "n").read_text()) == (len(answers) if ends == "started" else 201)


# --- the lab's order and fallbacks, on fake guests ---------------------------------------------


class FakeGuest(threading.Thread):
    """Answers a UmlHost's spool as the agent would: a reset's status in the new /ipl (which becomes ready),
    everything else beside it; ``fail`` makes the drop fail.  ``log`` is what ran, in order."""

    def __init__(self, host: UmlHost, log: list[str], fail_drop: bool = False, gone: bool = False) -> None:
        super().__init__(daemon=True)
        self.host, self.log, self.fail_drop, self.done = host, log, fail_drop, threading.Event()
        self.gone = gone  # the daemon died after its drop: a reload's clean stops before it moves /ipl
        self.spool = host.dir / "cmd"

    def run(self) -> None:
        while not self.done.is_set():
            for sh in sorted(self.spool.glob("*.sh")):
                text = sh.read_text()
                run = sh.with_suffix(".run")
                sh.rename(run)
                rc, out, rc_dir = 0, "", self.spool
                if "mount -t hostfs" in text:
                    new = Path(re.search(r"-o (\S+)\n", text).group(1))  # type: ignore[union-attr]
                    kind = "reload" if "read -r d 2>/dev/null < /run/" in text else "reset"
                    self.log.append(f"{kind} {self.host.name}")
                    if kind == "reload" and self.gone:  # keep_daemon_reset's first line: no daemon, exit 1
                        run.with_suffix(".out").write_text("no daemon\n")
                        (self.spool / (sh.stem + ".rc")).write_text("1\n")
                        continue
                    out, rc_dir = "=== xfrm_stat\nXfrmInError 0\n", new / "cmd"
                    (new / "ready").touch()
                    self.spool = new / "cmd"
                elif "tc qdisc del" in text:
                    self.log.append(f"unshape {self.host.name}")
                elif "swanctl --terminate" in text or "--delete --name" in text:
                    self.log.append(f"drop {self.host.name}")
                    rc = 1 if self.fail_drop else 0
                run.with_suffix(".out").write_text(out)
                rc_dir.mkdir(parents=True, exist_ok=True)
                (rc_dir / (sh.stem + ".rc")).write_text(f"{rc}\n")
            self.done.wait(0.005)


@pytest.fixture
def fake_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log: list[str] = []
    monkeypatch.setattr(lab_module, "start_capture", lambda link, run_dir: log.append("captures") or _Cap(run_dir))
    monkeypatch.setattr(lab_module, "stop_capture", lambda cap: None)
    monkeypatch.setattr(lab_module, "captured_ike_messages", lambda captures: [])
    guests: list[FakeGuest] = []

    def make(right: str, case: str = "esp-tunnel", fail_drop: bool = False, gone: bool = False) -> Lab:
        left_cfg, right_cfg = _configs(case, right)
        lab = Lab(LabSpec(left_cfg, right_cfg, "direct", "strongswan", right), run_dir=tmp_path / "cell1")
        lab._up = True
        for side, drv, cfg in (("left", StrongswanDriver(), left_cfg), ("right", lab_module.driver(right), right_cfg)):
            host = UmlHost(side, f"u-{side}", Image(drv.impl, "k", tmp_path, None), "ns", "if", lab.run_dir / side,
                           booted_at=1.0)
            host.prepare("")
            drv.write_config(cfg, host.dir)
            lab.peers[side] = PeerRun(side, drv, cfg, host)
            guest = FakeGuest(host, log, fail_drop=fail_drop and side == "left", gone=gone and side == "right")
            guest.start()
            guests.append(guest)
        return lab

    yield make, log
    for g in guests:
        g.done.set()


class _Cap:
    def __init__(self, run_dir: Path) -> None:
        self.pcap = run_dir / "none.pcap"


def _next(lab: Lab, tmp_path: Path, case: str) -> None:
    lab.end_cell()
    left, right = _configs(case, lab.spec.right)
    lab.next_cell(LabSpec(left, right, "direct", "strongswan", lab.spec.right), tmp_path / case)


def test_next_cell_drops_before_its_captures_and_reloads_strongswan(fake_lab, tmp_path: Path):
    make, log = fake_lab
    lab = make("strongswan")
    _next(lab, tmp_path, "esp-transport")
    assert lab.timings.reloaded == ["left", "right"]
    assert sorted(log[:2]) == ["drop left", "drop right"] and log[2] == "captures"
    assert sorted(log[3:]) == ["reload left", "reload right"]
    assert lab.peers["left"].host.dir == tmp_path / "esp-transport" / "left"
    assert lab._stat_base["left"] == {"XfrmInError": 0}
    # a certificate cell: another strongswan.conf, both daemons restarted (after their drops, before the captures)
    log.clear()
    _next(lab, tmp_path, "cert-rsa")
    assert lab.timings.reloaded == [] and log[2] == "captures" and sorted(log[3:]) == ["reset left", "reset right"]


def test_a_failed_drop_restarts_that_daemon_only(fake_lab, tmp_path: Path):
    make, log = fake_lab
    lab = make("libreswan", fail_drop=True)
    _next(lab, tmp_path, "esp-transport")
    assert sorted(log[:2]) == ["drop left", "drop right"] and log[2] == "captures"
    # charon's drop failed: restarted; pluto's succeeded: reloaded
    assert lab.timings.reloaded == ["right"] and sorted(log[3:]) == ["reload right", "reset left"]
    # a certificate cell: pluto restarted too
    log.clear()
    _next(lab, tmp_path, "cert-rsa")
    assert lab.timings.reloaded == [] and log[2] == "captures" and sorted(log[3:]) == ["reset left", "reset right"]


def test_a_delay_steps_netem_is_emptied_before_the_next_cells_captures(fake_lab, tmp_path: Path):
    """A Delay step's netem holds the cell's last packets for its delay: next_cell deletes it (dropping them)
    before its captures start, else they are the next cell's first frames under the cell before's keys."""
    make, log = fake_lab
    lab = make("strongswan")
    lab.shaped["right"] = "vec0"
    _next(lab, tmp_path, "esp-transport")
    assert "unshape right" in log and "unshape left" not in log
    assert log.index("unshape right") < log.index("captures") and lab.shaped == {}


def test_a_reset_that_stops_before_moving_ipl_fails_at_once(fake_lab, tmp_path: Path):
    """A reload's clean finds its daemon gone and exits before REMOUNT: its status is in the old /ipl.  The reset
    says so at once (the pool then boots the cell a lab of its own) instead of waiting 60 s for the new /ipl
    (seen 2026-12-01: 76 s cells after dpd-dead-peer, whose Kill ended charon after its drop passed)."""
    make, log = fake_lab
    lab = make("strongswan", gone=True)
    started = time.monotonic()
    with pytest.raises(LabError, match=r"UML guest right: its reset stopped with status 1 before /ipl moved"):
        _next(lab, tmp_path, "esp-transport")
    assert time.monotonic() - started < 10, "the reset waited for a status the guest had already written"
    assert "reload right" in log


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_the_kernel_snapshot_copies_xfrm_stat_whole(shell: str):
    """KERNEL_SNAPSHOT run by a real shell on this host (its netns's /proc/net/xfrm_stat, which no lab touches):
    the statistics part, copied with builtins, reads as the file itself does."""
    stat = Path("/proc/net/xfrm_stat")
    if shutil.which(shell) is None or shutil.which("ip") is None or not stat.exists():
        pytest.skip(f"needs {shell}, iproute2 and /proc/net/xfrm_stat (the xfrm modules) on this host")
    out = subprocess.run([shell, "-c", KERNEL_SNAPSHOT], capture_output=True, text=True, timeout=30).stdout
    text = stat.read_text()
    assert out.endswith("=== xfrm_stat\n" + text)
    counters = kernel_counters(None, out)
    assert counters["xfrm_stat"] == {line.split()[0]: int(line.split()[1]) for line in text.splitlines()}
    assert len(counters["xfrm_stat"]) > 20  # XfrmInError ... XfrmOutStateInvalid, XfrmAcquireError, ...

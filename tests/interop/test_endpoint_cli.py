"""``ipseclab endpoint --config FILE`` for real (root): two endpoints from PeerConfig files (TOML and JSON), one
per namespace of the lab's direct topology; a ping from the initiator's protected address crosses both TUN
devices; Ctrl-C on the initiator sends the Delete, the responder sees it from the peer, both leave their
counters, and the routing rules and devices are gone afterwards."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from ipseclab.lab import netns
from ipseclab.lab.lab import new_run_id
from ipseclab.lab.proc import in_netns
from ipseclab.lab.topology import make_topology

pytestmark = pytest.mark.interop


def _lines(stream: IO[str], into: queue.Queue[dict]) -> None:
    for line in stream:
        try:
            into.put(json.loads(line))
        except ValueError:
            continue


def _wait(q: queue.Queue[dict], kind: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            msg = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(msg)
        if msg.get("type") == kind:
            return msg
    raise AssertionError(f"no {kind} event within {timeout} s; saw {[m.get('type') or m.get('kind') for m in seen]}")


def test_two_endpoints_from_config_files_carry_a_ping_and_ctrl_c_deletes_the_sas(tmp_path: Path):
    topo = make_topology("direct", new_run_id())
    left, right = topo.hosts["left"], topo.hosts["right"]
    (tmp_path / "left.toml").write_text(f'''
name = "home"
local_address = "{left.address}"
remote_address = "{right.address}"
psk = "cli test key"
local_id = "left.ipseclab.test"
remote_id = "right.ipseclab.test"
local_ts = ["{left.protected}"]
remote_ts = ["{right.protected}"]
esp_proposals = ["aes128gcm16"]
''')
    (tmp_path / "right.json").write_text(json.dumps({
        "name": "office", "local_address": right.address, "remote_address": left.address, "psk": "cli test key",
        "local_id": "right.ipseclab.test", "remote_id": "left.ipseclab.test", "local_ts": [right.protected],
        "remote_ts": [left.protected], "esp_proposals": ["aes128gcm16"], "role": "responder"}))
    procs: dict[str, subprocess.Popen[str]] = {}
    events: dict[str, queue.Queue[dict]] = {}
    try:
        netns.create(topo, {})
        for side, host, cfg in (("right", right, "right.json"), ("left", left, "left.toml")):
            ns, ifname = topo.attach[side]
            subprocess.run(["ip", "-n", ns, "addr", "add", host.transit4, "dev", ifname], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{host.protected_addr}/32", "dev", "lo"], check=True)
            procs[side] = subprocess.Popen(
                in_netns(ns, [sys.executable, "-m", "ipseclab.cli", "endpoint", "--config", str(tmp_path / cfg),
                              "--out", str(tmp_path / side)]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            events[side] = queue.Queue()
            threading.Thread(target=_lines, args=(procs[side].stdout, events[side]), daemon=True).start()
            if side == "right":
                time.sleep(1.0)  # the responder's sockets first
        _wait(events["left"], "ChildSaEstablished")
        ping = subprocess.run(in_netns(topo.attach["left"][0], ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                                                left.protected_addr, right.protected_addr]),
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, f"no ping through the tunnel:\n{ping.stdout}{ping.stderr}"
        procs["left"].send_signal(signal.SIGINT)
        assert procs["left"].wait(timeout=10) == 0, procs["left"].stderr.read() if procs["left"].stderr else ""
        gone = _wait(events["right"], "IkeSaDeleted")
        assert gone["by_peer"] is True
        counters = json.loads((tmp_path / "left" / "counters.json").read_text())["dataplane"]
        assert counters["packets_out"] >= 3 and counters["packets_in"] >= 3, counters
        rules = subprocess.run(in_netns(topo.attach["left"][0], ["ip", "rule"]), capture_output=True, text=True)
        links = subprocess.run(in_netns(topo.attach["left"][0], ["ip", "-br", "link"]), capture_output=True, text=True)
        assert "492" not in rules.stdout and "ipsec0" not in links.stdout, rules.stdout + links.stdout
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        netns.destroy(topo)

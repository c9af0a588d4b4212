"""The shell lines the kernel-IPsec drivers start their daemons with (lab/impls): what runs, in which order."""

from __future__ import annotations

import dataclasses

from ipseclab.interop import case_configs
from ipseclab.lab.impls.libreswan import LIBEXEC, PLUTO_CTL, PLUTO_LOG, LibreswanDriver, render_ipsec_conf
from ipseclab.lab.topology import make_topology
from ipseclab.testcases import by_name

HOST = make_topology("direct", "unit").hosts["right"]


def _right(case: str):
    c = by_name(case)
    return case_configs(c, make_topology(c.topology, "unit"), "libreswan")[1]


def test_libreswan_starts_its_programs_without_the_ipsec_wrapper():
    cfg = _right("esp-tunnel")
    lines = LibreswanDriver().start_script(cfg, HOST).splitlines()
    # no addconn: pluto adds the auto=add conns of its --config as it starts, and adding them again replaced them
    # (terminating an SA set up on them meanwhile); the start waits until whack --status counts them
    skip = ("i=0", "[ -S", "ip ", "mkdir", "o=", "unset", "  t=", "  case", "  [ $i", "done")
    programs = [line.split()[0] for line in lines if not line.startswith(skip)]
    assert programs == ["certutil", "tail", f"{LIBEXEC}/pluto", f"{LIBEXEC}/whack", f"{LIBEXEC}/whack"]
    assert f"$({LIBEXEC}/whack --ctlsocket {PLUTO_CTL} --status 2>&1)" in lines[-4]
    assert "*'Total IPsec connections: loaded 1,'*) break;;" in lines[-3]
    assert not any(line.startswith("ipsec ") for line in lines)
    # pluto starts without its debug (its self-tests would be dumped), whack turns the key logging on once it listens
    pluto = next(line for line in lines if line.startswith(f"{LIBEXEC}/pluto"))
    assert pluto.index("--config /ipl/ipsec.conf") < pluto.index("--debug none")
    debug = lines.index(f"{LIBEXEC}/whack --ctlsocket {PLUTO_CTL} --debug crypt --debug private || exit 1")
    assert lines.index(f"{LIBEXEC}/whack --ctlsocket {PLUTO_CTL} --listen") < debug
    assert "\tauto=add\n" in render_ipsec_conf(cfg, log_path="/ipl/pluto.log")  # what pluto adds itself


def test_libreswan_is_revived_on_its_nss_database_without_its_dead_lock_file():
    cfg = _right("esp-tunnel")
    script = LibreswanDriver().revive_script(cfg, HOST)
    assert script.startswith(f"rm -f /run/pluto/pluto.pid {PLUTO_CTL}\n")
    assert "certutil" not in script and "tail " not in script  # its database and log forwarder are still there
    assert script.endswith(LibreswanDriver()._launch(cfg))


def test_libreswan_without_key_logging_leaves_pluto_s_debug_alone():
    cfg = dataclasses.replace(_right("esp-tunnel"), log_keys=False)
    script = LibreswanDriver().start_script(cfg, HOST)
    assert "--debug" not in script
    # pluto logs on the guest's tmpfs (it outlives a cell when reloaded); the forwarder, started before it, copies
    # the log from its first byte into /ipl/pluto.log
    assert f"--logfile {PLUTO_LOG} || exit 1\n" in script
    assert f"tail -c +$((o + 1)) -F -s 0.05 {PLUTO_LOG} >> /ipl/pluto.log" in script
    assert script.index("tail -c") < script.index(f"{LIBEXEC}/pluto ")

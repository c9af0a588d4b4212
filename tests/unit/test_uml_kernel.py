"""The UML kernel the lab boots and its start-up probe, without root.

The probe's diagnosis is held against a console log kept from a host whose CPU has AMX, where
bookworm's UML 6.1 panicked as init started (``tests/vectors/uml-6.1-amx-host.console.log``,
the same file as ``shared/evidence/``).  Booting is exercised with stand-in kernels: small
scripts that print such a console (or the probe's mark) and exit the way UML does, so the
cache, the exit status and the absence of leftovers are checked on any host.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ipseclab.cli import main
from ipseclab.errors import LabError
from ipseclab.lab import cleanup
from ipseclab.lab.images import image_key
from ipseclab.lab.runtimes.uml_kernel import UmlKernel, host_debian_mirror, installed_kernels, select_kernel
from ipseclab.lab.runtimes.uml_probe import MARK, CpuInfo, check_kernel, diagnose, require_bootable

EVIDENCE = Path(__file__).resolve().parents[1] / "vectors" / "uml-6.1-amx-host.console.log"
AMX_CPU = CpuInfo("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", frozenset({"fpu", "xsave", "amx_tile", "amx_bf16"}))
PLAIN_CPU = CpuInfo("AMD EPYC 7B13", frozenset({"fpu", "xsave", "avx2"}))
EVIDENCE_LINES = (
    "Run /sbin/ipseclab-init as init process",
    "userspace - ptrace set fp regs failed, errno = 14",
    "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("IPSECLAB_CACHE", str(cache))
    monkeypatch.delenv("IPSECLAB_UML_KERNEL", raising=False)
    return cache


def stand_in_kernel(tmp_path: Path, console: str, status: int, version: str = "6.1.176") -> Path:
    """A kernel directory (as ``kernel install`` leaves one) whose ``linux.uml`` prints ``console`` and exits."""
    d = tmp_path / f"kernel-{version}-{status}"
    (d / "modules" / version).mkdir(parents=True)
    (d / "console.txt").write_text(console)
    binary = d / "linux.uml"
    binary.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = --version ] && {{ echo {version}; exit 0; }}
        cat '{d / "console.txt"}'
        exit {status}
        """))
    binary.chmod(0o755)
    (d / "kernel.json").write_text(json.dumps({"binary": str(binary), "modules": str(d / "modules" / version),
                                               "version": version, "origin": "a stand-in for the test"}))
    return d


def processes_running(directory: Path) -> list[str]:
    """Processes whose command line names something in ``directory``."""
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(directory).encode() in p.read_bytes():
                found.append(p.parent.name)
        except OSError:
            continue  # it ended while we looked
    return found


def test_diagnosis_of_the_amx_panic_names_cause_fix_and_console_lines():
    line, evidence = diagnose(EVIDENCE.read_text(), "6.1.176", AMX_CPU)
    assert "\n" not in line
    for needle in ("UML kernel 6.1.176 cannot run on this CPU", AMX_CPU.model, "AMX (amx_tile)", "XSAVE",
                   "PTRACE_SETREGSET", "errno 14", "fix: run `sudo make setup`", "ipseclab kernel install"):
        assert needle in line, f"expected {needle!r} in the diagnosis, got {line!r}"
    assert evidence == EVIDENCE_LINES


def test_diagnosis_reads_the_kernel_version_from_the_console_when_not_given():
    line, _ = diagnose(EVIDENCE.read_text(), "", AMX_CPU)
    assert line.startswith("UML kernel 6.1.176 cannot run on this CPU")


def test_the_same_symptom_without_amx_says_so_instead_of_blaming_amx():
    line, evidence = diagnose(EVIDENCE.read_text(), "6.1.176", PLAIN_CPU)
    assert "reports no amx_tile flag" in line and "the CPU has AMX" not in line
    assert "fix:" in line and evidence == EVIDENCE_LINES


@pytest.mark.parametrize(("console", "kw", "needle"), [
    ("Linux version 6.1.1\nKernel panic - not syncing: VFS: Unable to mount root fs\n", {},
     "panicked before the probe's init ran (Kernel panic - not syncing: VFS: Unable to mount root fs)"),
    ("Checking PROT_EXEC mmap in /tmp...\n/tmp is noexec\n", {"exit_status": 1}, "exited (status 1)"),
    ("Linux version 6.1.1\n", {"timed_out": True}, "did not reach init within the probe's time limit"),
])
def test_other_failures_get_their_own_diagnosis(console, kw, needle):
    line, evidence = diagnose(console, "", PLAIN_CPU, **kw)
    assert needle in line and "fix:" in line
    assert evidence, "expected the console lines behind the diagnosis"


def test_probe_boots_a_failing_kernel_once_and_caches_the_verdict(tmp_path):
    kdir = stand_in_kernel(tmp_path, EVIDENCE.read_text(), 134)
    counter = kdir / "console.txt"
    kernel = UmlKernel(kdir / "linux.uml", kdir / "modules" / "6.1.176", "6.1.176", "stand-in")
    first = check_kernel(kernel, cpu=AMX_CPU)
    assert not first.ok and not first.cached and first.evidence == EVIDENCE_LINES
    counter.write_text(MARK)  # were the kernel booted again, it would now pass: the cache must answer instead
    second = check_kernel(kernel, cpu=AMX_CPU)
    assert second.cached and not second.ok and second.diagnosis == first.diagnosis
    assert check_kernel(kernel, cpu=PLAIN_CPU).ok, "expected another CPU model to get a verdict of its own"
    assert check_kernel(kernel, cpu=AMX_CPU, again=True).ok, "expected --again to boot the kernel again"


def test_probe_passes_a_kernel_whose_init_prints_the_mark(tmp_path):
    kdir = stand_in_kernel(tmp_path, f"Run /tmp/init as init process\n{MARK}\nreboot: Power down\n", 0)
    kernel = UmlKernel(kdir / "linux.uml", kdir / "modules" / "6.1.176", "6.1.176", "stand-in")
    verdict = require_bootable(kernel)
    assert verdict.ok and "runs on this CPU" in verdict.summary()


def test_interop_with_a_kernel_that_cannot_run_stops_before_any_case_with_exit_2(tmp_path, monkeypatch, capsys):
    """Done-when 2 of the lab issue: one-line diagnosis, exit status 2, nothing left behind."""
    kdir = stand_in_kernel(tmp_path, EVIDENCE.read_text(), 134)
    monkeypatch.setenv("IPSECLAB_UML_KERNEL", str(kdir))
    monkeypatch.setattr("ipseclab.lab.runtimes.uml_probe.host_cpu", lambda: AMX_CPU)

    def must_not_run(*args: object, **kw: object) -> None:
        raise AssertionError("the lab started building although the kernel cannot run")

    for name in ("ipseclab.lab.netns.create", "ipseclab.lab.images.build_image", "ipseclab.lab.lab.Lab.up"):
        monkeypatch.setattr(name, must_not_run)
    before = set(cleanup.sweep(dry_run=True).namespaces)
    out = tmp_path / "runs"
    rc = main(["interop", "--case", "esp-tunnel", "--pair", "strongswan:libreswan", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[0].startswith("ipseclab interop: error: UML kernel 6.1.176 cannot run on this CPU"), err
    assert "the CPU has AMX (amx_tile)" in err[0] and "fix:" in err[0]
    assert [e.removeprefix("  console: ") for e in err[1:]] == list(EVIDENCE_LINES)
    assert not any(out.glob("*/lab.json")), "expected no case to have started"
    assert set(cleanup.sweep(dry_run=True).namespaces) <= before
    assert not processes_running(kdir), "expected the probe's kernel process to be gone"


def test_cli_diagnoses_a_kept_console_log(capsys):
    assert main(["kernel", "probe", "--console-log", str(EVIDENCE)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ipseclab kernel: error: UML kernel 6.1.176 cannot run on this CPU")
    assert err[1:] == [f"  console: {line}" for line in EVIDENCE_LINES]


def test_select_kernel_prefers_the_environment_then_the_newest_cached(tmp_path, private_cache, monkeypatch):
    kernels = private_cache / "kernels"
    older = stand_in_kernel(kernels, "", 0, "6.12.1")
    newer = stand_in_kernel(kernels, "", 0, "7.2.7")
    assert [k.version for k in installed_kernels()] == ["7.2.7", "6.12.1"]
    assert select_kernel().binary == newer / "linux.uml"
    monkeypatch.setenv("IPSECLAB_UML_KERNEL", str(older))
    assert select_kernel().version == "6.12.1"
    monkeypatch.setenv("IPSECLAB_UML_KERNEL", str(tmp_path / "nowhere"))
    with pytest.raises(LabError, match="names no usable UML kernel"):
        select_kernel()


def test_images_key_on_the_kernel(tmp_path):
    a = UmlKernel(tmp_path / "a", tmp_path / "m" / "6.1.176", "6.1.176", "bookworm")
    b = UmlKernel(tmp_path / "b", tmp_path / "m" / "7.2.7", "7.2.7", "unstable", "7.2um1")
    assert image_key("strongswan", a) != image_key("strongswan", b)
    assert image_key("strongswan", b) == image_key("strongswan", b)


def test_the_debian_mirror_comes_from_the_hosts_own_apt_sources(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(textwrap.dedent("""\
        Types: deb
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main

        Types: deb
        # a comment inside the stanza
        URIs: http://mirror.example/debian/
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        """))
    (etc / "sources.list.d" / "other.list").write_text("deb https://elsewhere.example/apt nodistro main\n")
    # a third party's repository for the same release, read first, is not Debian's archive
    (etc / "sources.list.d" / "azure-cli.sources").write_text(textwrap.dedent("""\
        Types: deb
        URIs: https://vendor.example/repos/azure-cli
        Suites: bookworm
        Components: main
        Signed-By: /etc/apt/keyrings/vendor.gpg
        """))
    uri, keyring = host_debian_mirror(etc, codename="bookworm")
    assert (uri, keyring) == ("http://mirror.example/debian", "/usr/share/keyrings/debian-archive-keyring.gpg")
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text("deb [arch=amd64] http://old.example/debian stable contrib main\n")
    assert host_debian_mirror(etc, codename="bookworm") == ("http://old.example/debian", "")


def test_a_doctored_cache_entry_is_not_trusted(tmp_path, private_cache):
    kdir = stand_in_kernel(tmp_path, EVIDENCE.read_text(), 134)
    kernel = UmlKernel(kdir / "linux.uml", kdir / "modules" / "6.1.176", "6.1.176", "stand-in")
    assert not check_kernel(kernel, cpu=AMX_CPU).ok
    cache = private_cache / "probe.json"
    data = json.loads(cache.read_text())
    for entry in data.values():
        entry["ok"] = "false"  # truthy: a naive reader would let the kernel through
    cache.write_text(json.dumps(data))
    verdict = check_kernel(kernel, cpu=AMX_CPU)
    assert verdict.ok is False and not verdict.cached, "expected a malformed entry to be probed again"


def test_a_failure_that_may_not_recur_is_not_cached(tmp_path):
    kdir = stand_in_kernel(tmp_path, "Linux version 6.1.176\nKilled\n", 143)  # killed, no panic: not the kernel's fault
    kernel = UmlKernel(kdir / "linux.uml", kdir / "modules" / "6.1.176", "6.1.176", "stand-in")
    assert not check_kernel(kernel, cpu=PLAIN_CPU).ok
    (kdir / "console.txt").write_text(MARK)
    assert check_kernel(kernel, cpu=PLAIN_CPU).ok, "expected the next run to probe again"


def test_cli_reads_a_console_log_of_a_good_boot_as_good(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_text(f"Run /tmp/init as init process\n{MARK}\nreboot: Power down\n")
    assert main(["kernel", "probe", "--console-log", str(log)]) == 0
    assert "ran the probe's init" in capsys.readouterr().out

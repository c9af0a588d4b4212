"""The ipseclab pytest plugin (entry point ``pytest11``): the public test API of ipseclab.

Registered through pyproject.toml, so any project that installs ipseclab gets it without a conftest:

- markers ``interop`` (needs root and real peers) and ``tshark`` (needs Wireshark's tshark); a test with
  one is skipped, with the reason and the fix, where this host lacks it.  The skips live here, not in a
  project's conftest.py, so every project that uses ipseclab gets the same reasons.
- options ``--ipseclab-pair INIT:RESP`` (repeatable), ``--ipseclab-case NAME`` (repeatable),
  ``--ipseclab-runtime``, ``--ipseclab-kernel-ipsec`` and ``--ipseclab-keep``; bad values stop
  the session with one line.
- fixtures ``ike_pair`` (two IKEv2 engines wired in memory, no root), ``ipseclab_lab`` (a factory that
  boots a lab, a :class:`~ipseclab.lab.live.LiveLab` with the REPL's verbs, and tears it down after the
  test), ``ipseclab_trace`` (Wireshark's decrypted view of a lab's run), ``kernel_peer`` (a Linux kernel
  under UML with hand-set SAs, the oracle for ESP/AH), and ``ipseclab_pair``/``ipseclab_case``, which
  parametrise a test over the pairs and cases the options name (default: the main matrix's).
- reporting: a failed test's labs (run directory, pcaps, key files) are printed and attached to the JUnit
  XML as test properties, as ``record_property`` does (a passing test's too with ``--ipseclab-keep``); the
  tests parametrised over ``ipseclab_pair`` make the results matrix printed at the end of the session; and
  a final sweep removes whatever the session's labs left (processes, namespaces, containers of their run
  ids only).

Everything heavier than pytest itself is imported inside the hooks and fixtures that need it, so a
project that installs ipseclab but does not use the plugin pays nothing at start-up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .lab.runtimes import KERNEL_IPSEC_ENV, KERNEL_IPSEC_MODES, RUNTIMES  # stdlib imports only: cheap at start-up
from .matrix import pair_id  # a pair's parameter id; stdlib imports only too

if TYPE_CHECKING:
    from .ike.loopback import Pair
    from .lab.kernel_peer import KernelPeer
    from .lab.lab import Lab
    from .lab.live import LiveLab
    from .matrix import CaseResult
    from .pcap.trace import Trace
    from .testcases.base import TestCase

TSHARK_REASON = "tshark is not installed (apt-get install tshark)"
ROOT_REASON = "interop tests need root (network namespaces, UML)"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()  # on an item: its phases' reports
_LABS = pytest.StashKey[list["Lab"]]()  # on an item: the labs its ipseclab_lab made
_FAILED = pytest.StashKey[list[tuple[str, Path, list[Path]]]]()  # on the config: failed tests' labs, for the summary
_RESULTS = pytest.StashKey[list["CaseResult"]]()  # on the config: the matrix cells run, for the summary
_RUN_IDS = pytest.StashKey[list[str]]()  # on the config: every lab's run id, for the final sweep


def _is_root() -> bool:
    return os.geteuid() == 0


def _has_tshark() -> bool:
    return shutil.which("tshark") is not None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipseclab", "ipseclab interop labs")
    group.addoption("--ipseclab-pair", action="append", metavar="INIT:RESP", default=None,
                    help="an initiator:responder pair for ipseclab_pair (repeatable; default: the main matrix's)")
    group.addoption("--ipseclab-case", action="append", metavar="NAME", default=None,
                    help="a test case for ipseclab_case (repeatable; default: every case)")
    group.addoption("--ipseclab-runtime", choices=RUNTIMES, default=None,
                    help="where ipseclab_lab runs kernel peers (default: $IPSECLAB_RUNTIME, else uml)")
    group.addoption("--ipseclab-kernel-ipsec", choices=KERNEL_IPSEC_MODES, default=None,
                    help="under the docker runtime: kernel peers on the host kernel's ESP/AH (host) or on their own "
                         "kernel under UML (uml); default $IPSECLAB_KERNEL_IPSEC, else auto (the host's if it has it)")
    group.addoption("--ipseclab-keep", action="store_true", default=False,
                    help="keep each lab's run directory (pcaps, key files, logs) when its test passes too")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: needs root and real strongSwan/Libreswan peers")
    config.addinivalue_line("markers", "tshark: needs Wireshark's tshark binary")
    # check the options now: a typo is one line before collection, not an error in every test
    if config.getoption("--ipseclab-pair", None):
        pairs(config)
    if config.getoption("--ipseclab-case", None):
        cases(config)
    if config.getoption("--ipseclab-kernel-ipsec", None):  # read by every Lab of the session
        os.environ[KERNEL_IPSEC_ENV] = config.getoption("--ipseclab-kernel-ipsec")


def pairs(config: pytest.Config) -> list[tuple[str, str]]:
    """The ``--ipseclab-pair`` pairs, or the main matrix's; pytest.UsageError naming a bad one."""
    specs: list[str] | None = config.getoption("--ipseclab-pair", None)
    if not specs:
        from .interop import DEFAULT_PAIRS

        return list(DEFAULT_PAIRS)
    from .lab.impls import implementations

    known = implementations()
    out = []
    for spec in specs:
        init, sep, resp = spec.partition(":")
        if not sep or init not in known or resp not in known:
            raise pytest.UsageError(f"--ipseclab-pair {spec!r}: write INITIATOR:RESPONDER, each one of "
                                    f"{', '.join(known)}")
        out.append((init, resp))
    return list(dict.fromkeys(out))


def cases(config: pytest.Config) -> list[TestCase]:
    """The ``--ipseclab-case`` cases, or every case; pytest.UsageError naming an unknown one."""
    names: list[str] | None = config.getoption("--ipseclab-case", None)
    from .errors import ConfigError
    from .testcases import ALL_CASES, by_name

    if not names:
        return list(ALL_CASES)
    try:
        return list({c.name: c for c in (by_name(n) for n in names)}.values())
    except ConfigError as exc:
        raise pytest.UsageError(f"--ipseclab-case: {exc}") from None


def cell_of_nodeid(nodeid: str) -> tuple[TestCase, str, str] | None:
    """The (case, initiator, responder) of a test parametrised over ``ipseclab_case`` and ``ipseclab_pair`` and
    nothing else, from its node id alone (``...[CASE-INIT-to-RESP]``, as :func:`pytest_generate_tests` names
    them), or None: what a pytest-xdist scheduler, which sees node ids only, groups a pair's cells by."""
    from .lab.impls import implementations
    from .testcases import ALL_CASES

    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    ident = nodeid[nodeid.rindex("[") + 1 : -1]
    pairs = {pair_id(i, r): (i, r) for i in implementations() for r in implementations()}
    for case in sorted(ALL_CASES, key=lambda c: -len(c.name)):  # "esp-tunnel-nat" before "esp-tunnel"
        pair = pairs.get(ident[len(case.name) + 1 :]) if ident.startswith(case.name + "-") else None
        if pair is not None:
            return case, *pair
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``ipseclab_pair`` or ``ipseclab_case`` runs once per selected pair or case."""
    if "ipseclab_case" in metafunc.fixturenames:  # first, so ids read case-pair as the matrix does
        selected = cases(metafunc.config)
        metafunc.parametrize("ipseclab_case", selected, ids=[c.name for c in selected])
    if "ipseclab_pair" in metafunc.fixturenames:
        selected_pairs = pairs(metafunc.config)
        metafunc.parametrize("ipseclab_pair", selected_pairs, ids=[pair_id(i, r) for i, r in selected_pairs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, with the reason and the fix, what this host cannot run."""
    no_tshark = not _has_tshark()
    not_root = not _is_root()
    for item in items:
        if no_tshark and item.get_closest_marker("tshark"):
            item.add_marker(pytest.mark.skip(reason=TSHARK_REASON))
        if not_root and item.get_closest_marker("interop"):
            item.add_marker(pytest.mark.skip(reason=ROOT_REASON))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so ``ipseclab_lab`` knows at teardown whether the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    labs = item.stash.get(_LABS, [])
    if report.failed and report.when == "call" and labs:
        report.sections.append(("ipseclab lab", "".join(
            f"run directory (pcaps, key files and logs, complete once torn down): {lab.run_dir}\n" for lab in labs)))
    if report.when == "teardown":
        result = _cell_result(item, item.stash[_REPORTS])
        if result is not None:
            item.config.stash.setdefault(_RESULTS, []).append(result)
    return report


def _cell_result(item: pytest.Item, reports: dict[str, pytest.TestReport]) -> CaseResult | None:
    """The matrix cell a test parametrised over ``ipseclab_pair`` was (its case: ``ipseclab_case`` or the
    test's name), or None for other tests and for skips that are not UNSUPPORTED (no root, no tshark)."""
    from .matrix import ERROR, FAILED, PASSED, UNSUPPORTED, CaseResult

    params = getattr(getattr(item, "callspec", None), "params", {})
    pair = params.get("ipseclab_pair")
    if pair is None:
        return None
    case = params.get("ipseclab_case")
    name = str(getattr(case, "name", None) or getattr(item, "originalname", None) or item.name)
    seconds = round(sum(r.duration for r in reports.values()), 1)
    labs = item.stash.get(_LABS, [])
    run_dir = str(labs[0].run_dir) if labs else ""
    setup, call = reports.get("setup"), reports.get("call")
    skipped = next((r for r in reports.values() if r.skipped), None)
    if skipped is not None:
        why = skipped.longrepr[2] if isinstance(skipped.longrepr, tuple) else str(skipped.longrepr)
        why = why.removeprefix("Skipped: ")
        if not why.startswith("UNSUPPORTED: "):
            return None
        return CaseResult(name, pair[0], pair[1], UNSUPPORTED, why.removeprefix("UNSUPPORTED: "), run_dir, seconds)
    if setup is not None and setup.failed:
        return CaseResult(name, pair[0], pair[1], ERROR, _first_line(setup), run_dir, seconds)
    if call is not None and call.failed:
        return CaseResult(name, pair[0], pair[1], FAILED, _first_line(call), run_dir, seconds)
    if any(r.failed for r in reports.values()):
        return CaseResult(name, pair[0], pair[1], ERROR, _first_line(reports["teardown"]), run_dir, seconds)
    return CaseResult(name, pair[0], pair[1], PASSED, "", run_dir, seconds)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0] if text.strip() else report.outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """After the failures: each failed test's lab, its run directory and the pcaps and key files in it."""
    failed = config.stash.get(_FAILED, [])
    if failed:
        terminalreporter.section("ipseclab labs of failed tests")
        for nodeid, run_dir, files in failed:
            terminalreporter.write_line(f"{nodeid}: {run_dir}")
            for f in files:
                terminalreporter.write_line(f"  {f}")
    results = config.stash.get(_RESULTS, [])
    if results:
        from .matrix import matrix_markdown

        terminalreporter.section("ipseclab results matrix")
        for line in matrix_markdown(results).splitlines():
            terminalreporter.write_line(line)
    swept = config.stash.get(_SWEPT, "")
    if swept:
        terminalreporter.section("ipseclab sweep")
        terminalreporter.write_line(swept)


_SWEPT = pytest.StashKey[str]()  # on the config: what the final sweep found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove whatever this session's labs left behind (their run ids only: other sessions' labs are not
    touched), after every fixture's own teardown; what it found is reported in the summary."""
    run_ids = session.config.stash.get(_RUN_IDS, [])
    if not run_ids:
        return
    from .lab import cleanup

    found = []
    for run_id in dict.fromkeys(run_ids):
        left = cleanup.sweep(run_id)
        if left:
            found.append(f"run {run_id}: removed {left.describe()}")
    session.config.stash[_SWEPT] = "\n".join(found)


@pytest.fixture
def ike_pair(request: pytest.FixtureRequest) -> Pair:
    """An IKEv2 initiator and responder wired in memory (``ipseclab.ike.loopback.Pair``), not yet started.

    Default: PSK, "moon.example" -> "sun.example", each side's IkeConfig defaults.  Indirect
    parametrisation changes it: a dict of IkeConfig fields applies to both sides
    (``{"ike_proposals": ("aes128-sha256-modp2048",)}``), a tuple gives both IkeConfigs.
    """
    from dataclasses import replace

    from .ike import IkeConfig
    from .ike.loopback import Pair

    init, resp = IkeConfig("moon.example", "sun.example", b"ipseclab"), IkeConfig("sun.example", "moon.example",
                                                                                   b"ipseclab")
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        init, resp = replace(init, **param), replace(resp, **param)
    elif isinstance(param, tuple) and len(param) == 2 and all(isinstance(c, IkeConfig) for c in param):
        init, resp = param
    elif param is not None:
        raise TypeError(f"ike_pair takes a dict of IkeConfig fields or a tuple of two IkeConfigs, not {param!r}")
    return Pair.of(init, resp)


LabFactory = Callable[..., "Lab"]


@pytest.fixture
def ipseclab_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """A factory that boots a lab and returns it up; every lab it made is torn down after the test.

    ``ipseclab_lab(case, initiator="strongswan", responder="libreswan", runtime=None)``: ``case`` is a test
    case (or its name), whose declaration gives both configurations and the topology, or a pair of
    ``PeerConfig`` (initiator's, responder's) with ``topology=``.  A cell the implementations cannot do is
    skipped with their reason (UNSUPPORTED); without root the test is skipped.  When the test fails, the run
    directory with its pcaps and key files is printed and attached to the JUnit XML (test properties, as
    ``record_property`` makes them); it is removed when the test passes unless ``--ipseclab-keep``.
    """
    stack = ExitStack()
    made: list[Lab] = []
    config = request.config

    def factory(case: TestCase | str | tuple[Any, Any], initiator: str = "strongswan",
                responder: str = "libreswan", runtime: str | None = None, topology: str | None = None) -> LiveLab:
        from .errors import ConfigError, UnsupportedError
        from .lab import live
        from .repl import lab_spec

        wanted = runtime or config.getoption("--ipseclab-runtime", None) or ""
        try:
            spec = lab_spec(case, initiator, responder, wanted, topology, need_ike_keys=True)
        except UnsupportedError as exc:
            pytest.skip(f"UNSUPPORTED: {exc}")
        except ConfigError as exc:
            raise ConfigError(f"ipseclab_lab: {exc}") from None
        if not _is_root():
            pytest.skip(ROOT_REASON)
        run_dir = tmp_path_factory.mktemp(f"ipseclab-{initiator}-to-{responder}-", numbered=True)
        lab = live.LiveLab(spec, run_dir=run_dir)
        made.append(lab)
        request.node.stash.setdefault(_LABS, []).append(lab)
        config.stash.setdefault(_RUN_IDS, []).append(lab.run_id)
        stack.enter_context(lab)
        return lab

    with stack:
        yield factory
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    for lab in made:
        _report_lab(lab, failed, config.getoption("--ipseclab-keep", False), _recorder(request))
        if failed:
            config.stash.setdefault(_FAILED, []).append((request.node.nodeid, Path(lab.run_dir),
                                                         _artifacts(lab)))


def _artifacts(lab: Lab) -> list[Path]:
    from .matrix import artifacts

    return artifacts(str(lab.run_dir))


@pytest.fixture
def ipseclab_trace(request: pytest.FixtureRequest, ipseclab_lab: LabFactory) -> Callable[..., Trace]:
    """Wireshark's view of a lab's run, decrypted with the run's key files: ``ipseclab_trace(lab)``.

    It takes the lab down first (the key files are collected on the way down, and captures are complete
    only once stopped), so call it when the traffic is done; without an argument it is the last lab
    ``ipseclab_lab`` made.  Needs tshark (mark the test ``tshark``).
    """
    from .errors import ConfigError
    from .pcap.trace import Trace

    def trace(lab: Lab | None = None) -> Trace:
        labs = request.node.stash.get(_LABS, [])
        if lab is None:
            if not labs:
                raise ConfigError("ipseclab_trace: no lab yet; make one with ipseclab_lab first")
            lab = labs[-1]
        lab.down()
        return Trace.load(Path(lab.run_dir))

    return trace


def _recorder(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """What pytest's ``record_property`` does (a property of the test in the JUnit XML), without its warning
    under the default ``junit_family=xunit2``: CI systems read these properties whatever the family."""
    return lambda name, value: request.node.user_properties.append((name, value))


def _report_lab(lab: Lab, failed: bool, keep: bool,
                record_property: Callable[[str, object], None]) -> None:
    """After the test (the lab is down, its key files written): on failure attach the run directory, its pcaps
    and key files to the JUnit XML; on success remove it unless asked to keep it."""
    run_dir = Path(lab.run_dir)
    if failed or keep:
        record_property("ipseclab_run_dir", str(run_dir))
        for f in _artifacts(lab):
            record_property("ipseclab_artifact", str(f))
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def kernel_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelPeer]:
    """A Linux kernel under UML with ESP/AH SAs you set by hand (:class:`ipseclab.lab.kernel_peer.KernelPeer`),
    up for the test and torn down after it: the independent oracle for ESP/AH made by your own code.

    ``kernel_peer.install(KernelSa(...), KernelSa(...))`` sets an SA pair, ``inject`` sends packets to the
    guest, ``captured()`` returns what it sent, ``states()``/``drop_counters()`` its counters.  Without root
    the test is skipped.  On failure (or with ``--ipseclab-keep``) its run directory, capture and SA dump are
    printed and attached to the JUnit XML; a passing test's run directory is removed.
    """
    if not _is_root():
        pytest.skip(ROOT_REASON)
    from .lab.kernel_peer import KernelPeer

    run_dir = tmp_path_factory.mktemp("ipseclab-kernel-peer-", numbered=True)
    kp = KernelPeer(run_dir)
    request.config.stash.setdefault(_RUN_IDS, []).append(kp.run_id)
    with kp:
        yield kp
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    keep = request.config.getoption("--ipseclab-keep", False)
    record_property = _recorder(request)
    files = [p for p in (*sorted(run_dir.glob("*.pcap")), run_dir / "xfrm-state.txt") if p.exists()]
    if failed or keep:
        record_property("ipseclab_run_dir", str(run_dir))
        for f in files:
            record_property("ipseclab_artifact", str(f))
        if failed:
            request.config.stash.setdefault(_FAILED, []).append((request.node.nodeid, run_dir, files))
    else:
        shutil.rmtree(run_dir, ignore_errors=True)

"""The pytest plugin, from a project that has nothing but the installed plugin: options, skips, fixtures.

Each test writes a small test file into pytester's empty directory (no conftest.py) and runs pytest on it
in this process, so the plugin is the one the ``pytest11`` entry point loads.  Nothing boots a lab: where
``ipseclab_lab`` would, ``LiveLab`` is replaced by a stand-in that makes a run directory and records its teardown.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ipseclab import pytest_plugin
from ipseclab.interop import DEFAULT_PAIRS

# imported before pytester snapshots sys.modules: the plugin finds these very modules (which the fixtures patch)
from ipseclab.lab import kernel_peer, live
from ipseclab.testcases import ALL_CASES

pytest_plugins = ["pytester"]


@pytest.fixture
def host(monkeypatch):
    """Pretend this host has (or lacks) root and tshark: ``host(root=False, tshark=True)``."""

    def set_host(root: bool = True, tshark: bool = True) -> None:
        monkeypatch.setattr(pytest_plugin, "_is_root", lambda: root)
        monkeypatch.setattr(pytest_plugin, "_has_tshark", lambda: tshark)

    return set_host


class FakeLab:
    """Stands in for ipseclab.lab.lab.Lab: a run directory with a capture and key files, and a teardown mark."""

    def __init__(self, spec, run_dir: Path) -> None:
        self.spec, self.run_dir, self.run_id = spec, run_dir, "ipl-fake"

    def __enter__(self) -> FakeLab:
        for name in ("l0.pcap", "ikev2_decryption_table", "esp_sa", "charon.log"):
            (self.run_dir / name).write_text("x")
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> None:
        (self.run_dir / "torn-down").write_text(f"{self.spec.left}->{self.spec.right} {self.spec.topology}")


@pytest.fixture
def no_boot(monkeypatch):
    """Replace Lab by FakeLab; returns where the labs' run directories go."""

    monkeypatch.setattr(live, "LiveLab", FakeLab)


# --- options -----------------------------------------------------------------------------------------


def test_the_options_are_in_pytest_help(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*ipseclab interop labs:*", "*--ipseclab-pair=INIT:RESP*", "*--ipseclab-case=NAME*",
                                 "*--ipseclab-runtime={auto,uml,docker}*", "*--ipseclab-keep*"])


@pytest.mark.parametrize(("args", "line"), [
    (["--ipseclab-pair", "strongswan"], "ERROR: --ipseclab-pair 'strongswan': write INITIATOR:RESPONDER, each one of "
                                        "strongswan, libreswan*"),
    (["--ipseclab-pair", "strongswan:nobody"], "ERROR: --ipseclab-pair 'strongswan:nobody': *"),
    (["--ipseclab-case", "bogus"], "ERROR: --ipseclab-case: no test case 'bogus'; known: esp-tunnel*"),
])
def test_a_bad_option_stops_the_session_with_one_line(pytester, args, line):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str()


def test_a_bad_runtime_is_refused_by_choices(pytester):
    result = pytester.runpytest("--ipseclab-runtime", "vm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ipseclab-runtime: invalid choice: 'vm'*"])


def test_tests_taking_ipseclab_pair_and_case_run_once_per_selected_pair_and_case(pytester):
    pytester.makepyfile("""
        def test_cell(ipseclab_case, ipseclab_pair):
            assert isinstance(ipseclab_pair, tuple) and ipseclab_case.name
    """)
    result = pytester.runpytest("-v", "--ipseclab-pair", "strongswan:libreswan", "--ipseclab-pair",
                                "ipseclab:strongswan", "--ipseclab-pair", "strongswan:libreswan",
                                "--ipseclab-case", "esp-tunnel-nat")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_cell?esp-tunnel-nat-strongswan-to-libreswan? PASSED*",
                                 "*test_cell?esp-tunnel-nat-ipseclab-to-strongswan? PASSED*"])


def test_a_cells_node_id_names_its_case_and_pair(pytester):
    """What an xdist scheduler groups cells by (it sees node ids only): pytest's own node id of every case with
    pairs whose implementation names hold dashes too reads back as that test's parameters."""
    pytester.makepyfile("""
        from ipseclab.pytest_plugin import cell_of_nodeid

        def test_cell(ipseclab_case, ipseclab_pair, request):
            case, init, resp = cell_of_nodeid(request.node.nodeid)
            assert (case.name, (init, resp)) == (ipseclab_case.name, ipseclab_pair)

        def test_not_a_cell(request):
            assert cell_of_nodeid(request.node.nodeid) is None
    """)
    pairs = ["strongswan-libipsec:strongswan", "ipseclab:strongswan-libipsec", "libreswan:openiked"]
    result = pytester.runpytest(*(arg for p in pairs for arg in ("--ipseclab-pair", p)))
    result.assert_outcomes(passed=len(ALL_CASES) * len(pairs) + 1)


def test_without_options_they_cover_the_main_matrix(pytester):
    pytester.makepyfile("def test_cell(ipseclab_case, ipseclab_pair):\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=len(ALL_CASES) * len(DEFAULT_PAIRS))


# --- skips ----------------------------------------------------------------------------------------------

MARKED = """
    import pytest

    @pytest.mark.interop
    def test_needs_root():
        pass

    @pytest.mark.tshark
    def test_needs_tshark():
        pass

    def test_needs_nothing():
        pass
"""


def test_without_root_and_tshark_the_marked_tests_are_skipped_with_the_reason(pytester, host):
    host(root=False, tshark=False)
    pytester.makepyfile(MARKED)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*:3: interop tests need root (network namespaces, UML)",
                                 "SKIPPED*:7: tshark is not installed (apt-get install tshark)"])


def test_with_root_and_tshark_the_marked_tests_run(pytester, host):
    host(root=True, tshark=True)
    pytester.makepyfile(MARKED)
    pytester.runpytest().assert_outcomes(passed=3)


def test_the_markers_are_registered_for_strict_markers(pytester, host):
    host()
    pytester.makepyfile(MARKED)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=3)


# --- ike_pair --------------------------------------------------------------------------------------------


def test_ike_pair_is_two_engines_wired_in_memory(pytester):
    pytester.makepyfile("""
        import pytest
        from ipseclab.ike import ChildSaEstablished, IkeSaEstablished, IkeSaKeysDerived

        def test_handshake(ike_pair):
            assert ike_pair.initiator.events == [] and ike_pair.responder.events == []  # not started
            ike_pair.handshake()
            for side in (ike_pair.initiator, ike_pair.responder):
                assert side.conn.state == "established"
                assert [type(e) for e in side.events] == [IkeSaKeysDerived, IkeSaEstablished, ChildSaEstablished]

        @pytest.mark.parametrize("ike_pair", [{"ike_proposals": ("aes128-sha256-modp2048",)}], indirect=True)
        def test_configured(ike_pair):
            (est,) = ike_pair.handshake().initiator.of(IkeSaEstablished)
            assert "AES" in str(est) and ike_pair.initiator.conn.state == "established"

        @pytest.mark.parametrize("ike_pair", ["nonsense"], indirect=True)
        def test_bad_param(ike_pair):
            pass
    """)
    result = pytester.runpytest("-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ike_pair takes a dict of IkeConfig fields or a tuple of two IkeConfigs*"])


# --- ipseclab_lab ----------------------------------------------------------------------------------------


def test_ipseclab_lab_without_root_skips_with_the_reason(pytester, host, no_boot):
    host(root=False)
    pytester.makepyfile("""
        def test_lab(ipseclab_lab):
            ipseclab_lab("esp-tunnel", "strongswan", "libreswan")
            raise AssertionError("not reached")
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*interop tests need root*"])


@pytest.mark.parametrize(("call", "outcome", "line"), [
    ('ipseclab_lab("esp-tunnel", "strongswan", "nobody")', "failed", "*unknown implementation 'nobody'; known:*"),
    ('ipseclab_lab("bogus")', "failed", "*no test case 'bogus'; known: esp-tunnel*"),
    ("ipseclab_lab(42)", "failed", "*ipseclab_lab: give a test case, its name, or a pair of PeerConfig*not int*"),
    ('ipseclab_lab("esp-tunnel", topology="nat")', "failed",
     "*case esp-tunnel declares the direct topology, not nat*"),
    ('ipseclab_lab("esp-tunnel-udp", "openiked", "strongswan")', "skipped",
     "*UNSUPPORTED: openiked: peer 'lab': encap: OpenIKED forces NAT-T only for every policy at once*"),
    ('ipseclab_lab("aes-cbc-sha1-ecp256", "openiked", "libreswan")', "skipped",
     "*UNSUPPORTED: neither openiked nor libreswan gives its IKE keys*"),
])
def test_ipseclab_lab_checks_its_arguments_before_anything_boots(pytester, host, no_boot, call, outcome, line):
    host(root=False)  # validation comes first, so these hold without root too
    pytester.makepyfile(f"""
        def test_lab(ipseclab_lab):
            {call}
            raise AssertionError("not reached")
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines([line])
    assert "not reached" not in result.stdout.str()


LAB_TESTS = """
    from ipseclab.interop import case_configs
    from ipseclab.lab.topology import make_topology
    from ipseclab.testcases import by_name

    def test_fails(ipseclab_lab):
        lab = ipseclab_lab("esp-tunnel-nat", "libreswan", "strongswan")
        assert lab.spec.left == "libreswan" and lab.spec.topology == "nat"
        assert False, "the check failed"

    def test_passes(ipseclab_lab):
        left, right = case_configs(by_name("esp-tunnel"), make_topology("direct", "probe"))
        lab = ipseclab_lab((left, right), "ipseclab", "strongswan")
        assert lab.spec.topology == "direct" and lab.spec.runtime == "docker"
"""


def test_a_failing_tests_lab_is_torn_down_printed_and_attached_to_junit(pytester, host, no_boot):
    host(root=True)
    pytester.makepyfile(LAB_TESTS)
    junit = pytester.path / "junit.xml"
    base = pytester.path.parent / "basetemp"
    result = pytester.runpytest(f"--junitxml={junit}", f"--basetemp={base}", "--ipseclab-runtime", "docker")
    result.assert_outcomes(passed=1, failed=1)
    failed_dir = next(base.glob("ipseclab-libreswan-to-strongswan-[0-9]*"))
    assert (failed_dir / "torn-down").read_text() == "libreswan->strongswan nat"
    result.stdout.fnmatch_lines([
        "*- ipseclab lab -*", f"run directory (pcaps, key files and logs, complete once torn down): {failed_dir}",
        "*= ipseclab labs of failed tests =*", f"*::test_fails: {failed_dir}", f"  {failed_dir}/l0.pcap",
        f"  {failed_dir}/ikev2_decryption_table", f"  {failed_dir}/esp_sa"])
    case = next(tc for tc in ET.parse(junit).getroot().iter("testcase") if tc.get("name") == "test_fails")
    props = [(p.get("name"), p.get("value")) for p in case.iter("property")]
    assert props == [("ipseclab_run_dir", str(failed_dir)), ("ipseclab_artifact", str(failed_dir / "l0.pcap")),
                     ("ipseclab_artifact", str(failed_dir / "ikev2_decryption_table")),
                     ("ipseclab_artifact", str(failed_dir / "esp_sa"))]
    # the passing test's lab was torn down and its run directory removed
    assert not list(base.glob("ipseclab-ipseclab-to-strongswan-[0-9]*"))


def test_keep_keeps_a_passing_tests_run_directory(pytester, host, no_boot):
    host(root=True)
    pytester.makepyfile(LAB_TESTS)
    base = pytester.path.parent / "basetemp"
    result = pytester.runpytest(f"--basetemp={base}", "--ipseclab-keep", "--ipseclab-runtime", "docker")
    result.assert_outcomes(passed=1, failed=1)
    kept = next(base.glob("ipseclab-ipseclab-to-strongswan-[0-9]*"))
    assert (kept / "torn-down").read_text() == "ipseclab->strongswan direct"
    assert (kept / "l0.pcap").exists()


# --- ipseclab_trace ------------------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[2] / "pcaps" / "strongswan-aes256-sha256-modp2048"


class GoldenLab(FakeLab):
    """A lab whose teardown leaves a real strongSwan capture and the keys strongSwan logged."""

    def __enter__(self) -> GoldenLab:
        return self

    def down(self) -> None:
        import shutil

        shutil.copy(f"{GOLDEN}.pcap", self.run_dir / "l0.pcap")
        shutil.copy(f"{GOLDEN}.ikev2_decryption_table", self.run_dir / "ikev2_decryption_table")
        super().down()


@pytest.mark.tshark
def test_ipseclab_trace_takes_the_lab_down_and_decrypts_its_run(pytester, host, monkeypatch):

    monkeypatch.setattr(live, "LiveLab", GoldenLab)
    host(root=True)
    pytester.makepyfile("""
        import pytest

        def test_trace(ipseclab_lab, ipseclab_trace):
            made = ipseclab_lab("esp-tunnel")
            trace = ipseclab_trace()
            assert (made.run_dir / "torn-down").exists()
            encrypted = [r for r in trace.ike() if r.encrypted]
            assert len(trace.ike()) == 8 and len(encrypted) == 6
            assert all(r.decrypted and r.icv_ok for r in encrypted)

        def test_no_lab(ipseclab_trace):
            with pytest.raises(Exception, match="no lab yet; make one with ipseclab_lab first"):
                ipseclab_trace()
    """)
    pytester.runpytest().assert_outcomes(passed=2)


# --- the results matrix, keep, the final sweep, kernel_peer ---------------------------------------------

MATRIX_TESTS = """
    import pytest

    def test_cell(ipseclab_lab, ipseclab_case, ipseclab_pair):
        lab = ipseclab_lab(ipseclab_case, *ipseclab_pair)
        assert ipseclab_pair != ("libreswan", "strongswan"), "the check failed"

    def test_named_after_the_function(ipseclab_pair):
        pass

    def test_not_a_cell():
        pass
"""


def test_the_results_matrix_is_printed_at_the_end_of_the_session(pytester, host, no_boot):
    host(root=True)
    pytester.makepyfile(MATRIX_TESTS)
    result = pytester.runpytest("--ipseclab-case", "esp-tunnel", "--ipseclab-case", "esp-tunnel-udp",
                                "--ipseclab-pair", "strongswan:libreswan", "--ipseclab-pair", "libreswan:strongswan",
                                "--ipseclab-pair", "ipseclab:strongswan")
    result.assert_outcomes(passed=8, failed=2)
    result.stdout.fnmatch_lines([
        "*= ipseclab results matrix =*",
        "| case | strongswan -> libreswan | libreswan -> strongswan | ipseclab -> strongswan |",
        "| esp-tunnel | PASSED (*s) | FAILED (*s) | PASSED (*s) |",
        "| esp-tunnel-udp | PASSED (*s) | FAILED (*s) | PASSED (*s) |",
        "| test_named_after_the_function | PASSED (*s) | PASSED (*s) | PASSED (*s) |",
        "- esp-tunnel, libreswan -> strongswan: AssertionError: the check failed",
    ])
    assert "test_not_a_cell" not in result.stdout.str().split("ipseclab results matrix")[1]


def test_keep_attaches_a_passing_tests_artifacts_to_junit(pytester, host, no_boot):
    host(root=True)
    pytester.makepyfile(LAB_TESTS)
    junit = pytester.path / "junit.xml"
    base = pytester.path.parent / "basetemp"
    pytester.runpytest(f"--junitxml={junit}", f"--basetemp={base}", "--ipseclab-keep", "--ipseclab-runtime", "docker")
    kept = next(base.glob("ipseclab-ipseclab-to-strongswan-[0-9]*"))
    case = next(tc for tc in ET.parse(junit).getroot().iter("testcase") if tc.get("name") == "test_passes")
    props = [(p.get("name"), p.get("value")) for p in case.iter("property")]
    assert ("ipseclab_run_dir", str(kept)) in props and ("ipseclab_artifact", str(kept / "l0.pcap")) in props


def test_the_session_ends_with_a_sweep_of_its_own_labs_run_ids(pytester, host, no_boot, monkeypatch):
    from ipseclab.lab import cleanup

    swept: list[str | None] = []

    def sweep(run_id=None, dry_run=False, containers=True):
        swept.append(run_id)
        return cleanup.Leftovers(namespaces=[f"ipl-{run_id}-left"])

    monkeypatch.setattr(cleanup, "sweep", sweep)
    host(root=True)
    pytester.makepyfile(LAB_TESTS)
    result = pytester.runpytest("--ipseclab-runtime", "docker")
    assert swept == ["ipl-fake"]  # once per run id, never a sweep of every lab on the machine (None)
    result.stdout.fnmatch_lines(["*= ipseclab sweep =*", "run ipl-fake: removed namespaces ipl-ipl-fake-left"])


def test_kernel_peer_without_root_skips_with_the_reason(pytester, host):
    host(root=False)
    pytester.makepyfile("""
        def test_kernel(kernel_peer):
            raise AssertionError("not reached")
    """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*interop tests need root*"])


class FakeKernelPeer:
    """Stands in for KernelPeer: a capture and an SA dump in its run directory, and a teardown mark."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.run_id = run_dir, "ipl-kp"

    def __enter__(self) -> FakeKernelPeer:
        (self.run_dir / "left-right.pcap").write_text("x")
        return self

    def __exit__(self, *exc: object) -> None:
        (self.run_dir / "xfrm-state.txt").write_text("src ...")


def test_a_failing_kernel_peer_test_attaches_its_capture_and_sa_dump(pytester, host, monkeypatch):
    monkeypatch.setattr(kernel_peer, "KernelPeer", FakeKernelPeer)
    host(root=True)
    pytester.makepyfile("""
        def test_kernel(kernel_peer):
            assert kernel_peer.run_id == "ipl-kp"
            assert False, "the kernel disagreed"
    """)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    props = dict((p.get("value"), p.get("name")) for p in ET.parse(junit).getroot().iter("property"))
    run_dir = next(v for v, n in props.items() if n == "ipseclab_run_dir")
    assert props[f"{run_dir}/left-right.pcap"] == props[f"{run_dir}/xfrm-state.txt"] == "ipseclab_artifact"
    result.stdout.fnmatch_lines(["*= ipseclab labs of failed tests =*", f"*::test_kernel: {run_dir}"])

"""The docker runtime's choice of kernel IPsec: the host kernel's, or UML's in the container.

The probes themselves need root and a kernel (run by every docker-runtime lab; their lines are in
lab.json); here the decision is fed probe results, including the kernel's own error texts seen on
this project's machines (LAB-NOTES: "Requested type not found").
"""

from __future__ import annotations

import pytest

from ipseclab.errors import LabError
from ipseclab.lab import runtimes
from ipseclab.lab.runtimes import host_ipsec
from ipseclab.lab.runtimes.host_ipsec import PFKEY_PROBE, XFRM_PROBES, HostIpsec, ProbeResult, asked_mode, decide

NO_ESP = "Error: Requested type not found."


def found(*failing: tuple[str, str]) -> HostIpsec:
    errors = dict(failing)
    names = [what for what, _ in XFRM_PROBES] + [PFKEY_PROBE]
    return HostIpsec(tuple(ProbeResult(n, n not in errors, errors.get(n, "")) for n in names))


ALL_OK = found()
LIKE_HERE = found(("ESP cbc(aes)+hmac(sha256)", NO_ESP), ("ESP rfc4106(gcm(aes))", "Error: Requested AEAD algorithm "
                  "not found."), ("AH hmac(sha256)", NO_ESP),
                  (PFKEY_PROBE, "OSError: [Errno 97] Address family not supported by protocol"))


def test_the_probes_cover_what_the_peers_install():
    probes = " ".join(" ".join(args) for _, args in XFRM_PROBES)
    for needed in ("proto esp", "cbc(aes)", "hmac(sha256)", "rfc4106(gcm(aes))", "proto ah"):
        assert needed in probes


def test_auto_uses_the_host_kernel_when_every_probe_passes():
    choice = decide("auto", ALL_OK)
    assert choice.mode == "host"
    assert "ESP cbc(aes)+hmac(sha256): ok" in choice.reason


def test_auto_boots_uml_with_the_kernels_error_as_the_reason():
    choice = decide("auto", LIKE_HERE)
    assert choice.mode == "uml"
    assert "ESP cbc(aes)+hmac(sha256)" in choice.reason and NO_ESP in choice.reason


def test_auto_boots_uml_when_only_pfkey_is_missing():
    choice = decide("auto", found((PFKEY_PROBE, "OSError: [Errno 97] Address family not supported by protocol")))
    assert choice.mode == "uml" and "PF_KEY" in choice.reason


def test_auto_boots_uml_when_only_gcm_is_missing():
    assert decide("auto", found(("ESP rfc4106(gcm(aes))", "Error: Requested AEAD algorithm not found."))).mode == "uml"


def test_forced_uml_is_kept_and_says_what_the_host_has():
    choice = decide("uml", ALL_OK)
    assert choice.mode == "uml" and "uml asked" in choice.reason


def test_forced_host_on_a_kernel_with_esp_ah_runs_there_even_without_pfkey():
    choice = decide("host", found((PFKEY_PROBE, "OSError: [Errno 97] Address family not supported by protocol")))
    assert choice.mode == "host" and "PF_KEY socket: OSError" in choice.reason


def test_forced_host_without_esp_is_one_line_naming_the_probe_and_the_fix():
    with pytest.raises(LabError) as err:
        decide("host", LIKE_HERE)
    text = str(err.value)
    assert len(text.splitlines()) == 1, text
    assert "IPSECLAB_KERNEL_IPSEC=host" in text and "ESP cbc(aes)+hmac(sha256)" in text and NO_ESP in text
    assert "modprobe -a esp4 ah4" in text and "IPSECLAB_KERNEL_IPSEC=auto" in text


def test_a_namespace_that_cannot_be_made_is_a_failed_probe():
    made_none = HostIpsec((ProbeResult("network namespace", False, "cannot create ipl-probe-x: denied"),))
    assert not made_none.esp_ah
    assert decide("auto", made_none).mode == "uml"
    with pytest.raises(LabError):
        decide("host", made_none)


def test_the_mode_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv("IPSECLAB_KERNEL_IPSEC", raising=False)
    assert asked_mode() == "auto"
    monkeypatch.setenv("IPSECLAB_KERNEL_IPSEC", "uml")
    assert asked_mode() == "uml" and asked_mode("host") == "host"
    monkeypatch.setenv("IPSECLAB_KERNEL_IPSEC", "netns")
    with pytest.raises(LabError, match="unknown kernel IPsec mode 'netns'"):
        asked_mode()


class _Engine:
    def close(self) -> None:
        pass


@pytest.mark.parametrize(("asked", "probes", "mode"), [("auto", ALL_OK, "host"), ("auto", LIKE_HERE, "uml"),
                                                        ("uml", ALL_OK, "uml")])
def test_the_docker_runtime_records_the_mode_and_every_probe(monkeypatch, asked, probes, mode):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("ipseclab.lab.runtimes.docker_images.engine", lambda *a, **k: _Engine())
    monkeypatch.setattr(host_ipsec, "probe_host_ipsec", lambda: probes)
    choice = runtimes.choose_runtime("docker", asked)
    assert (choice.name, choice.kernel_ipsec) == ("docker", mode)
    assert choice.host_ipsec_probes == [r.line() for r in probes.results]
    assert choice.boots_uml("kernel") is (mode == "uml")
    assert not choice.boots_uml("container") and not choice.boots_uml("process")


def test_forced_host_under_docker_without_esp_stops_before_anything_starts(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("ipseclab.lab.runtimes.docker_images.engine", lambda *a, **k: _Engine())
    monkeypatch.setattr(host_ipsec, "probe_host_ipsec", lambda: LIKE_HERE)
    with pytest.raises(LabError, match="failed the ESP cbc"):
        runtimes.choose_runtime("docker", "host")


def test_forced_host_under_the_uml_runtime_is_refused(monkeypatch):
    with pytest.raises(LabError, match="needs the docker runtime"):
        runtimes.choose_runtime("uml", "host")


def test_the_uml_runtime_boots_every_kernel_peer():
    choice = runtimes.choose_runtime("uml", "auto")
    assert choice.kernel_ipsec == "uml" and choice.boots_uml("kernel")

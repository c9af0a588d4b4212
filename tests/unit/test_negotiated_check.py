"""The cases' trace-based "negotiated transforms" check (ipseclab.testcases.base.check_negotiated) on real captures.

The oracle is Wireshark reading a strongSwan capture (pcaps/, made by strongSwan 5.9.8 with
``aes256-sha256-modp2048`` for IKE and ``aes128-sha256`` for ESP, see pcaps/README.md): the check
passes for the case that declares what strongSwan negotiated, and raises CheckFailed with the frame
and the chosen transforms when the case declares something else, or when the capture is doctored
so that the responder appears to have picked another transform or KE group.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ipseclab.pcap.trace import Trace
from ipseclab.testcases.base import CheckFailed, TestCase

pytestmark = pytest.mark.tshark

GOLDEN = Path(__file__).resolve().parents[2] / "pcaps" / "strongswan-aes256-sha256-modp2048"
CASE = TestCase(name="golden", description="what strongSwan negotiated in the golden capture",
                ike_proposal="aes256-sha256-modp2048", child_proposal="aes128-sha256")


def _trace(tmp_path: Path, pcap: bytes | None = None) -> Trace:
    (tmp_path / "link.pcap").write_bytes(pcap if pcap is not None else GOLDEN.with_suffix(".pcap").read_bytes())
    (tmp_path / "ikev2_decryption_table").write_bytes(GOLDEN.with_suffix(".ikev2_decryption_table").read_bytes())
    return Trace.load(tmp_path)


def test_the_declared_suite_passes(tmp_path: Path):
    CASE.check_negotiated(_trace(tmp_path))


@pytest.mark.parametrize(("ike", "child", "evidence"), [
    ("aes128-sha256-modp2048", "aes128-sha256", "IKE SA at link frame 2 (exchange 34 response #0)"),
    ("aes256-sha256-ecp256", "aes128-sha256",
     "ENCR_AES_CBC-256, INTEG_HMAC_SHA2_256_128, PRF_HMAC_SHA2_256, KE_MODP2048"),
    ("aes256-sha256-modp2048", "aes128gcm16", "Child SA at link frame 4 (exchange 35 response #1)"),
    ("aes256-sha256-modp2048", "aes128-sha256-esn", "chose ESN_NO_ESN"),
])
def test_a_case_declaring_something_else_fails_with_the_evidence(tmp_path: Path, ike, child, evidence):
    case = dataclasses.replace(CASE, ike_proposal=ike, child_proposal=child)
    with pytest.raises(CheckFailed) as info:
        case.check_negotiated(_trace(tmp_path))
    assert evidence in str(info.value), str(info.value)
    assert isinstance(info.value, AssertionError)  # the runner reports it as FAILED


def _doctored(old: bytes, new: bytes) -> bytes:
    """The golden capture with the IKE_SA_INIT response's bytes ``old`` replaced (IKE_SA_INIT has no ICV)."""
    data = bytearray(GOLDEN.with_suffix(".pcap").read_bytes())
    first = data.find(old)
    at = data.find(old, first + 1)  # the response repeats the request's SA payload: patch the second one
    assert first >= 0 and at > first, "the golden capture changed"
    data[at : at + len(old)] = new
    return bytes(data)


def test_a_peer_that_picked_another_group_fails(tmp_path: Path):
    """The response's KE transform says MODP-3072 (15) where the case declares MODP-2048 (14)."""
    pcap = _doctored(bytes.fromhex("000000080400000e"), bytes.fromhex("000000080400000f"))
    with pytest.raises(CheckFailed, match=r"frame 2 .*chose KE_MODP3072"):
        CASE.check_negotiated(_trace(tmp_path, pcap))


def test_a_peer_that_picked_another_key_length_fails(tmp_path: Path):
    """The response's cipher says AES-CBC-128 where the case declares AES-CBC-256."""
    pcap = _doctored(bytes.fromhex("0300000c0100000c800e0100"), bytes.fromhex("0300000c0100000c800e0080"))
    with pytest.raises(CheckFailed, match=r"chose ENCR_AES_CBC-128, which the case does not declare"):
        CASE.check_negotiated(_trace(tmp_path, pcap))


def test_without_ike_keys_the_child_sa_cannot_be_read_and_that_fails(tmp_path: Path):
    (tmp_path / "link.pcap").write_bytes(GOLDEN.with_suffix(".pcap").read_bytes())
    with pytest.raises(CheckFailed, match="no IKE_AUTH response with a \\(decrypted\\) SA payload"):
        CASE.check_negotiated(Trace.load(tmp_path))

"""What a test case is: a declaration of what to set up, and a check() over the run's trace.

Cases do not orchestrate: the interop runner (ipseclab.interop) builds the lab from the
declaration, drives it, and hands the trace to ``check``, which raises AssertionError with
evidence (link, frame numbers, SPIs, fields) taken from Wireshark's view of the pcaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.pcap.trace import IpsecPacket, Trace


@dataclass(frozen=True)
class TestCase:
    """A declarative interop case.  Subclasses refine ``check``."""

    __test__ = False  # not a pytest class

    name: str
    description: str
    topology: str = "direct"  # "direct" or "nat" (left behind a masquerading router)
    protocol: str = "esp"  # "esp" or "ah"
    mode: str = "tunnel"  # "tunnel" or "transport"
    ike_proposal: str = "aes256-sha256-modp2048"
    child_proposal: str = "aes128-sha256"
    encap: bool = False  # force UDP encapsulation
    transit: str = "ipv4"  # address family of the IKE/ESP packets between the hosts ("ipv4" or "ipv6")
    pings: int = 4
    tcp_bytes: int = 0  # > 0: after the pings, one TCP connection carries this many bytes left -> right

    def check(self, trace: Trace) -> None:
        """Raise AssertionError (with evidence) unless the trace shows what this case promises."""
        check_ike_decrypts(trace)
        check_ipsec_traffic(trace, self)

    def check_transfer(self, received: int) -> None:
        """The TCP transfer arrived whole (its bytes counted by the receiving side's listener)."""
        assert received == self.tcp_bytes, (
            f"TCP transfer through the tunnel: the receiver counted {received} of {self.tcp_bytes} bytes")


def _where(p: IpsecPacket) -> str:
    return f"frame {p.frame} ({p.proto.upper()} spi 0x{p.spi:08x} seq {p.seq} {p.src}->{p.dst})"


def check_ike_decrypts(trace: Trace) -> None:
    """Every IKE message after IKE_SA_INIT decrypts in Wireshark with the run's key table, ICV correct."""
    ike = trace.ike()
    assert ike, f"no IKE messages in the captures of {trace.run_dir}"
    error = trace.run_dir / "collect-keys.error"
    assert trace.ike_rows, "the run wrote no IKE keys" + (f": {error.read_text().strip()}" if error.exists() else "")
    encrypted = [r for r in ike if r.encrypted]
    assert encrypted, "no encrypted IKE messages (IKE_AUTH never happened?)"
    bad = [f"frame {r.frame} (exchange {r.exchange} #{r.message_id}): {r.icv_text or 'not decrypted'}"
           for r in encrypted if not (r.decrypted and r.icv_ok)]
    assert not bad, "IKE messages Wireshark could not decrypt with the run's keys: " + "; ".join(bad)


def check_ipsec_traffic(trace: Trace, case: TestCase) -> None:
    """ESP/AH packets carry the pings both ways, in the declared mode and encapsulation, all ICVs good."""
    pkts = [p for p in trace.ipsec() if p.proto == case.protocol]
    others = [p for p in trace.ipsec() if p.proto != case.protocol]
    assert not others, f"unexpected {others[0].proto.upper()} traffic: {_where(others[0])}"
    assert len(pkts) >= 2 * case.pings, (
        f"expected at least {2 * case.pings} {case.protocol.upper()} packets (pings and replies), "
        f"saw {len(pkts)} on links {sorted(trace.links)}")
    if case.tcp_bytes:
        tcp = [p for p in pkts if "tcp" in p.inner]
        assert len(tcp) >= 2, f"expected TCP inside {case.protocol.upper()} both ways, saw {len(tcp)} such packets"
    spis = {p.spi for p in pkts}
    assert len(spis) >= 2, f"expected an SA in each direction, saw SPIs {sorted(hex(s) for s in spis)}"
    for p in pkts:
        if case.protocol == "esp":
            assert p.icv_good is True, f"ESP ICV not verified by Wireshark at {_where(p)} (icv_good={p.icv_good})"
        assert p.decrypted, f"payload not dissected at {_where(p)}"
        want_tunnel = case.mode == "tunnel"
        assert p.tunnel == want_tunnel, (
            f"{case.mode} mode expected but {_where(p)} carries {'/'.join(p.inner) or 'nothing'}")
        carried = {"icmp", "icmpv6", "tcp"} if case.tcp_bytes else {"icmp", "icmpv6"}
        assert carried & set(p.inner), f"no {'/'.join(sorted(carried))} inside {_where(p)}: {'/'.join(p.inner)}"
        want_udp = case.encap or case.topology == "nat"
        assert p.udp_encap == want_udp, (
            f"{'UDP-encapsulated' if want_udp else 'plain'} ESP expected, {_where(p)} is "
            f"{'in UDP port ' + str(p.udp_port) if p.udp_encap else 'not in UDP'}")
        if p.udp_encap:
            assert p.udp_port == 4500, f"ESP in UDP on port {p.udp_port}, not 4500, at {_where(p)}"

"""What a test case is: a declaration of what to set up, and a check() over the run's trace.

Cases do not orchestrate: the interop runner (ipseclab.interop) builds the lab from the
declaration, drives it, and hands the trace to ``check``, which raises :class:`CheckFailed` (the
suite's own failure type: a bare ``assert`` vanishes under ``python -O``) with evidence (link,
frame numbers, SPIs, fields) taken from Wireshark's view of the pcaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.errors import CheckFailed
from ipseclab.pcap.trace import IpsecPacket, Trace

__all__ = ["CheckFailed", "TestCase", "check_ike_decrypts", "check_ipsec_traffic"]


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
    replay_window: int = 32  # both peers' anti-replay window (strongSwan replay_window, Libreswan replay-window=)
    esn: bool = False  # extended sequence numbers on both peers
    tfc_padding: int = 0  # the responder pads its ESP payloads to this many bytes (strongSwan tfc_padding)
    probe: str = ""  # what the runner injects at the victim before teardown; see testcases/verdicts
    victim: str = "responder"  # the probe's victim: "responder" (right) or "initiator" (left)
    responder_ike_proposal: str = ""  # the responder's own IKE proposal when it differs (refusal cases)
    responder_psk: str = ""  # the responder's own PSK when it differs (refusal cases)
    establishes: bool = True  # False: the case expects the SA to be refused, and the runner does not ping
    needs_keys_before_auth: bool = False  # it checks an encrypted message of an IKE SA that never got established

    def check(self, trace: Trace) -> None:
        """Raise CheckFailed (with evidence) unless the trace shows what this case promises."""
        check_ike_decrypts(trace)
        check_ipsec_traffic(trace, self)


def _where(p: IpsecPacket) -> str:
    return f"frame {p.frame} ({p.proto.upper()} spi 0x{p.spi:08x} seq {p.seq} {p.src}->{p.dst})"


def check_ike_decrypts(trace: Trace) -> None:
    """Every IKE message after IKE_SA_INIT decrypts in Wireshark with the run's key table, ICV correct."""
    ike = trace.ike()
    if not ike:
        raise CheckFailed(f"no IKE messages in the captures of {trace.run_dir}")
    error = trace.run_dir / "collect-keys.error"
    if not trace.ike_rows:
        raise CheckFailed("the run wrote no IKE keys" + (f": {error.read_text().strip()}" if error.exists() else ""))
    encrypted = [r for r in ike if r.encrypted]
    if not encrypted:
        raise CheckFailed("no encrypted IKE messages (IKE_AUTH never happened?)")
    bad = [f"frame {r.frame} (exchange {r.exchange} #{r.message_id}): {r.icv_text or 'not decrypted'}"
           for r in encrypted if not (r.decrypted and r.icv_ok)]
    if bad:
        raise CheckFailed("IKE messages Wireshark could not decrypt with the run's keys: " + "; ".join(bad),
                          frames=[r.frame for r in encrypted if not (r.decrypted and r.icv_ok)])


def check_ipsec_traffic(trace: Trace, case: TestCase, forged: frozenset[tuple[int, int]] = frozenset()) -> None:
    """ESP/AH packets carry the pings both ways, in the declared mode and encapsulation, all ICVs good
    (but those of the ``forged`` (SPI, sequence number) pairs a probe sent with a bad ICV on purpose)."""
    pkts = [p for p in trace.ipsec() if p.proto == case.protocol]
    others = [p for p in trace.ipsec() if p.proto != case.protocol]
    if others:
        raise CheckFailed(f"unexpected {others[0].proto.upper()} traffic: {_where(others[0])}", frame=others[0].frame)
    if len(pkts) < 2 * case.pings:
        raise CheckFailed(f"expected at least {2 * case.pings} {case.protocol.upper()} packets (pings and replies), "
                          f"saw {len(pkts)} on links {sorted(trace.links)}")
    spis = {p.spi for p in pkts}
    if len(spis) < 2:
        raise CheckFailed(f"expected an SA in each direction, saw SPIs {sorted(hex(s) for s in spis)}")
    want_tunnel = case.mode == "tunnel"
    want_udp = case.encap or case.topology == "nat"
    for p in pkts:
        if (p.spi, p.seq) in forged:
            continue
        # Wireshark 4.0's esp_sa table has no ESN column, so it checks an ESN SA's ICV without the high
        # sequence bits and calls it bad; ipseclab's decryption (interop.check_ipseclab_decrypts) checks those
        if case.protocol == "esp" and not case.esn and p.icv_good is not True:
            raise CheckFailed(f"ESP ICV not verified by Wireshark at {_where(p)} (icv_good={p.icv_good})",
                              frame=p.frame)
        if not p.decrypted:
            raise CheckFailed(f"payload not dissected at {_where(p)}", frame=p.frame)
        if p.next_header == 59:
            continue  # a dummy packet (RFC 4303 2.6) carries nothing to check
        if p.tunnel != want_tunnel:
            raise CheckFailed(f"{case.mode} mode expected but {_where(p)} carries {'/'.join(p.inner) or 'nothing'}",
                              frame=p.frame)
        if "icmp" not in p.inner and "icmpv6" not in p.inner:
            raise CheckFailed(f"no ICMP inside {_where(p)}: {'/'.join(p.inner)}", frame=p.frame)
        if p.udp_encap != want_udp:
            raise CheckFailed(f"{'UDP-encapsulated' if want_udp else 'plain'} ESP expected, {_where(p)} is "
                              f"{'in UDP port ' + str(p.udp_port) if p.udp_encap else 'not in UDP'}", frame=p.frame)
        if p.udp_encap and p.udp_port != 4500:
            raise CheckFailed(f"ESP in UDP on port {p.udp_port}, not 4500, at {_where(p)}", frame=p.frame)

"""What a test case is: a declaration of what to set up, and a check() over the run's trace.

Cases do not orchestrate: the interop runner (ipseclab.interop) builds the lab from the
declaration, drives it, and hands the trace to ``check``, which raises :class:`CheckFailed` (the
suite's own failure type, from ``ipseclab.errors``: a bare ``assert`` vanishes under ``python -O``)
with evidence (link, frame numbers, SPIs, fields) taken from Wireshark's view of the pcaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipseclab.crypto.proposals import parse_proposal
from ipseclab.crypto.registry import TransformType, transform_name
from ipseclab.errors import CheckFailed
from ipseclab.pcap.negotiation import IkeNegotiation, SaProposal, Transform
from ipseclab.pcap.trace import IpsecPacket, Trace

__all__ = ["CheckFailed", "TestCase", "check_ike_decrypts", "check_ipsec_traffic", "check_negotiated"]


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
    establishes: bool = True  # False: the case expects the SA to be refused, and the runner does not ping
    # lifecycle cases (testcases/lifecycle.py): PeerConfig settings per side on top of the above, and the
    # steps the runner performs after the first Child SA is up instead of the pings (testcases/steps.py)
    left_settings: tuple[tuple[str, object], ...] = ()
    right_settings: tuple[tuple[str, object], ...] = ()
    steps: tuple[object, ...] = ()
    # authentication: the initiator's ("psk", "pubkey", "eap-md5", "eap-mschapv2") and the responder's own
    # ("" = the same, or "pubkey" when the initiator does EAP); certificates of ``key_type`` from a CA made
    # for the run (lab/pki.py), through an intermediate CA when ``chain``
    auth: str = "psk"
    responder_auth: str = ""
    key_type: str = "ecdsa-p256"
    chain: bool = False
    # a case whose IKE_AUTH must fail: "expired-cert" (the certificate of the side that is not ipseclab's own
    # endpoint has expired: the endpoint refuses an expired certificate of its own before it starts),
    # "wrong-psk" (the responder's PSK differs), "wrong-eap-password" (the EAP server's differs)
    refusal: str = ""

    check_negotiation: bool = False  # also check the negotiated transforms and KE group (check_negotiated)

    def check(self, trace: Trace) -> None:
        """Raise CheckFailed (with evidence) unless the trace shows what this case promises."""
        check_ike_decrypts(trace)
        check_ipsec_traffic(trace, self)
        if self.check_negotiation:
            self.check_negotiated(trace)

    def check_negotiated(self, trace: Trace) -> None:
        """Raise CheckFailed unless the trace's SA and KE payloads carry the declared transforms and KE group
        (see :func:`check_negotiated`); any case may call it from its ``check``."""
        check_negotiated(trace, self)


def _where(p: IpsecPacket) -> str:
    return f"frame {p.frame} ({p.proto.upper()} spi 0x{p.spi:08x} seq {p.seq} {p.src}->{p.dst})"


def check_ike_decrypts(trace: Trace, no_keys: frozenset[int] = frozenset()) -> None:
    """Every IKE message after IKE_SA_INIT decrypts in Wireshark with the run's key table, ICV correct.

    ``no_keys``: frames of IKE SAs the run's table has no keys for, let go unless their ICV is known to be
    wrong (a retry an initiator starts after a refusal may log its keys after the lab collected them)."""
    ike = trace.ike()
    if not ike:
        raise CheckFailed(f"no IKE messages in the captures of {trace.run_dir}")
    error = trace.run_dir / "collect-keys.error"
    if not trace.ike_rows:
        raise CheckFailed("the run wrote no IKE keys" + (f": {error.read_text().strip()}" if error.exists() else ""))
    encrypted = [r for r in ike if r.encrypted]
    if not encrypted:
        raise CheckFailed("no encrypted IKE messages (IKE_AUTH never happened?)")
    failed = [r for r in encrypted
              if not (r.decrypted and r.icv_ok) and (r.frame not in no_keys or r.icv_ok is False)]
    if failed:
        raise CheckFailed("IKE messages Wireshark could not decrypt with the run's keys: " + "; ".join(
            f"frame {r.frame} (exchange {r.exchange} #{r.message_id}): {r.icv_text or 'not decrypted'}"
            for r in failed), frames=[r.frame for r in failed])
    if not any(r.decrypted and r.icv_ok for r in encrypted):
        raise CheckFailed("no IKE message decrypted at all", frames=[r.frame for r in encrypted])


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
    # ESP SAs whose algorithm Wireshark 4.0 lacks (AES-CCM, Camellia, ChaCha20, GMAC, CMAC/XCBC in ESP): their
    # payload is checked by ipseclab's own decryption of the run (interop.check_ipseclab_decrypts), not here
    blind = {r.spi for r in trace.esp_rows if not r.wireshark_can_decrypt}
    for p in pkts:
        if (p.spi, p.seq) in forged:
            continue
        if case.protocol == "esp" and p.spi in blind:
            if p.udp_encap != want_udp:
                raise CheckFailed(f"{'UDP-encapsulated' if want_udp else 'plain'} ESP expected, {_where(p)} is "
                                  f"{'in UDP port ' + str(p.udp_port) if p.udp_encap else 'not in UDP'}",
                                  frame=p.frame)
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


# --- what was negotiated, from the trace ----------------------------------------------------------------

_PROTOCOLS = {1: "IKE", 2: "AH", 3: "ESP"}
_IKE_SA_INIT, _IKE_AUTH, _CREATE_CHILD_SA = 34, 35, 36


def _describe(transforms: tuple[Transform, ...] | list[Transform]) -> str:
    return ", ".join(transform_name(t, i) + (f"-{bits}" if bits else "") for t, i, bits in transforms)


def _declared(proposal: str, protocol: str) -> set[Transform]:
    """The transforms a case's proposal string allows, as they appear on the wire."""
    return {(int(s.type), s.id, s.key_bits) for s in parse_proposal(proposal, protocol)}


def _check_choice(msg: IkeNegotiation, chosen: SaProposal, allowed: set[Transform], what: str,
                  ke_on_wire: bool) -> None:
    """The responder's one chosen proposal takes, per transform type, one of the declared transforms, and
    every declared type is there (INTEG NONE beside an AEAD cipher is no choice at all)."""
    got = [t for t in chosen.transforms if not (t[0] == TransformType.INTEG and t[1] == 0)]
    types = {t[0] for t in allowed if ke_on_wire or t[0] != TransformType.KE}
    stray = [t for t in got if t not in allowed]
    missing = sorted(types - {t[0] for t in got})
    if stray or missing:
        detail = []
        if stray:
            detail.append(f"chose {_describe(stray)}, which the case does not declare")
        if missing:
            detail.append("left out transform type(s) " + ", ".join(TransformType(t).name for t in missing))
        raise CheckFailed(f"{what} at {msg.where()}: the responder's {_PROTOCOLS.get(chosen.protocol, '?')} "
                         f"proposal is [{_describe(chosen.transforms)}]; {'; '.join(detail)} "
                         f"(declared: {_describe(sorted(allowed, key=lambda t: (t[0], t[1])))})")


def _one_proposal(msg: IkeNegotiation, what: str) -> SaProposal:
    if len(msg.proposals) != 1:
        raise CheckFailed(f"{what} at {msg.where()}: a response must carry exactly one chosen proposal, "
                         f"Wireshark shows {len(msg.proposals)}")
    return msg.proposals[0]


def check_negotiated(trace: Trace, case: TestCase) -> None:
    """The IKE and Child SA transforms and the KE group the peers agreed on are the ones the case declares.

    Read from the trace (Wireshark's view of the packets, decrypted with the run's key table), not
    from our key files: the IKE_SA_INIT response's SA payload and KE payload (its group must be the
    declared KE transform, and the one the SA payload chose), the IKE_AUTH response's SA payload for
    the first Child SA, and any CREATE_CHILD_SA response's (a rekey: IKE or Child, KE included).
    CheckFailed names the link, frame and exchange, what was chosen and what was declared.
    """
    msgs = [m for m in trace.negotiations() if m.response]
    ike_allowed = _declared(case.ike_proposal, "ike")
    esn = case.esn and "esn" not in case.child_proposal.lower().split("-")
    child_allowed = _declared(case.child_proposal + ("-esn" if esn else ""), case.protocol)  # the case's ESN setting
    init = [m for m in msgs if m.exchange == _IKE_SA_INIT and m.proposals]
    if not init:
        raise CheckFailed(f"no IKE_SA_INIT response with an SA payload in the captures of {trace.run_dir} "
                         f"(links {sorted(trace.links)})")
    for m in init:
        chosen = _one_proposal(m, "IKE_SA_INIT")
        _check_choice(m, chosen, ike_allowed, "IKE SA", ke_on_wire=True)
        ke_chosen = {t[1] for t in chosen.transforms if t[0] == TransformType.KE}
        if m.ke_group is None or m.ke_group not in ke_chosen:
            raise CheckFailed(f"IKE SA at {m.where()}: the KE payload's group is {m.ke_group}, not the chosen "
                             f"KE transform {sorted(ke_chosen)}")
    auth = [m for m in msgs if m.exchange == _IKE_AUTH and m.proposals]
    if not auth:
        undecrypted = [m.where() for m in msgs if m.exchange == _IKE_AUTH]
        raise CheckFailed("no IKE_AUTH response with a (decrypted) SA payload: Wireshark could not read the Child "
                         "SA's proposal" + (f" in {', '.join(undecrypted)}" if undecrypted else ""))
    for m in auth:
        chosen = _one_proposal(m, "IKE_AUTH")
        want = {"esp": 3, "ah": 2}[case.protocol]
        if chosen.protocol != want:
            raise CheckFailed(f"Child SA at {m.where()}: negotiated {_PROTOCOLS.get(chosen.protocol, '?')}, the case "
                             f"declares {case.protocol.upper()}")
        _check_choice(m, chosen, child_allowed, "Child SA", ke_on_wire=False)  # IKE_AUTH has no KE (RFC 7296 1.2)
    for m in (m for m in msgs if m.exchange == _CREATE_CHILD_SA and m.proposals):
        chosen = _one_proposal(m, "CREATE_CHILD_SA")
        allowed = ike_allowed if chosen.protocol == 1 else child_allowed
        _check_choice(m, chosen, allowed, "rekey", ke_on_wire=any(t[0] == TransformType.KE for t in chosen.transforms))

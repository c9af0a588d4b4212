"""Verdict cases (issue 13): replay, TFC and access control at a victim, and the refusals of IKE_SA_INIT.

The victim is the responder unless a case says ``victim="initiator"``.  Probe cases (``probe=...``)
have the runner inject packets made with the run's keys (``ipseclab/probes.py``, which writes
``probe.json``: what was sent, what must follow, the victim's counters around each step); the verdict
here comes from two places that do not depend on ipseclab's crypto: Wireshark's decryption of the
capture (which echo requests got replies) and the victim's own counters (kernel: ``ip -s xfrm state``
per SA and ``/proc/net/xfrm_stat``; the ipseclab endpoint: its ``status`` answer, each Child SA's
counters and its data plane's).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ipseclab.pcap.trace import IpsecPacket, Trace

from .base import CheckFailed, TestCase, check_ike_decrypts, check_ipsec_traffic, check_negotiated

# IKEv2 Notify Message Error Types (IANA)
NOTIFY = {"NO_PROPOSAL_CHOSEN": 14, "INVALID_KE_PAYLOAD": 17, "AUTHENTICATION_FAILED": 24}
IKE_SA_INIT, IKE_AUTH = 34, 35
ECHO_REQUEST, ECHO_REPLY = 8, 0


def load_probe(trace: Trace) -> dict[str, Any]:
    path = trace.run_dir / "probe.json"
    if not path.exists():
        raise CheckFailed(f"the probe left no {path} (it did not run, or the lab failed before it)")
    probe: dict[str, Any] = json.loads(path.read_text())
    return probe


def forged_of(probe: dict[str, Any]) -> frozenset[tuple[int, int]]:
    spi = int(probe["spi_in"], 16)
    return frozenset((spi, s["esp_seq"]) for step in probe["steps"] for s in step["sent"] if "bad ICV" in s["label"])


def _sa(counters: dict[str, Any], spi: str) -> dict[str, Any]:
    for sa in counters.get("sas", []):
        if sa.get("spi") == spi:
            return dict(sa)
    raise CheckFailed(f"the victim's counters have no SA {spi}: {counters.get('sas')}")


def delta(before: dict[str, Any], after: dict[str, Any], spi: str | None, name: str) -> int:
    """How much counter ``name`` rose: of SA ``spi`` (``ip -s xfrm state``), or of ``/proc/net/xfrm_stat``."""
    if spi is None:
        return int(after.get("xfrm_stat", {}).get(name, 0)) - int(before.get("xfrm_stat", {}).get(name, 0))
    return int(_sa(after, spi).get(name, 0)) - int(_sa(before, spi).get(name, 0))


def endpoint(counters: dict[str, Any]) -> bool:
    """Whether counters are the ipseclab endpoint's ``status`` answer (else a kernel's)."""
    return counters.get("source") == "ipseclab"


def endpoint_delta(before: dict[str, Any], after: dict[str, Any], spi_in: str, name: str) -> int:
    """How much an ipseclab endpoint's counter rose: ``in.X``/``out.X`` of the Child SA whose inbound SPI is
    ``spi_in``, ``seq_out`` (its outbound SA's last sequence number), or ``dataplane.X``."""

    def read(c: dict[str, Any]) -> int:
        where, _, key = name.rpartition(".")
        if where == "dataplane":
            return int(c.get("dataplane", {})[key])
        sas = c.get("child_sas", {})
        if spi_in not in sas:
            raise CheckFailed(f"the ipseclab victim's status has no Child SA {spi_in}: {sorted(sas)}")
        return int((sas[spi_in][where] if where else sas[spi_in])[key])

    return read(after) - read(before)


def _where(p: IpsecPacket) -> str:
    return f"frame {p.frame} (spi 0x{p.spi:08x} seq {p.seq})"


def _icmp_of_request(trace: Trace, spi: int, seq: int) -> tuple[int, int]:
    for p in trace.ipsec():
        if p.spi == spi and p.seq == seq and p.icmp is not None and p.icmp[0] == ECHO_REQUEST:
            return p.icmp[1], p.icmp[2]
    raise CheckFailed(f"Wireshark shows no decrypted echo request with spi 0x{spi:08x} seq {seq} to take the "
                      "replayed packet's ICMP identifier from")


def replies_to(trace: Trace, ident: int, seq: int) -> list[str]:
    """Every echo reply for ICMP (identifier, sequence), inside ESP (decrypted by Wireshark) or in the clear."""
    out = [_where(p) for p in trace.ipsec() if p.icmp == (ECHO_REPLY, ident, seq)]
    out += [f"frame {c.frame} (in the clear {c.src}->{c.dst})" for c in trace.clear_icmp()
            if (c.type, c.ident, c.seq) == (ECHO_REPLY, ident, seq)]
    return out


def check_replies(trace: Trace, probe: dict[str, Any]) -> None:
    """Each echo the probe sent got exactly as many echo replies in the whole trace as it must (0: dropped).

    A packet sent twice (a replay) names the total for its echo; the largest expectation per echo is it.
    """
    spi_in = int(probe["spi_in"], 16)
    want: dict[tuple[int, int], tuple[int, str]] = {}
    for step in probe["steps"]:
        for s in step["sent"]:
            if s["replies"] < 0:
                continue  # not an echo request (a replayed reply): the victim's counters judge it
            if s["icmp_seq"] is not None:
                key = (probe["icmp_id"], s["icmp_seq"])
            elif s["esp_seq"] is not None and s["replies"]:
                key = _icmp_of_request(trace, spi_in, s["esp_seq"])
            else:
                continue  # a dummy packet: nothing to answer (checked on the victim's outbound SA)
            if key not in want or s["replies"] > want[key][0]:
                want[key] = (s["replies"], f"{step['step']}: {s['label']}")
    wrong = []
    for (ident, seq), (n, label) in want.items():
        got = replies_to(trace, ident, seq)
        if len(got) != n:
            wrong.append(f"{label} (ICMP id {ident:#x} seq {seq}) got {len(got)} echo replies, expected {n}"
                         + (f": {', '.join(got)}" if got else ""))
    if wrong:
        raise CheckFailed("; ".join(wrong))


def whole(probe: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The victim's counters before the first step and after the last."""
    return probe["steps"][0]["before"], probe["steps"][-1]["after"]


def step(probe: dict[str, Any], prefix: str) -> dict[str, Any]:
    for s in probe["steps"]:
        if s["step"].startswith(prefix):
            return dict(s)
    raise CheckFailed(f"the probe has no step {prefix!r}: {[s['step'] for s in probe['steps']]}")


def expect_counters(what: str, got: dict[str, int], want: dict[str, int]) -> None:
    bad = [f"{k} rose by {got[k]}, expected {v}" for k, v in want.items() if got[k] != v]
    if bad:
        raise CheckFailed(f"the victim's own counters over {what}: " + "; ".join(bad), counters=got)


@dataclass(frozen=True)
class ProbeCase(TestCase):
    """A case whose runner probes the responder; ``check`` adds the probe's verdict to the usual checks."""

    check_negotiation: bool = True

    def check(self, trace: Trace) -> None:
        probe = load_probe(trace)
        check_ike_decrypts(trace)
        check_ipsec_traffic(trace, self, forged_of(probe))
        self.check_negotiated(trace)
        check_replies(trace, probe)
        self.check_counters(trace, probe)

    def check_counters(self, trace: Trace, probe: dict[str, Any]) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ReplayCase(ProbeCase):
    probe: str = "replay"

    def check_counters(self, trace: Trace, probe: dict[str, Any]) -> None:
        if probe["window"] != self.replay_window or probe["esn"] != self.esn:
            raise CheckFailed(f"the victim's inbound SA {probe['spi_in']} has replay window {probe['window']} "
                              f"and ESN {probe['esn']}, the case configured {self.replay_window} and {self.esn}")
        before, after = whole(probe)
        spi = probe["spi_in"]
        replays = len(step(probe, "exact replays")["sent"]) + 1
        protected = self.replay_window > 0
        if endpoint(before):
            # ipseclab counts a packet left of the window as a replay with ESN too: when its ICV fails under
            # the next subspace's high bits, it tries the previous ones (esp/common.py SaBase._refuse_icv)
            dropped = replays + 1 if protected else 0
            expect_counters("the whole probe", {n: endpoint_delta(before, after, spi, n) for n in (
                "in.replay_drops", "in.integrity_failures", "dataplane.replay", "dataplane.integrity")}, {
                "in.replay_drops": dropped, "in.integrity_failures": 1,
                "dataplane.replay": dropped, "dataplane.integrity": 1})
            return
        names = ("replay", "replay-window", "failed")
        got = {n: delta(before, after, spi, n) for n in names}
        got |= {n: delta(before, after, None, n) for n in ("XfrmInStateSeqError", "XfrmInStateProtoError")}
        # with ESN a packet left of the window is taken for the next 2^32 subspace (RFC 4303 A2.2): its ICV
        # fails with those high bits, so the kernel counts it as an integrity failure, not as too old
        past_edge_fails = protected and self.esn
        edge_drop = 1 if protected and not self.esn else 0
        expect_counters("the whole probe", got, {
            "replay": replays if protected else 0,
            "replay-window": edge_drop,
            "failed": 1 + past_edge_fails,
            "XfrmInStateSeqError": replays + edge_drop if protected else 0,
            "XfrmInStateProtoError": 1 + past_edge_fails,
        })


@dataclass(frozen=True)
class TfcCase(ProbeCase):
    probe: str = "tfc"

    def check(self, trace: Trace) -> None:
        super().check(trace)
        probe = load_probe(trace)
        victim_out = int(probe["spi_out"], 16)
        replies = [p for p in trace.ipsec() if p.spi == victim_out and p.icmp and p.icmp[0] == ECHO_REPLY]
        if self.tfc_padding:
            short = [f"{_where(p)}: {p.length} bytes on the wire for a {p.inner_len}-byte inner packet"
                     for p in replies if not (p.length >= self.tfc_padding > p.inner_len)]
            if short or not replies:
                raise CheckFailed(f"the victim's ESP is not TFC-padded to {self.tfc_padding} bytes: "
                                  + ("; ".join(short[:4]) or "no echo replies from it"))
        spi_in = int(probe["spi_in"], 16)
        padded = step(probe, "TFC-padded")["sent"][0]["esp_seq"]
        ours = [p for p in trace.ipsec() if p.spi == spi_in and p.seq == padded]
        if not ours or not all(p.inner_len and p.length > p.inner_len + 900 for p in ours):
            raise CheckFailed(f"Wireshark does not show ipseclab's TFC-padded ping (seq {padded}) with padding: "
                              + "; ".join(f"{_where(p)} {p.length} bytes, inner {p.inner_len}" for p in ours))
        dummies = {s["esp_seq"] for s in step(probe, "dummy")["sent"]}
        seen = [p for p in trace.ipsec() if p.spi == spi_in and p.seq in dummies]
        not_dummy = [f"{_where(p)} next header {p.next_header}" for p in seen if p.next_header != 59]
        if len(seen) != len(dummies) or not_dummy:
            raise CheckFailed(f"Wireshark shows {len(seen)} of the {len(dummies)} dummy packets as next header 59"
                              + (": " + "; ".join(not_dummy) if not_dummy else ""))
        ours_out = [s for s in probe["steps"] if s["step"] == "dummy packets from the victim"]
        if ours_out:
            self.check_victim_dummies(trace, probe, ours_out[0])

    def check_victim_dummies(self, trace: Trace, probe: dict[str, Any], s: dict[str, Any]) -> None:
        """The ipseclab victim's own dummy packets: on the wire as next header 59 (Wireshark), counted by it,
        and taken and dropped without a word by the other peer (a kernel counts XfrmInStateProtoError)."""
        victim_out = int(probe["spi_out"], 16)
        frames = [p for p in trace.ipsec() if p.spi == victim_out and p.next_header == 59]
        if s["dummies"] < 1 or len(frames) != s["dummies"]:
            raise CheckFailed(f"the victim said it sent {s['dummies']} dummy packets; Wireshark shows {len(frames)} "
                              f"with next header 59 on its SA 0x{victim_out:08x}")
        sent = endpoint_delta(s["before"], s["after"], probe["spi_in"], "dataplane.dummies_out")
        expect_counters("the victim's own dummy packets", {"dataplane.dummies_out": sent},
                        {"dataplane.dummies_out": s["dummies"]})
        pb, pa = s["peer_before"], s["peer_after"]
        if endpoint(pb):
            got = {n: endpoint_delta(pb, pa, probe["spi_out"], n) for n in ("in.dummies_in", "in.integrity_failures")}
            want = {"in.dummies_in": s["dummies"], "in.integrity_failures": 0}
        else:
            got = {"XfrmInStateProtoError": delta(pb, pa, None, "XfrmInStateProtoError"),
                   "failed": delta(pb, pa, probe["spi_out"], "failed")}
            want = {"XfrmInStateProtoError": s["dummies"], "failed": 0}
        expect_counters("the victim's dummy packets at the other peer", got, want)

    def check_counters(self, trace: Trace, probe: dict[str, Any]) -> None:
        s = step(probe, "dummy")
        if endpoint(s["before"]):
            got = {n: endpoint_delta(s["before"], s["after"], probe["spi_in"], n) for n in (
                "in.dummies_in", "in.integrity_failures", "seq_out", "dataplane.dummies_in", "dataplane.packets_in")}
            expect_counters("the dummy packets (the victim must count each as a dummy, send nothing and hand "
                            "nothing to its TUN device)", got, {
                                "in.dummies_in": len(s["sent"]), "in.integrity_failures": 0, "seq_out": 0,
                                "dataplane.dummies_in": len(s["sent"]), "dataplane.packets_in": 0})
            return
        got = {"oseq": delta(s["before"], s["after"], probe["spi_out"], "oseq"),
               "failed": delta(s["before"], s["after"], probe["spi_in"], "failed"),
               "XfrmInStateProtoError": delta(s["before"], s["after"], None, "XfrmInStateProtoError")}
        # Linux esp4/esp6 turn next header 59 into -EINVAL after the ICV checked ("RFC4303: Drop dummy packets
        # without any error"): counted in XfrmInStateProtoError, not as an integrity failure
        expect_counters("the dummy packets (the victim must send nothing and find every ICV good)", got,
                        {"oseq": 0, "failed": 0, "XfrmInStateProtoError": len(s["sent"])})


@dataclass(frozen=True)
class AccessCase(ProbeCase):
    probe: str = "access"

    def check_counters(self, trace: Trace, probe: dict[str, Any]) -> None:
        # Linux's inbound policy check (__xfrm_policy_check): a clear packet that matches a policy whose
        # template wants ESP is a template mismatch; a decrypted packet that matches no inbound policy is
        # XfrmInNoPols.  Each step moves exactly its counter and no other policy counter.
        policy = ("XfrmInNoPols", "XfrmInTmplMismatch", "XfrmInPolBlock", "XfrmInStateMismatch")
        if endpoint(probe["steps"][0]["before"]):
            # ipseclab: the kernel's strict reverse-path filter drops the clear one (clear_dropped, tun.py);
            # the SA's selector check (RFC 4301 5.2) the other (policy_mismatch)
            names = ("dataplane.clear_dropped", "dataplane.policy_mismatch", "in.selector_mismatches")
            for prefix, moved in (("ping in the clear", ("dataplane.clear_dropped",)),
                                  ("ping inside the SA from", ("dataplane.policy_mismatch", "in.selector_mismatches"))):
                s = step(probe, prefix)
                got = {n: endpoint_delta(s["before"], s["after"], probe["spi_in"], n) for n in names}
                expect_counters(f"the step {s['step']!r}", got, {n: int(n in moved) for n in names})
            return
        for prefix, counter in (("ping in the clear", "XfrmInTmplMismatch"),
                                ("ping inside the SA from", "XfrmInNoPols")):
            s = step(probe, prefix)
            got = {n: delta(s["before"], s["after"], None, n) for n in policy}
            expect_counters(f"the step {s['step']!r}", got, {n: int(n == counter) for n in policy})


@dataclass(frozen=True)
class RefusalCase(TestCase):
    """The responder refuses with ``notify`` in its response; with ``retry`` the initiator then tries again
    (INVALID_KE_PAYLOAD) and the SA comes up, checked as usual."""

    notify: str = "NO_PROPOSAL_CHOSEN"
    exchange: int = IKE_SA_INIT

    def check(self, trace: Trace) -> None:
        ike = trace.ike()
        code = NOTIFY[self.notify]
        hits = [r for r in ike if r.exchange == self.exchange and r.response and code in r.notifies]
        if not hits:
            seen = [f"frame {r.frame} exchange {r.exchange}{' response' if r.response else ''}"
                    f"{' (not decrypted)' if r.encrypted and not r.decrypted else ''} notifies {list(r.notifies)}"
                    for r in ike]
            keys = "" if trace.ike_rows or self.exchange == IKE_SA_INIT else " (the run has no IKE keys: no keys)"
            raise CheckFailed(f"no {self.notify} in a response of exchange {self.exchange}{keys}; IKE seen: "
                              + ("; ".join(seen) or "none"))
        first = hits[0]
        if first.encrypted and not (first.decrypted and first.icv_ok):
            raise CheckFailed(f"frame {first.frame}: {self.notify} not decrypted with a good ICV ({first.icv_text})")
        if not self.establishes:
            later = [r.frame for r in ike if r.exchange == IKE_AUTH and r.frame > first.frame]
            if self.exchange == IKE_SA_INIT and later:
                raise CheckFailed(f"IKE_AUTH went on after the {self.notify} at frame {first.frame}: frames {later}")
            return
        retried = [r for r in ike if r.exchange == IKE_SA_INIT and not r.response and r.frame > first.frame]
        if not retried:
            raise CheckFailed(f"the initiator did not send IKE_SA_INIT again after {self.notify} "
                              f"at frame {first.frame}")
        super().check(trace)
        # what was agreed must be what the responder takes (its proposal is the narrower one here)
        agreed = self.responder_ike_proposal or self.ike_proposal
        check_negotiated(trace, dataclasses.replace(self, ike_proposal=agreed))


REPLAY = ReplayCase(
    name="replay",
    description="replays, reordering, the window's edges and a forged ICV injected at the responder "
                "(window 32, no ESN): verdict from Wireshark and the victim's counters",
    replay_window=32,
)
REPLAY_INITIATOR = ReplayCase(
    name="replay-initiator",
    description="the replay probe (window 32) at the initiator: its inbound SA was installed by the "
                "other role's code path",
    replay_window=32,
    victim="initiator",
)
REPLAY_ESN = ReplayCase(
    name="replay-esn",
    description="the replay probe with a 64-packet window and extended sequence numbers",
    replay_window=64,
    esn=True,
)
REPLAY_WINDOW_0 = ReplayCase(
    name="replay-window-0",
    description="the replay probe with replay protection off (window 0): replays are answered, forgeries not",
    replay_window=0,
)
TFC = TfcCase(
    name="tfc",
    description="the responder pads its ESP to 1200 bytes (strongSwan tfc_padding, Libreswan tfc=); ipseclab "
                "sends it a TFC-padded ping and dummy packets (next header 59), which it drops silently",
    tfc_padding=1200,
)
ACCESS_CONTROL = AccessCase(
    name="access-control",
    description="the responder drops a ping in the clear that policy says must be protected, and one inside "
                "the SA from an address outside the negotiated selectors",
)
REFUSE_PROPOSAL = RefusalCase(
    name="refuse-no-proposal",
    description="the responder accepts only AES-GCM/ECP-256 for IKE: NO_PROPOSAL_CHOSEN in IKE_SA_INIT",
    responder_ike_proposal="aes128gcm16-prfsha256-ecp256",
    establishes=False,
)
KE_RETRY = RefusalCase(
    name="invalid-ke-retry",
    description="the initiator offers ECP-256 then MODP-2048 and sends an ECP-256 KE; the responder takes "
                "only MODP-2048: INVALID_KE_PAYLOAD, then a second IKE_SA_INIT and the SA comes up",
    ike_proposal="aes256-sha256-ecp256-modp2048",
    responder_ike_proposal="aes256-sha256-modp2048",
    notify="INVALID_KE_PAYLOAD",
)

CASES: list[TestCase] = [REPLAY, REPLAY_INITIATOR, REPLAY_ESN, REPLAY_WINDOW_0, TFC, ACCESS_CONTROL,
                         REFUSE_PROPOSAL, KE_RETRY]

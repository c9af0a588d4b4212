"""What the SA lifecycle cases assert, from Wireshark's decrypted view of the run and the steps' record.

Every fact comes from the captures (decrypted with the run's key tables) or from ``steps.json``
(what the runner did and when, on the capture's clock): a rekey is a CREATE_CHILD_SA request that
Wireshark decrypted, carrying REKEY_SA (a Child SA) or an IKE proposal (an IKE SA); the old SA's
end is a decrypted Delete naming it; the new SA's traffic is ESP on SPIs not seen before the rekey,
ICV verified; the gap is the longest silence between ESP packets in one direction while traffic ran.
A failed check raises CheckFailed (an AssertionError) with the frames and times behind it (``fail``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from ipseclab.errors import CheckFailed
from ipseclab.interop_wire import responder_link
from ipseclab.pcap.trace import IpsecPacket, Trace
from ipseclab.pcap.wireshark import WiresharkIkeRecord

CREATE_CHILD_SA = 36
INFORMATIONAL = 37
REKEY_SA = 16393
PROTO_IKE = 1
SK = 46


def fail(message: str) -> NoReturn:
    """The suite's failure for a lifecycle check (explicit, so ``python -O`` keeps it)."""
    raise CheckFailed(message)


def steps_record(trace: Trace) -> dict[str, Any]:
    path = trace.run_dir / "steps.json"
    if not path.exists():
        fail(f"the run left no steps record ({path}): the lifecycle steps did not run")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def step_entries(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in record.get("steps", []) if s.get("step") == name]


@dataclass(frozen=True)
class View:
    """One link's IKE and ESP (the link next to the responder: behind a NAT it sees the translated side)."""

    link: str
    ike: list[WiresharkIkeRecord]
    esp: list[IpsecPacket]
    sides: dict[str, list[str]]

    def side(self, address: str) -> str:
        return next((side for side, addrs in self.sides.items() if address in addrs), "?")


def view(trace: Trace) -> View:
    if not trace.links:
        fail(f"no captures in {trace.run_dir}")
    name = responder_link(list(trace.links))
    link = trace.links[name]
    record = steps_record(trace)
    return View(name, sorted(link.ike, key=lambda r: r.time), sorted(link.ipsec, key=lambda p: p.time),
                record.get("sides", {}))


def _ike(r: WiresharkIkeRecord) -> str:
    kind = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}.get(r.exchange, r.exchange)
    return (f"frame {r.frame} ({kind} #{r.message_id} {'response' if r.response else 'request'} "
            f"{r.src}->{r.dst} SPIs {r.spi_i:016x}/{r.spi_r:016x} at {r.time:.3f})")


def _esp(p: IpsecPacket) -> str:
    return f"frame {p.frame} (ESP spi 0x{p.spi:08x} seq {p.seq} {p.src}->{p.dst} at {p.time:.3f})"


# --- keys: every SA of the run ------------------------------------------------------------------


def check_keys_cover_every_sa(trace: Trace) -> None:
    """Every encrypted IKE message of every IKE SA (rekeyed ones too) and every ESP packet of every Child SA
    decrypts with the run's key tables, ICV correct; an SA without a key row is named."""
    rows = {(r.spi_i, r.spi_r) for r in trace.ike_rows}
    missing: dict[tuple[int, int], list[int]] = {}
    bad = []
    for r in trace.ike():
        if not r.encrypted:
            continue
        if (r.spi_i.to_bytes(8, "big"), r.spi_r.to_bytes(8, "big")) not in rows:
            missing.setdefault((r.spi_i, r.spi_r), []).append(r.frame)
        elif not (r.decrypted and r.icv_ok):
            bad.append(f"{_ike(r)}: {r.icv_text or 'not decrypted'}")
    if missing:
        error = trace.run_dir / "collect-keys.error"
        fail("no keys in the run's ikev2_decryption_table for IKE SA(s) "
             + "; ".join(f"{i:016x}/{r:016x} (frames {', '.join(map(str, f[:5]))})" for (i, r), f in missing.items())
             + " (Libreswan logs no IKE keys: they come from the other peer)"
             + (f"; key collection: {error.read_text().strip()}" if error.exists() else ""))
    if bad:
        fail("IKE messages Wireshark could not decrypt with the run's keys: " + "; ".join(bad[:5]))
    esp_rows = {r.spi for r in trace.esp_rows}
    esp = [p for p in trace.ipsec() if p.proto == "esp"]
    no_row = sorted({p.spi for p in esp if p.spi not in esp_rows})
    if no_row:
        fail("no esp_sa row for ESP SPI(s) " + ", ".join(f"0x{s:08x}" for s in no_row)
             + " (the kernel SAs of the run, xfrm-monitor.txt and xfrm-state.txt of each peer, miss them)")
    undecrypted = [p for p in esp if not (p.icv_good and p.decrypted)]
    if undecrypted:
        fail("ESP packets Wireshark could not verify and decrypt: " + "; ".join(map(_esp, undecrypted[:5])))


# --- exchanges --------------------------------------------------------------------------------


def response_to(v: View, req: WiresharkIkeRecord) -> WiresharkIkeRecord | None:
    return next((r for r in v.ike if r.response and r.exchange == req.exchange and r.message_id == req.message_id
                 and (r.spi_i, r.spi_r) == (req.spi_i, req.spi_r) and r.time >= req.time), None)


def child_rekeys(v: View) -> list[WiresharkIkeRecord]:
    """Decrypted CREATE_CHILD_SA requests carrying REKEY_SA (first transmission of each)."""
    seen: set[tuple[int, int, int]] = set()
    out = []
    for r in v.ike:
        key = (r.spi_i, r.spi_r, r.message_id)
        if r.exchange == CREATE_CHILD_SA and not r.response and r.decrypted and REKEY_SA in r.notifies \
                and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def ike_rekeys(v: View) -> list[WiresharkIkeRecord]:
    """Decrypted CREATE_CHILD_SA requests whose SA payload proposes an IKE SA (RFC 7296 1.3.2)."""
    seen: set[tuple[int, int, int]] = set()
    out = []
    for r in v.ike:
        key = (r.spi_i, r.spi_r, r.message_id)
        if r.exchange == CREATE_CHILD_SA and not r.response and r.decrypted and PROTO_IKE in r.proposals \
                and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def additional_children(v: View) -> list[WiresharkIkeRecord]:
    """Decrypted CREATE_CHILD_SA requests for a new Child SA (neither REKEY_SA nor an IKE proposal)."""
    return [r for r in v.ike if r.exchange == CREATE_CHILD_SA and not r.response and r.decrypted
            and REKEY_SA not in r.notifies and PROTO_IKE not in r.proposals]


def answered(v: View, req: WiresharkIkeRecord, what: str) -> WiresharkIkeRecord:
    resp = response_to(v, req)
    if resp is None:
        fail(f"{what} {_ike(req)} got no response on {v.link}")
    if not resp.decrypted:
        fail(f"the response to {what} {_ike(req)} was not decrypted: {_ike(resp)}")
    return resp


def by_side(v: View, records: Iterable[WiresharkIkeRecord], side: str) -> list[WiresharkIkeRecord]:
    return [r for r in records if v.side(r.src) == side]


def esp_spis(packets: Iterable[IpsecPacket]) -> set[int]:
    return {p.spi for p in packets}


def check_child_replaced(v: View, req: WiresharkIkeRecord, resp: WiresharkIkeRecord) -> tuple[set[int], set[int]]:
    """After a Child SA rekey: ESP on new SPIs in both directions, ICV good, carrying the traffic; a decrypted
    Delete names an SPI used before the rekey; no ESP on the old SPIs once that Delete is answered."""
    old = esp_spis(p for p in v.esp if p.time < req.time)
    if not old:
        fail(f"no ESP before the rekey {_ike(req)}: nothing was carried on the old Child SA")
    new_packets = [p for p in v.esp if p.time > resp.time and p.spi not in old]
    new = esp_spis(new_packets)
    directions = {(p.src, p.dst) for p in new_packets}
    if len(directions) < 2:
        fail(f"no traffic on the new Child SA in both directions after {_ike(resp)}: new SPIs "
             f"{', '.join(f'0x{s:08x}' for s in sorted(new)) or 'none'} from {sorted(directions)}")
    deletes = [r for r in v.ike if r.exchange == INFORMATIONAL and r.decrypted and r.time >= req.time
               and any(proto != PROTO_IKE and spi in old for proto, spi in r.deletes)]
    if not deletes:
        fail(f"no decrypted Delete of the old Child SA (SPIs {', '.join(f'0x{s:08x}' for s in sorted(old))}) "
             f"after the rekey {_ike(req)}")
    done = response_to(v, deletes[0]) or deletes[0]
    late = [p for p in v.esp if p.spi in old and p.time > done.time + 0.5]
    if late:
        fail(f"ESP on the deleted Child SA after its Delete ({_ike(deletes[0])}): {_esp(late[0])}")
    return old, new


def check_gap(v: View, start: float, end: float, bound: float) -> float:
    """The longest silence between ESP packets in either direction within [start, end] (the traffic's
    span as the steps record has it) stays within ``bound`` seconds; returns it."""
    worst: tuple[float, IpsecPacket | None, IpsecPacket | None] = (0.0, None, None)
    for direction in {(p.src, p.dst) for p in v.esp}:
        times = [p for p in v.esp if (p.src, p.dst) == direction and start <= p.time <= end]
        if len(times) < 2:
            fail(f"fewer than 2 ESP packets {direction[0]}->{direction[1]} between {start:.3f} and {end:.3f}")
        for x, y in itertools.pairwise(times):
            if y.time - x.time > worst[0]:
                worst = (y.time - x.time, x, y)
    gap, before, after = worst
    if gap > bound and before is not None and after is not None:
        fail(f"a gap of {gap:.2f} s in the traffic (bound {bound} s): {_esp(before)} then {_esp(after)}")
    return gap


def traffic_span(record: dict[str, Any], v: View) -> tuple[float, float]:
    """From the first ping's start (plus a second to settle) to the end of the last ping's run: a second before
    its last echo, or before a stopped ping's drain (its last echoes' answers may not have come)."""
    pings = step_entries(record, "Ping")
    if not pings:
        fail("the steps record has no Ping")
    start = min(p["start"] for p in pings) + 1.0
    end = max(p["stopped"] - p["drain"] if "stopped" in p else p["start"] + p["seconds"] - 1.0 for p in pings)
    return start, end


def check_pings_answered(record: dict[str, Any], loss: float = 0.2) -> None:
    """Every ping got answers to all but ``loss`` of its echoes; of a stopped ping, of those sent before its
    drain (``interop_steps.settled_echoes``)."""
    for p in step_entries(record, "Ping"):
        if "stopped" in p:
            sent, got = p.get("settled_transmitted", 0), p.get("settled_received", 0)
            said = (f"{p.get('summary')}, stopped: {got} of the {sent} echoes sent {p.get('drain')} s or more "
                    "before the stop answered")
        else:
            sent, got, said = p.get("transmitted", 0), p.get("received", 0), str(p.get("summary"))
        if not sent or got < sent * (1 - loss):
            fail(f"ping {p.get('src')}->{p.get('dst')} from {p.get('side')}: {said} (more than {loss:.0%} lost)")


def liveness_checks(v: View, killed: float, on: set[int] | None = None) -> list[WiresharkIkeRecord]:
    """Every transmission of the left peer's first liveness check (an empty INFORMATIONAL request) after the right
    one was killed at ``killed`` (on the IKE SAs whose initiator SPI is in ``on``, if given); fails unless there
    is one and it was retransmitted."""
    probes = [r for r in v.ike if r.exchange == 37 and not r.response and r.time > killed
              and v.side(r.src) == "left" and (on is None or r.spi_i in on)]
    if not probes:
        fail(f"no INFORMATIONAL request from the left peer after the right one was killed at {killed:.3f}")
    empty = [r for r in probes if r.decrypted and r.payloads == (46,)]
    if not empty:
        fail(f"the left peer's INFORMATIONAL requests after the kill are not empty liveness checks: frames "
             f"{', '.join(str(r.frame) for r in probes[:5])} payloads {probes[0].payloads}")
    same = [r for r in probes if r.message_id == empty[0].message_id]
    if len(same) < 2:
        fail(f"the liveness check {empty[0].frame} #{empty[0].message_id} was never retransmitted")
    return same

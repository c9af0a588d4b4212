"""Collect the keys of every SA from the peers themselves, for the run's Wireshark key files.

* IKE SAs: a driver's ``ike_keys`` gives the key sets its daemon logged (strongSwan's charon
  log is read in ``impls/strongswan.py``), in strongSwan's proposal notation; the SPIs are
  matched from the capture (the key set whose ICV verifies a message with those SPIs).
* Child SAs: the guest kernel's own ``ip -s xfrm state`` (algorithm names, keys, SPIs,
  encapsulation and the replay/failed counters) — whoever negotiated them; and ``ip xfrm monitor``,
  which runs in the guest from boot, for the SAs a rekey or an expiry removed before the end of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..crypto import TransformType, get_encr, get_integ
from ..crypto.algorithms import algorithms
from ..errors import IpsecLabError
from ..packets.message import EncryptedFragment, EncryptedPayload, IkeSaCrypto, SkCrypto, decode
from ..pcap.keyfiles import IkeSaKeyRow

# strongSwan's log names a transform by its IANA name (AES_CBC_256, HMAC_SHA2_256_128): the registry's
# rows that strongSwan has a keyword for
_SS_ENCR = {a.strongswan_log_name: a.id for a in algorithms(TransformType.ENCR) if a.strongswan}
_SS_INTEG = {a.strongswan_log_name: a.id for a in algorithms(TransformType.INTEG) if a.strongswan}


@dataclass(slots=True)
class StrongswanIkeKeys:
    """One IKE SA's keys as charon logged them (``sa`` is the log's ``name|unique-id`` tag)."""

    sa: str
    proposal: str = ""
    secrets: dict[str, bytes] = field(default_factory=dict)

    def suite(self) -> tuple[int, int, int]:
        """(ENCR id, key bits, INTEG id or 0) from the selected proposal, e.g. AES_CBC_256/HMAC_SHA2_256_128/..."""
        encr = key_bits = integ = 0
        for token in self.proposal.split("/"):
            for name, eid in _SS_ENCR.items():
                if token.startswith(name + "_") and token[len(name) + 1 :].isdigit():
                    encr, key_bits = eid, int(token[len(name) + 1 :])
                elif token == name:  # fixed key length, e.g. CHACHA20_POLY1305
                    encr, key_bits = eid, get_encr(eid).key_bits
            if token in _SS_INTEG:
                integ = _SS_INTEG[token]
        if not encr:
            raise IpsecLabError(f"cannot tell the cipher of strongSwan proposal {self.proposal!r}")
        return encr, key_bits, integ


def _crypto(keys: StrongswanIkeKeys) -> tuple[IkeSaCrypto, int, int, int]:
    encr_id, bits, integ_id = keys.suite()
    encr = get_encr(encr_id, bits)
    integ = get_integ(integ_id) if integ_id else None
    s = keys.secrets
    crypto = IkeSaCrypto(SkCrypto(encr, integ, s["sk_ei"], s.get("sk_ai", b"")),
                         SkCrypto(encr, integ, s["sk_er"], s.get("sk_ar", b"")))
    return crypto, encr_id, bits, integ_id


def match_ike_keys(keysets: list[StrongswanIkeKeys], messages: list[bytes]) -> list[IkeSaKeyRow]:
    """Key table rows: each key set paired with the SPIs of a captured message its keys authenticate."""
    rows: list[IkeSaKeyRow] = []
    seen: set[tuple[bytes, bytes]] = set()
    for keys in keysets:
        try:
            crypto, encr_id, bits, integ_id = _crypto(keys)
        except IpsecLabError:
            continue
        for data in messages:
            try:
                head = decode(data)
            except IpsecLabError:
                continue
            pair = (head.spi_i, head.spi_r)
            protected = bool(head.payloads) and isinstance(head.payloads[-1], EncryptedPayload | EncryptedFragment)
            if pair in seen or not protected:
                continue
            try:
                decode(data, crypto)
            except IpsecLabError:
                continue
            seen.add(pair)
            s = keys.secrets
            rows.append(IkeSaKeyRow(pair[0], pair[1], s["sk_ei"], s["sk_er"], encr_id, bits,
                                    s.get("sk_ai", b""), s.get("sk_ar", b""), integ_id))
            break
    return rows


# --- ip -s xfrm state ------------------------------------------------------------------------


@dataclass(slots=True)
class XfrmState:
    """One kernel SA as ``ip -s xfrm state`` shows it."""

    src: str
    dst: str
    proto: str
    spi: int
    mode: str = ""
    replay_window: int = 0
    aead: tuple[str, bytes, int] | None = None  # (kernel name, key incl. salt, ICV bits)
    enc: tuple[str, bytes] | None = None
    auth: tuple[str, bytes, int] | None = None  # (kernel name, key, truncation bits)
    encap: tuple[str, int, int] | None = None  # (type, sport, dport)
    esn: bool = False
    counters: dict[str, int] = field(default_factory=dict)


_HEX = re.compile(r"0x([0-9a-fA-F]+)")


_MONITOR_EVENTS = ("Deleted ", "Updated ", "Expired ")


def parse_xfrm_monitor(text: str) -> list[XfrmState]:
    """The SAs in ``ip xfrm monitor`` output (the same blocks as ``ip xfrm state``, some headed by the event:
    ``Deleted src ...``).  Policy blocks read like SAs to the state parser (their template line
    ``proto esp reqid N`` puts the reqid where an SA has its SPI): only blocks with key material are SAs."""
    lines = []
    for line in text.splitlines():
        for event in _MONITOR_EVENTS:
            if line.startswith(event):
                line = line[len(event):]
        lines.append(line)
    return [s for s in parse_xfrm_state("\n".join(lines)) if s.proto and (s.aead or s.enc or s.auth)]


def parse_xfrm_state(text: str) -> list[XfrmState]:
    """Parse ``ip -s xfrm state`` output (iproute2 6.1) into XfrmState records."""
    out: list[XfrmState] = []
    cur: XfrmState | None = None
    for raw in text.splitlines():
        line = raw.strip()
        words = line.split()
        if not words:
            continue
        if words[0] == "src" and len(words) >= 4 and words[2] == "dst":
            cur = XfrmState(words[1], words[3], "", 0)
            out.append(cur)
            continue
        if cur is None:
            continue
        if words[0] == "proto" and len(words) >= 4:
            cur.proto = words[1]
            cur.spi = int(words[3].split("(")[0], 16)
            if "mode" in words:
                cur.mode = words[words.index("mode") + 1]
        elif words[0] == "replay-window" and "failed" in words:  # the line after "stats:"
            for i in range(0, len(words) - 1, 2):
                if words[i + 1].isdigit():
                    cur.counters[words[i]] = int(words[i + 1])
        elif words[0] == "replay-window" and len(words) > 1 and words[1].isdigit():
            cur.replay_window = int(words[1])
            cur.esn = "esn" in words[words.index("flag"):] if "flag" in words else False
        elif words[0] == "replay_window" and len(words) > 1:
            cur.replay_window = int(words[1].rstrip(","))
        elif words[0] == "aead" and len(words) >= 4:
            cur.aead = (words[1], bytes.fromhex(words[2][2:]), int(words[-1]))
        elif words[0] == "enc" and len(words) >= 3:
            cur.enc = (words[1], bytes.fromhex(words[2][2:]))
        elif words[0] in ("auth-trunc", "auth") and len(words) >= 3:
            bits = int(words[-1]) if words[0] == "auth-trunc" and words[-1].isdigit() else 0
            cur.auth = (words[1], bytes.fromhex(words[2][2:]), bits)
        elif words[0] == "encap" and "sport" in words:
            cur.encap = (words[2], int(words[words.index("sport") + 1]), int(words[words.index("dport") + 1]))
        elif words[0] == "stats:":
            pairs = words[1:]
            for i in range(0, len(pairs) - 1, 2):
                if pairs[i + 1].isdigit():
                    cur.counters[pairs[i]] = int(pairs[i + 1])
        elif "oseq" in line:
            for name in ("seq", "oseq", "seq-hi", "oseq-hi"):
                m = re.search(rf"(?<![-\w]){name} 0x([0-9a-f]+)", line)
                if m:
                    cur.counters[name] = int(m.group(1), 16)
        elif words[0] == "lifetime" and words[1:2] == ["current:"]:
            continue
        elif re.match(r"^\d+\(bytes\), \d+\(packets\)", line):
            m = re.match(r"^(\d+)\(bytes\), (\d+)\(packets\)", line)
            if m:
                cur.counters["bytes"], cur.counters["packets"] = int(m.group(1)), int(m.group(2))
    return out


def parse_xfrm_stat(text: str) -> dict[str, int]:
    """Every counter of ``/proc/net/xfrm_stat`` (``XfrmInNoStates  3`` lines), zeros included."""
    return {w[0]: int(w[1]) for w in map(str.split, text.splitlines()) if len(w) == 2 and w[1].isdigit()}

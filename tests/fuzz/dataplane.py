"""Fuzzing the ESP/AH data plane, the IKE message codec and the capture and key-file readers.

One module holds the targets, their seeds (authentic inputs) and the properties they must keep; the
CI suite (``tests/unit/test_fuzz_dataplane.py``) drives them with Hypothesis for a bounded number of
examples, and ``python -m tests.fuzz.dataplane --seconds N`` drives them with plain ``random`` as fast
as it can and prints inputs per second, inputs and escapes per target.

Properties, for every input:

* nothing escapes but the declared errors (:class:`~ipseclab.errors.IpsecLabError` subclasses);
* an SA that refuses a packet keeps its replay window, and of its counters only one drop/failure
  counter moves (by one); a packet it accepts is one the sender built (its inner bytes are the sender's);
* a genuine packet after any sequence of forged ones is still accepted;
* the codec decrypts only messages that are byte for byte authentic;
* memory stays bounded: a receiving SA keeps no per-packet state, the capture readers read no record
  over ``reader.MAX_RECORD`` (checked with tracemalloc in CI, and as process RSS in the long run).

A property that breaks raises :class:`PropertyViolation` (an AssertionError); any other exception is
an escape.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ipseclab.analysis import crypto_from_row, decrypt_capture, decrypt_esp_capture, esp_sa_row, ike_datagrams
from ipseclab.crypto import EncrId, IntegId
from ipseclab.errors import IpsecLabError, ReplayError
from ipseclab.esp import AhSA, EspSA
from ipseclab.esp.common import SaBase
from ipseclab.esp.iphdr import OuterHeader, spliced_header
from ipseclab.packets.message import EncryptedFragment, IkeSaCrypto, decode
from ipseclab.packets.natt import NATT_PORT, Udp4500Kind, classify_udp4500
from ipseclab.pcap.esp_keyfiles import parse_esp_sa
from ipseclab.pcap.keyfiles import key_file_text, parse_ikev2_decryption_table, read_ikev2_decryption_table
from ipseclab.pcap.reader import BadFrame, read_ip

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"


class PropertyViolation(AssertionError):
    """A fuzz property broke: the message says which, for which input."""


# --- mutations ---------------------------------------------------------------------------------------

# (kind, position, value, bytes): applied in order, positions taken modulo the current length
Op = tuple[int, int, int, bytes]
FLIP, SET, TRUNCATE, EXTEND, INSERT, DELETE, WORD, SPLICE = range(8)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)


def mutate(data: bytes, ops: Sequence[Op], others: Sequence[bytes] = ()) -> bytes:
    """``data`` changed by ``ops``; SPLICE takes bytes from ``others`` (other seeds of the same target)."""
    b = bytearray(data)
    for kind, pos, val, blob in ops:
        n = len(b)
        i = pos % n if n else 0
        if kind == FLIP and n:
            b[i] ^= (val % 255) + 1
        elif kind == SET and n:
            b[i] = val & 0xFF
        elif kind == TRUNCATE:
            del b[i:]
        elif kind == EXTEND:
            b += blob
        elif kind == INSERT:
            b[i:i] = blob
        elif kind == DELETE and n:
            del b[i : i + 1 + val % 16]
        elif kind == WORD and n >= 4:
            i = min(i, n - 4)
            b[i : i + 4] = INTERESTING[val % len(INTERESTING)].to_bytes(4, "big")
        elif kind == SPLICE and others:
            other = others[val % len(others)]
            j = pos % (len(other) or 1)
            b[i:] = other[j:]
    return bytes(b)


def random_ops(rng: random.Random, most: int = 4) -> list[Op]:
    ops = []
    for _ in range(rng.randint(1, most)):
        kind = rng.randrange(8)
        blob = rng.randbytes(rng.choice((1, 2, 4, 8, 40))) if kind in (EXTEND, INSERT) else b""
        ops.append((kind, rng.getrandbits(16), rng.getrandbits(16), blob))
    return ops


# --- ESP/AH -----------------------------------------------------------------------------------------

K = bytes(range(64))
TUN4 = ("198.51.100.1", "198.51.100.2")
TUN6 = ("2001:db8::1", "2001:db8::2")
WINDOW = 4  # small, so that a few packets fall left of it
ACCEPTED, FUTURE = 6, 4  # packets the receiver accepted before the forger starts; packets not yet delivered

ESP_SUITES: dict[str, dict[str, Any]] = {
    "gcm16": dict(encr=EncrId.AES_GCM_16, key=K[:20]),
    "gcm8": dict(encr=EncrId.AES_GCM_8, key=K[:36]),
    "chacha": dict(encr=EncrId.CHACHA20_POLY1305, key=K[:36]),
    "gmac": dict(encr=EncrId.NULL_AUTH_AES_GMAC, key=K[:20]),
    "cbc-sha256": dict(encr=EncrId.AES_CBC, key=K[:16], integ=IntegId.HMAC_SHA2_256_128, integ_key=K[:32]),
    "null-sha1": dict(encr=EncrId.NULL, key=b"", integ=IntegId.HMAC_SHA1_96, integ_key=K[:20]),
}
AH_SUITES: dict[str, dict[str, Any]] = {
    "ah-sha256": dict(integ=IntegId.HMAC_SHA2_256_128, key=K[:32]),
    "ah-xcbc": dict(integ=IntegId.AES_XCBC_96, key=K[:16]),
}
# the counters a refused (or unauthenticated) packet may move: one of them, by one
DROP_COUNTERS = ("replay_drops", "integrity_failures", "decode_errors", "padding_errors", "unknown_spi",
                 "selector_mismatches", "keepalives_in")


@cache
def inner_packets() -> dict[int, bytes]:
    """An inner IPv4 and IPv6 UDP packet (built by Scapy: an outside view of what a packet is)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    return {4: bytes(IP(src="10.0.0.1", dst="10.0.1.1") / UDP(sport=7, dport=9) / Raw(b"payload" * 5)),
            6: bytes(IPv6(src="2001:db8:5::1", dst="2001:db8:6::1") / UDP(sport=7, dport=9) / Raw(b"payload" * 5))}


@dataclass(frozen=True)
class SaConfig:
    """One way to set up an SA pair; ``layer`` is what the receiver is fed: ``packet`` (unprotect), ``esp``
    (decapsulate, ESP from SPI to ICV) or ``scapy`` (decrypt of a Scapy packet)."""

    suite: str
    mode: str = "tunnel"
    outer: int = 4
    inner: int = 4
    udp: bool = False
    esn: bool = False
    wrap: bool = False  # start the sender just below 2^32 (ESN crosses into the next subspace)
    layer: str = "packet"

    @property
    def ah(self) -> bool:
        return self.suite in AH_SUITES

    def make(self) -> SaBase:
        tunnel = (TUN4 if self.outer == 4 else TUN6) if self.mode == "tunnel" else None
        seq = 2**32 - ACCEPTED - 3 if self.wrap else 0
        if self.ah:
            return AhSA(0x1234, **AH_SUITES[self.suite], mode=self.mode, tunnel=tunnel, esn=self.esn,
                        replay_window=WINDOW, seq=seq)
        return EspSA(0x1234, **ESP_SUITES[self.suite], mode=self.mode, tunnel=tunnel, udp=self.udp, esn=self.esn,
                     replay_window=WINDOW, seq=seq)


def sa_configs() -> list[SaConfig]:
    """Every suite in both modes, IPv4 and IPv6 outside and inside, UDP, ESN (with a wrap), and all three layers."""
    out = []
    for suite in (*ESP_SUITES, *AH_SUITES):
        ah = suite in AH_SUITES
        for mode in ("tunnel", "transport"):
            for outer in (4, 6):
                for udp in (False,) if ah or outer == 6 else (False, True):
                    for esn, wrap in ((False, False), (True, False), (True, True)):
                        inner = outer if mode == "transport" else 10 - outer if wrap else outer
                        layers = ("packet", "scapy") if ah else ("packet", "esp") if not (outer == 4 and not esn) \
                            else ("packet", "esp", "scapy")
                        for layer in layers:
                            out.append(SaConfig(suite, mode, outer, inner, udp, esn, wrap, layer))
    return out


@dataclass
class SaEpisode:
    """A receiver that accepted ACCEPTED packets, the packets a forger starts from, and a genuine one to come.

    Seeds: the accepted packets (two of them are now left of the window) and FUTURE packets not yet
    delivered; the genuine packet's sequence number is far above all of them.  :meth:`odd` makes
    authentic packets around any payload and next header, as a peer with the keys but a broken (or
    hostile) stack would send: the receiver must refuse what does not fit with a declared error.
    """

    config: SaConfig
    rx: SaBase = field(init=False)
    seeds: list[bytes] = field(init=False)
    genuine: bytes = field(init=False)
    _expected: bytes = field(init=False)
    _tx: SaBase = field(init=False)
    _twin: SaBase = field(init=False)
    _odd_seq: int = field(init=False)
    delivered: set[bytes] = field(init=False, default_factory=set)  # accepted bytes: a replay of one is a replay

    def __post_init__(self) -> None:
        cfg = self.config
        tx, self.rx = cfg.make(), cfg.make()
        self._tx = tx
        # a transport-mode SA with the same keys: over an outer header whose protocol is the next header,
        # it makes exactly the tunnel-mode packet a sender would, around bytes a real sender would refuse
        self._twin = SaConfig(cfg.suite, "transport", cfg.outer, cfg.outer, cfg.udp, cfg.esn, cfg.wrap).make()
        inner = inner_packets()[cfg.inner]
        if cfg.mode == "transport":  # transport mode protects the packet's own payload; the outer is the packet
            inner = inner_packets()[cfg.outer]
        if cfg.layer == "esp":
            assert isinstance(tx, EspSA)
            payload = inner if cfg.mode == "tunnel" else inner[20 if cfg.outer == 4 else 40 :]
            nh = (4 if cfg.inner == 4 else 41) if cfg.mode == "tunnel" else 17
            send: Callable[[], bytes] = lambda: tx.encapsulate(payload, nh)  # noqa: E731
            self._expected = payload
        else:
            send = lambda: tx.protect(inner)  # noqa: E731
            self._expected = inner if cfg.mode == "tunnel" else inner[20 if cfg.outer == 4 else 40 :]
        packets = [send() for _ in range(ACCEPTED + FUTURE)]
        for p in packets[:ACCEPTED]:
            self._receive(p)
            self.delivered.add(p)
        self.seeds = packets
        self._odd_seq = tx.seq + 1
        if self.rx.window.top != tx.seq - FUTURE:
            raise PropertyViolation(f"{cfg}: the receiver did not accept the sender's first packets")
        tx.seq += 100_000  # the genuine packet comes after every odd one
        self.genuine = send()

    def odd(self, payload: bytes, nh: int) -> bytes | None:
        """An authentic packet carrying ``payload`` as next header ``nh`` (None if the sender refuses to build it)."""
        cfg = self.config
        seq = self._odd_seq
        self._odd_seq += 1
        try:
            if cfg.layer == "esp":
                assert isinstance(self._tx, EspSA)
                return self._tx.encapsulate(payload, nh, seq=seq)
            if cfg.mode == "tunnel":
                head = OuterHeader(*(TUN4 if cfg.outer == 4 else TUN6)).build(nh, len(payload))
            else:
                packet = inner_packets()[cfg.outer]
                cut = 20 if cfg.outer == 4 else 40
                head = spliced_header(packet, 9 if cfg.outer == 4 else 6, cut, nh, len(payload))
            return self._twin.protect(head + payload, seq=seq)  # type: ignore[call-arg]
        except IpsecLabError:
            return None

    def _receive(self, data: bytes) -> bytes | None:
        rx = self.rx
        layer = self.config.layer
        if layer == "esp":
            assert isinstance(rx, EspSA)
            return rx.decapsulate(data)[0]
        if layer == "scapy":
            from scapy.layers.inet import IP
            from scapy.layers.inet6 import IPv6

            try:  # what Scapy cannot dissect is no Scapy packet: the SA gets the bytes (decrypt takes both)
                pkt: Any = IP(data) if self.config.outer == 4 else IPv6(data)
            except Exception:
                pkt = data
            out = rx.decrypt(pkt)
            return bytes(out) if out is not None else None
        return rx.unprotect(data)

    def _state(self) -> tuple[int, tuple[bool, ...], dict[str, int]]:
        w = self.rx.window
        return w.top, tuple(w.seen(s) for s in range(max(1, w.top - w.size + 1), w.top + 1)), \
            self.rx.counters.as_dict()

    def feed(self, data: bytes, authentic: bool = False) -> bool:
        """Give the receiver one input; True if it was accepted.  PropertyViolation when a property broke.

        ``authentic``: the input came from :meth:`odd`, so accepting it (whatever it carries) is right.
        """
        top, seen, before = self._state()
        try:
            out = self._receive(data)
        except IpsecLabError as exc:
            top2, seen2, after = self._state()
            moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            if (top2, seen2) != (top, seen):
                raise PropertyViolation(f"{self.config}: refused input ({exc!r}) moved the window: "
                                        f"{data.hex()}") from None
            if len(moved) != 1 or next(iter(moved)) not in DROP_COUNTERS or next(iter(moved.values())) != 1:
                raise PropertyViolation(f"{self.config}: refused input ({exc!r}) changed counters {moved}: "
                                        f"{data.hex()}") from None
            if data in self.delivered and not isinstance(exc, ReplayError):
                # RFC 4303 3.4.3; with ESN, Appendix A2.2 infers it into the next subspace, and it is still a replay
                raise PropertyViolation(f"{self.config}: a replayed packet was refused as {exc!r}") from None
            return False
        self.delivered.add(data)
        if authentic:
            return True
        if out is None:  # a NAT keepalive: unauthenticated, it may only be counted
            top2, seen2, after = self._state()
            moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            if (top2, seen2) != (top, seen) or moved != {"keepalives_in": 1}:
                raise PropertyViolation(f"{self.config}: a None result changed {moved}: {data.hex()}")
            return False
        if not out.endswith(self._expected):
            raise PropertyViolation(f"{self.config}: accepted a packet the sender did not build: {data.hex()}")
        return True

    def finish(self) -> None:
        """The genuine packet, after whatever the forger sent, is accepted."""
        if not self.feed(self.genuine):
            raise PropertyViolation(f"{self.config}: the genuine packet was refused after forged ones")


# an input: (seed index, mutations) of a seed; raw bytes; or ("odd", payload, next header), an authentic packet
SaInput = tuple[int, Sequence[Op]] | bytes | tuple[str, bytes, int]
ODD_NEXT_HEADERS = (4, 41, 59, 17, 6, 0, 43, 44, 50, 51, 60, 255)


def run_sa(config: SaConfig, inputs: Sequence[SaInput]) -> int:
    """One episode: every input, then the genuine packet.  Returns how many inputs were accepted."""
    ep = SaEpisode(config)
    accepted = 0
    for item in inputs:
        if isinstance(item, bytes):
            accepted += ep.feed(item)
        elif isinstance(item[0], str):
            odd = ep.odd(item[1], item[2])  # type: ignore[arg-type]
            if odd is not None:
                accepted += ep.feed(odd, authentic=True)
        else:
            accepted += ep.feed(mutate(ep.seeds[item[0] % len(ep.seeds)], item[1], ep.seeds))  # type: ignore[arg-type]
    ep.finish()
    return accepted


# --- the IKE codec ------------------------------------------------------------------------------------


@cache
def ike_seeds() -> list[tuple[bytes, IkeSaCrypto]]:
    """Every IKE message of the strongSwan captures with the crypto of its IKE SA (from the captures' key tables)."""
    out = []
    for table in sorted(PCAPS.glob("*.ikev2_decryption_table")):
        rows = read_ikev2_decryption_table(table)
        cryptos = {(r.spi_i, r.spi_r): crypto_from_row(r) for r in rows}
        if not cryptos:  # a suite Wireshark cannot decrypt has an empty table
            continue
        for d in ike_datagrams(table.with_suffix(".pcap")):
            if isinstance(d, BadFrame):
                continue
            data = d.payload
            if NATT_PORT in (d.sport, d.dport):
                kind, data = classify_udp4500(data)
                if kind is not Udp4500Kind.IKE:
                    continue
            crypto = cryptos.get((data[:8], data[8:16])) or next(iter(cryptos.values()))
            out.append((data, crypto))
    return out


@cache
def _authentic() -> frozenset[bytes]:
    return frozenset(d for d, _ in ike_seeds())


def check_ike(data: bytes, crypto: IkeSaCrypto) -> bool:
    """Decode with and without keys; only declared errors, and only authentic bytes decrypt.  True if decrypted."""
    for keys in (None, crypto):
        try:
            msg = decode(data, keys)
        except IpsecLabError:
            continue
        last = msg.payloads[-1] if msg.payloads else None
        decrypted = (msg.encrypted is not None and msg.encrypted.payloads is not None) or (
            isinstance(last, EncryptedFragment) and last.plaintext is not None)
        if decrypted:
            if data not in _authentic():
                raise PropertyViolation(f"the codec decrypted bytes no peer sent: {data.hex()}")
            return True
    return False


# --- captures and key files -------------------------------------------------------------------------------


def pcap_frames(pcap: bytes) -> list[bytes]:
    """The frames of a little-endian classic pcap (the golden captures)."""
    frames, pos = [], 24
    while pos + 16 <= len(pcap):
        caplen = int.from_bytes(pcap[pos + 8 : pos + 12], "little")
        frames.append(pcap[pos + 16 : pos + 16 + caplen])
        pos += 16 + caplen
    return frames


def pcapng_bytes(frames: Sequence[bytes], linktype: int, tsresol: int | None = None) -> bytes:
    """A little-endian pcapng: section header, one interface (``if_tsresol`` if given), enhanced packet blocks."""

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return kind.to_bytes(4, "little") + n.to_bytes(4, "little") + body + n.to_bytes(4, "little")

    shb = (0x1A2B3C4D).to_bytes(4, "little") + (1).to_bytes(2, "little") + bytes(2) + b"\xff" * 8
    options = b"" if tsresol is None else b"\x09\x00\x01\x00" + bytes((tsresol, 0, 0, 0)) + bytes(4)
    out = block(0x0A0D0D0A, shb) + block(1, linktype.to_bytes(2, "little") + bytes(2) +
                                         (262144).to_bytes(4, "little") + options)
    for i, data in enumerate(frames):
        head = b"".join(x.to_bytes(4, "little") for x in (0, 0, i, len(data), len(data)))
        out += block(6, head + data)
    return out


@cache
def capture_seeds() -> list[bytes]:
    """The golden captures, as classic pcap and as pcapng."""
    out = []
    for p in sorted(PCAPS.glob("*.pcap")):
        data = p.read_bytes()
        out.append(data)
        out.append(pcapng_bytes(pcap_frames(data), int.from_bytes(data[20:24], "little")))
    return out


@cache
def _capture_rows() -> tuple[list[Any], list[Any]]:
    rows = [r for t in sorted(PCAPS.glob("*.ikev2_decryption_table")) for r in read_ikev2_decryption_table(t)]
    esp = EspSA(0x1234, **ESP_SUITES["cbc-sha256"], mode="transport")
    return rows, [esp_sa_row(esp)]


def check_capture(data: bytes, decrypt: bool = True) -> bool:
    """Read a capture (and decrypt it with the golden keys); only PcapError escapes, and only for a non-capture.

    Frame errors (BadFrame) are what a broken capture gives; the one that says the capture is
    truncated or undecodable comes last.  Returns whether the capture was read to its end without a break.
    """
    try:
        items = list(read_ip(data))
    except IpsecLabError:
        if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a") and len(data) >= 28:
            raise PropertyViolation(f"a capture with a valid start was refused outright: {data[:64].hex()}") from None
        return False
    for i, item in enumerate(items[:-1]):
        if isinstance(item, BadFrame) and item.reason.startswith(("capture truncated", "undecodable")):
            raise PropertyViolation(f"reading went on after {item.reason!r} (item {i})")
    if decrypt:
        rows, esp_rows = _capture_rows()
        decrypt_capture(data, rows)
        decrypt_esp_capture(data, esp_rows)
    return not (items and isinstance(items[-1], BadFrame) and items[-1].reason.startswith(
        ("capture truncated", "undecodable")))


@cache
def key_file_seeds() -> list[tuple[str, bytes]]:
    """("ike", an ikev2_decryption_table) and ("esp", an esp_sa file): the golden tables and rows for every suite."""
    out = [("ike", t.read_bytes()) for t in sorted(PCAPS.glob("*.ikev2_decryption_table"))]
    rows = []
    for name, kw in ESP_SUITES.items():
        if name == "gcm8":
            continue
        sa = EspSA(0x1000 + len(rows), **kw, mode="transport")
        rows.append(esp_sa_row(sa, src="198.51.100.1", dst="198.51.100.2").to_row())
    out.append(("esp", ("\n".join(rows) + "\n").encode()))
    return out


def check_key_file(kind: str, data: bytes) -> int:
    """Decode, parse and check every row the way ``ipseclab decrypt`` does; only KeyFileError-type errors."""
    try:
        text = key_file_text(data, "fuzz")
        if kind == "ike":
            rows = parse_ikev2_decryption_table(text, "fuzz")
            for row in rows:
                crypto_from_row(row)
            return len(rows)
        esp_rows = parse_esp_sa(text, "fuzz")
        decrypt_esp_capture(_EMPTY_PCAP, esp_rows)
        return len(esp_rows)
    except IpsecLabError:
        return 0


_EMPTY_PCAP = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(8) + (262144).to_bytes(4, "little") + bytes((1, 0, 0, 0))


# --- the long run ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    inputs: int = 0
    accepted: int = 0
    escapes: int = 0
    violations: int = 0
    seconds: float = 0.0
    first: list[str] = field(default_factory=list)


def _esp_batch(rng: random.Random, configs: list[SaConfig]) -> tuple[int, int]:
    cfg = rng.choice(configs)
    n = rng.randint(10, 60)
    inputs: list[SaInput] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            inner = rng.choice(list(inner_packets().values()))
            payload = rng.choice((rng.randbytes(rng.randrange(0, 60)), inner[: rng.randrange(len(inner) + 1)],
                                  inner + rng.randbytes(rng.randrange(1, 30))))
            inputs.append(("odd", payload, rng.choice(ODD_NEXT_HEADERS)))
        elif r < 0.18:
            inputs.append(rng.randbytes(rng.randrange(0, 120)))
        elif r < 0.25:
            inputs.append((rng.randrange(ACCEPTED + FUTURE), ()))  # an unmodified replay or a future packet
        else:
            inputs.append((rng.randrange(ACCEPTED + FUTURE), random_ops(rng)))
    return n + 1, run_sa(cfg, inputs)


def _codec_batch(rng: random.Random) -> tuple[int, int]:
    seeds = ike_seeds()
    accepted = 0
    for _ in range(50):
        data, crypto = rng.choice(seeds)
        if rng.random() < 0.05:
            data = rng.randbytes(rng.randrange(0, 300))
        else:
            data = mutate(data, random_ops(rng), [d for d, _ in seeds[:8]])
        accepted += check_ike(data, crypto)
    return 50, accepted


def _pcap_batch(rng: random.Random) -> tuple[int, int]:
    seeds = capture_seeds()
    data = rng.choice(seeds)
    data = rng.randbytes(rng.randrange(0, 2000)) if rng.random() < 0.03 else mutate(data, random_ops(rng, 6), seeds)
    return 1, check_capture(data, decrypt=rng.random() < 0.25)


def _keys_batch(rng: random.Random) -> tuple[int, int]:
    kind, data = rng.choice(key_file_seeds())
    data = rng.randbytes(rng.randrange(0, 400)) if rng.random() < 0.03 else mutate(data, random_ops(rng, 6))
    return 1, check_key_file(kind, data) > 0


def long_run(seconds: float, seed: int, targets: Sequence[str]) -> dict[str, Tally]:
    """Run every target in turn, in slices of a quarter second, for ``seconds`` in all."""
    rng = random.Random(seed)
    configs = sa_configs()
    esp_configs = [c for c in configs if not c.ah]
    ah_configs = [c for c in configs if c.ah]
    batches: dict[str, Callable[[], tuple[int, int]]] = {
        "esp": lambda: _esp_batch(rng, esp_configs),
        "ah": lambda: _esp_batch(rng, ah_configs),
        "codec": lambda: _codec_batch(rng),
        "pcap": lambda: _pcap_batch(rng),
        "keys": lambda: _keys_batch(rng),
    }
    tallies = {t: Tally() for t in targets}
    for t in targets:  # seeds are built once, outside the timed slices
        {"esp": inner_packets, "ah": inner_packets, "codec": ike_seeds, "pcap": capture_seeds,
         "keys": key_file_seeds}[t]()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for t in targets:
            tally, batch = tallies[t], batches[t]
            start = time.perf_counter()
            stop = start + 0.25
            while time.perf_counter() < stop:
                try:
                    n, ok = batch()
                except PropertyViolation as exc:
                    tally.violations += 1
                    n, ok = 1, 0
                    if len(tally.first) < 3:
                        tally.first.append(f"violation: {str(exc)[:300]}")
                except Exception as exc:  # an escape: the very thing this run looks for
                    tally.escapes += 1
                    n, ok = 1, 0
                    if len(tally.first) < 3:
                        where = traceback.extract_tb(exc.__traceback__)[-1]
                        tally.first.append(f"escape: {type(exc).__name__}: {exc} at {where.filename}:{where.lineno}")
                tally.inputs += n
                tally.accepted += ok
            tally.seconds += time.perf_counter() - start
    return tallies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run, all targets together")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--targets", default="esp,ah,codec,pcap,keys", help="comma-separated subset")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    targets = [t for t in args.targets.split(",") if t]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    tallies = long_run(args.seconds, seed, targets)
    wall = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"seed {seed}, {wall:.0f} s, peak RSS {rss / 1024:.0f} MiB (after seeds: {rss0 / 1024:.0f} MiB)\n")
    # accepted: packets an SA took in (esp, ah), messages decrypted (codec), captures read to their end (pcap),
    # key files whose rows all passed (keys)
    print("| target | inputs | inputs/s | accepted | escapes | property violations |")
    print("|---|---:|---:|---:|---:|---:|")
    for t, tally in tallies.items():
        rate = tally.inputs / tally.seconds if tally.seconds else 0.0
        print(f"| {t} | {tally.inputs:,} | {rate:,.0f} | {tally.accepted:,} | {tally.escapes} | {tally.violations} |")
    for t, tally in tallies.items():
        for line in tally.first:
            print(f"{t}: {line}")
    bad = sum(t.escapes + t.violations for t in tallies.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

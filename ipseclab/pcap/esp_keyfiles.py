"""Wireshark's ``esp_sa`` table (Preferences > Protocols > ESP > ESP SAs), read and written.

One row per ESP SA, eight quoted fields::

    "IPv4","src","dst","0xSPI","ENC NAME","0xKEY","AUTH NAME","0xKEY"

Read as Wireshark reads it: addresses and SPI may be ``*`` (any), an IPv4 octet or IPv6 group
``*``, an SPI ``0x1234****`` (those nibbles free), decimal or octal as C's ``strtoul`` takes them;
a key is ``0x`` and hex (an odd digit count gets a leading 0) or else the key's own characters.
The names are Wireshark 4.0.17's own, read off
``libwireshark.so.16`` (the algorithm registry's ``wireshark_esp`` column, ``crypto/algorithms.py``);
for AES-GCM the key carries the 4-byte salt at its end, as in
IKEv2 KEYMAT.  Wireshark 4.0 has eight fields (no ESN: its ICV check fails on ESN SAs
that are not AEAD, and AEAD ones with ESN do not decrypt), no ChaCha20-Poly1305, no
AES-GMAC and no AES-XCBC for ESP: rows for those carry names of our own, marked
``ipseclab-only``, that ipseclab reads and :func:`tshark_esp_options` leaves out.
This module names transforms by IANA id only (no ``ipseclab.esp`` import), so the
pcap layer stays an independent check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..crypto import TransformType
from ..crypto.algorithms import WIRESHARK_ESP_LEGACY_ENCR, WIRESHARK_ESP_ONLY_ENCR, algorithm, algorithms
from ..errors import KeyFileError
from .keyfiles import csv_rows, lookup_name, read_key_file, skip_or_raise

# Wireshark ESP encryption name -> ENCR id (None: Wireshark knows it, IANA/ipseclab does not); from the
# registry's ``wireshark_esp`` column and its list of Wireshark-only names
ESP_ENCR_NAMES: dict[str, int | None] = {
    **{a.wireshark_esp: a.id for a in algorithms(TransformType.ENCR) if a.wireshark_esp},
    **dict.fromkeys(WIRESHARK_ESP_ONLY_ENCR),
    **dict.fromkeys(WIRESHARK_ESP_LEGACY_ENCR),
}
# why ipseclab reads a Wireshark encryption name but cannot decrypt with it
ESP_ENCR_REFUSALS: dict[str, str] = {**WIRESHARK_ESP_ONLY_ENCR, **WIRESHARK_ESP_LEGACY_ENCR}
# Wireshark ESP authentication name -> (INTEG id or None, ICV bytes)
ESP_AUTH_NAMES: dict[str, tuple[int | None, int]] = {
    a.wireshark_esp: (a.id, a.icv) for a in algorithms(TransformType.INTEG) if a.wireshark_esp
}
_ENCR_BY_ID = {v: k for k, v in ESP_ENCR_NAMES.items() if v is not None}
_AUTH_BY_ID = {v[0]: k for k, v in ESP_AUTH_NAMES.items() if v[0] is not None}
FAMILIES = ("IPv4", "IPv6", "Any")


@dataclass(frozen=True, slots=True)
class EspSaRow:
    """One esp_sa row.  ``spi`` None and addresses ``*`` are wildcards."""

    family: str
    src: str
    dst: str
    spi: int | None
    encr_name: str
    encr_key: bytes
    auth_name: str
    auth_key: bytes
    where: str = field(default="", compare=False)  # "file line N" when read from a file: for errors about the row
    spi_mask: int = 0xFFFFFFFF  # the SPI's nibbles that must match (Wireshark's 0x1234**** wildcards clear some)

    @classmethod
    def from_ids(
        cls,
        spi: int,
        encr_id: int,
        encr_key: bytes,
        integ_id: int = 0,
        integ_key: bytes = b"",
        *,
        src: str = "*",
        dst: str = "*",
        family: str = "IPv4",
    ) -> EspSaRow:
        """The row for an SA given by IANA ids (key material as IKE derives it: salt included)."""
        try:
            encr_name = _ENCR_BY_ID[encr_id]
            auth_name = _AUTH_BY_ID[integ_id]
        except KeyError as exc:
            raise KeyFileError(f"no esp_sa name for transform id {exc.args[0]}") from None
        return cls(family, src, dst, spi, encr_name, bytes(encr_key), auth_name, bytes(integ_key))

    @property
    def encr_id(self) -> int | None:
        return ESP_ENCR_NAMES[self.encr_name]

    @property
    def key_bits(self) -> int:
        """The cipher key length in bits (salt excluded)."""
        alg = algorithm(TransformType.ENCR, self.encr_id) if self.encr_id is not None else None
        salt = alg.salt if alg is not None else 0
        return max(0, len(self.encr_key) - salt) * 8

    @property
    def integ_id(self) -> int | None:
        return ESP_AUTH_NAMES[self.auth_name][0]

    @property
    def icv_size(self) -> int:
        return ESP_AUTH_NAMES[self.auth_name][1]

    @property
    def wireshark_can_decrypt(self) -> bool:
        return "ipseclab-only" not in self.encr_name + self.auth_name

    def to_row(self) -> str:
        spi = "*" if self.spi is None else _spi_text(self.spi, self.spi_mask)
        fields = [self.family, self.src, self.dst, spi, self.encr_name, _hexkey(self.encr_key), self.auth_name,
                  _hexkey(self.auth_key)]
        return ",".join(f'"{f}"' for f in fields)

    def matches(self, spi: int, src: str, dst: str) -> bool:
        """Whether this row applies to an ESP packet (wildcards ``*`` in addresses and SPI)."""
        fam = "IPv6" if ":" in src else "IPv4"
        return (
            (self.spi is None or self.spi == spi & self.spi_mask)
            and self.family in (fam, "Any")
            and address_matches(self.src, src)
            and address_matches(self.dst, dst)
        )


def _hexkey(key: bytes) -> str:
    return "0x" + key.hex() if key else ""


def _spi_text(spi: int, mask: int) -> str:
    digits = f"{spi:08x}"
    return "0x" + "".join(d if mask >> (28 - 4 * i) & 0xF else "*" for i, d in enumerate(digits))


def esp_key(field: str, what: str, where: str) -> bytes:
    """A key as Wireshark's ESP dissector reads it (``compute_ascii_key``).

    ``0x`` followed by hex digits, an odd count read as if it had a leading 0; anything else is the
    key's own characters (an ASCII passphrase-like key), as Wireshark takes it.
    """
    text = field.strip()
    if text[:2].lower() != "0x":
        return text.encode()
    digits = text[2:]
    try:
        return bytes.fromhex("0" + digits if len(digits) % 2 else digits)
    except ValueError:
        raise KeyFileError(f"{where}: {what} is not hex: {field!r}") from None


def parse_spi(text: str, where: str) -> tuple[int | None, int]:
    """(SPI, mask of the nibbles that must match) for an esp_sa SPI field, as Wireshark reads it.

    ``*`` is any SPI; ``0x`` and eight characters some of which are ``*`` leave those nibbles free;
    otherwise C's ``strtoul(text, NULL, 0)``: hex after ``0x``, octal after a leading 0, else decimal.
    """
    if text == "*":
        return None, 0
    low = text.lower()
    try:
        if "*" in low:
            if not low.startswith("0x") or len(low) != 10:
                raise ValueError
            mask = int("".join("0" if c == "*" else "f" for c in low[2:]), 16)
            return int(low[2:].replace("*", "0"), 16), mask
        if low.startswith("0x"):
            value = int(low[2:], 16)
        elif low.startswith("0") and len(low) > 1:
            value = int(low[1:], 8)
        else:
            value = int(low, 10)
    except ValueError:
        raise KeyFileError(f"{where}: SPI {text!r} is not a number (0x1234abcd, decimal, 0x1234****, *)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise KeyFileError(f"{where}: SPI {text!r} does not fit in 32 bits")
    return value, 0xFFFFFFFF


def _address_nibbles(text: str) -> str | None:
    """An address (or a filter with ``*`` parts) as 8 or 32 hex characters, ``*`` kept; None if it is neither."""
    if "." in text and ":" not in text:
        parts = text.split(".")
        if len(parts) != 4:
            return None
        out = ""
        for part in parts:
            if part == "*":
                out += "**"
            elif part.isascii() and part.isdigit() and int(part) < 256:
                out += f"{int(part):02x}"
            else:
                return None
        return out
    if ":" in text:
        head, _, tail = text.partition("::")
        hs, ts = [g for g in head.split(":") if g], [g for g in tail.split(":") if g]
        groups = hs + ["0"] * (8 - len(hs) - len(ts)) + ts if "::" in text else hs
        if len(groups) != 8 or any(g != "*" and (len(g) > 4 or any(c not in "0123456789abcdefABCDEF" for c in g))
                                   for g in groups):
            return None
        return "".join("****" if g == "*" else g.lower().zfill(4) for g in groups)
    return None


def address_matches(pattern: str, address: str) -> bool:
    """Whether an esp_sa address field matches a packet's address (Wireshark's ``filter_address_match``).

    ``*`` matches anything; a ``*`` in place of an IPv4 octet or an IPv6 group matches any value there.
    """
    if pattern in ("*", address):
        return True
    want, have = _address_nibbles(pattern), _address_nibbles(address)
    if want is None or have is None or len(want) != len(have):
        return False
    return all(w in ("*", h) for w, h in zip(want, have, strict=True))


def parse_esp_sa(text: str, source: str = "<esp_sa>", skipped: list[str] | None = None) -> list[EspSaRow]:
    """Parse esp_sa rows; KeyFileError names the line and the field at fault.

    With a ``skipped`` list a bad row is noted there (file, line, why) and left out instead, as
    Wireshark leaves out a row it cannot use and reads the rest of the table.
    """
    rows = []
    for n, fields in csv_rows(text, source):
        try:
            rows.append(_esp_row(fields, f"{source} line {n}"))
        except KeyFileError as exc:
            skip_or_raise(exc, skipped)
    return rows


def _esp_row(fields: list[str], where: str) -> EspSaRow:
    if len(fields) != 8:
        raise KeyFileError(
            f'{where}: expected 8 fields ("IPv4","src","dst","0xSPI","ENC","0xKEY","AUTH","0xKEY"), '
            f"got {len(fields)}"
        )
    family, src, dst, spi_text, enc, enc_key, auth, auth_key = (f.strip() for f in fields)
    if family not in FAMILIES:
        raise KeyFileError(f"{where}: protocol {family!r} is not one of {', '.join(FAMILIES)}")
    spi, mask = parse_spi(spi_text, where)
    encr = lookup_name(enc, ESP_ENCR_NAMES)
    if encr is None:
        raise KeyFileError(f"{where}: unknown encryption {enc!r} (known: {', '.join(ESP_ENCR_NAMES)})")
    integ = lookup_name(auth, ESP_AUTH_NAMES)
    if integ is None:
        raise KeyFileError(f"{where}: unknown authentication {auth!r} (known: {', '.join(ESP_AUTH_NAMES)})")
    return EspSaRow(family, src or "*", dst or "*", spi, encr[0], esp_key(enc_key, "encryption key", where), integ[0],
                    esp_key(auth_key, "authentication key", where), where, mask)


def read_esp_sa(path: str | Path, skipped: list[str] | None = None) -> list[EspSaRow]:
    """Read an esp_sa file (a Wireshark profile's, or a run directory's); ``skipped`` as in :func:`parse_esp_sa`."""
    return parse_esp_sa(read_key_file(path), str(path), skipped)


def write_esp_sa(path: str | Path, rows: list[EspSaRow]) -> None:
    """Write rows in Wireshark's format."""
    Path(path).write_text("".join(r.to_row() + "\n" for r in rows), encoding="utf-8")


def tshark_esp_options(rows: list[EspSaRow]) -> list[str]:
    """tshark arguments: ESP decryption and ICV checking on, one ``uat:esp_sa`` per row Wireshark can use."""
    args = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    for r in rows:
        if r.wireshark_can_decrypt:
            args += ["-o", f"uat:esp_sa:{r.to_row()}"]
    return args

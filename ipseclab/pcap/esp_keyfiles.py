"""Wireshark's ``esp_sa`` table (Preferences > Protocols > ESP > ESP SAs), read and written.

One row per ESP SA, eight quoted fields::

    "IPv4","src","dst","0xSPI","ENC NAME","0xKEY","AUTH NAME","0xKEY"

Addresses and SPI may be ``*`` (any).  The names are Wireshark 4.0.17's own, read off
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
from ..crypto.algorithms import WIRESHARK_ESP_ONLY_AUTH, WIRESHARK_ESP_ONLY_ENCR, algorithm, algorithms
from ..errors import KeyFileError
from .keyfiles import csv_rows, read_key_file

# Wireshark ESP encryption name -> ENCR id (None: Wireshark knows it, IANA/ipseclab does not); from the
# registry's ``wireshark_esp`` column and its list of Wireshark-only names
ESP_ENCR_NAMES: dict[str, int | None] = {
    **{a.wireshark_esp: a.id for a in algorithms(TransformType.ENCR) if a.wireshark_esp},
    **dict.fromkeys(WIRESHARK_ESP_ONLY_ENCR),
}
# Wireshark ESP authentication name -> (INTEG id or None, ICV bytes)
ESP_AUTH_NAMES: dict[str, tuple[int | None, int]] = {
    **{a.wireshark_esp: (a.id, a.icv) for a in algorithms(TransformType.INTEG) if a.wireshark_esp},
    **{name: (None, icv) for name, icv in WIRESHARK_ESP_ONLY_AUTH.items()},
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
        spi = "*" if self.spi is None else f"0x{self.spi:08x}"
        fields = [self.family, self.src, self.dst, spi, self.encr_name, _hexkey(self.encr_key), self.auth_name,
                  _hexkey(self.auth_key)]
        return ",".join(f'"{f}"' for f in fields)

    def matches(self, spi: int, src: str, dst: str) -> bool:
        """Whether this row applies to an ESP packet (wildcards ``*`` in addresses and SPI)."""
        fam = "IPv6" if ":" in src else "IPv4"
        return (
            (self.spi is None or self.spi == spi)
            and self.family in (fam, "Any")
            and self.src in ("*", src)
            and self.dst in ("*", dst)
        )


def _hexkey(key: bytes) -> str:
    return "0x" + key.hex() if key else ""


def _key(field: str, what: str, where: str) -> bytes:
    text = field.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{where}: {what} is not hex: {field!r}") from None


def parse_esp_sa(text: str, source: str = "<esp_sa>") -> list[EspSaRow]:
    """Parse esp_sa rows; KeyFileError names the line and the field at fault."""
    rows = []
    for n, fields in csv_rows(text, source):
        where = f"{source} line {n}"
        if len(fields) != 8:
            raise KeyFileError(
                f'{where}: expected 8 fields ("IPv4","src","dst","0xSPI","ENC","0xKEY","AUTH","0xKEY"), '
                f"got {len(fields)}"
            )
        family, src, dst, spi_text, enc, enc_key, auth, auth_key = (f.strip() for f in fields)
        if family not in FAMILIES:
            raise KeyFileError(f"{where}: protocol {family!r} is not one of {', '.join(FAMILIES)}")
        if spi_text == "*":
            spi = None
        else:
            try:
                spi = int(spi_text, 16) if spi_text.lower().startswith("0x") else int(spi_text)
            except ValueError:
                raise KeyFileError(f"{where}: SPI {spi_text!r} is not a number (0x1234abcd)") from None
        if enc not in ESP_ENCR_NAMES:
            raise KeyFileError(f"{where}: unknown encryption {enc!r} (known: {', '.join(ESP_ENCR_NAMES)})")
        if auth not in ESP_AUTH_NAMES:
            raise KeyFileError(f"{where}: unknown authentication {auth!r} (known: {', '.join(ESP_AUTH_NAMES)})")
        rows.append(EspSaRow(family, src or "*", dst or "*", spi, enc, _key(enc_key, "encryption key", where), auth,
                             _key(auth_key, "authentication key", where), where))
    return rows


def read_esp_sa(path: str | Path) -> list[EspSaRow]:
    """Read an esp_sa file (a Wireshark profile's, or a run directory's)."""
    return parse_esp_sa(read_key_file(path), str(path))


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

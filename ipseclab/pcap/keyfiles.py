"""Wireshark's own key file formats, so any ipseclab capture opens decrypted in Wireshark.

``ikev2_decryption_table`` (Preferences > Protocols > ISAKMP > IKEv2 Decryption
Table; the file of that name in a Wireshark profile) has one row per IKE SA::

    ISPI,RSPI,SK_ei,SK_er,"ENC NAME",SK_ai,SK_ar,"INTEG NAME"

hex without 0x; for AEAD ciphers SK_e includes the 4-byte salt and the
integrity algorithm is ``NONE [RFC4306]`` with empty SK_a.  The names are the
ones Wireshark 4.0 lists (read off libwireshark), kept in the algorithm registry
(``crypto/algorithms.py``, column ``wireshark_ikev2``).  Wireshark 4.0 has no
ChaCha20-Poly1305 and no AES-XCBC for IKEv2: rows for those use names of our
own (marked ``ipseclab-only``) that ipseclab reads and Wireshark rejects, and
:func:`wireshark_can_decrypt` says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..crypto import TransformType
from ..crypto.algorithms import names
from ..errors import KeyFileError

T = TypeVar("T")

# Wireshark name -> (ENCR id, key bits), and -> INTEG id: the registry's ``wireshark_ikev2`` column
IKEV2_ENCR_NAMES: dict[str, tuple[int, int]] = {
    name: (eid, bits or 0) for name, (eid, bits) in names("wireshark_ikev2", TransformType.ENCR).items()
}
IKEV2_INTEG_NAMES: dict[str, int] = {
    name: iid for name, (iid, _) in names("wireshark_ikev2", TransformType.INTEG).items()
}
_ENCR_BY_ID = {v: k for k, v in IKEV2_ENCR_NAMES.items()}
_MARK = "(ipseclab-only)"


def spelling(name: str) -> str:
    """The key under which an algorithm name is looked up: case, spacing and our ``(ipseclab-only)`` mark ignored.

    Wireshark lacks some algorithms, so their names are ours; a user writes them the obvious way
    (``CHACHA20-POLY1305 [RFC7634]``, with or without the mark, in any case) and means the same row.
    """
    return " ".join(name.replace(_MARK, " ").split()).lower()


def lookup_name(name: str, table: dict[str, T]) -> tuple[str, T] | None:
    """(the canonical name, its value) for a name as a user may spell it, None when no spelling matches."""
    if name in table:
        return name, table[name]
    key = spelling(name)
    return next(((n, v) for n, v in table.items() if spelling(n) == key), None)


def skip_or_raise(exc: KeyFileError, skipped: list[str] | None) -> None:
    """A row that cannot be used: raise, or with a ``skipped`` list note why (file and line) and go on.

    Wireshark reads the rest of a table when one row is bad, and so does ``ipseclab decrypt``: a
    user's table with one row for an algorithm we lack must still decrypt everything else.
    """
    if skipped is None:
        raise exc
    skipped.append(str(exc))
_INTEG_BY_ID = {v: k for k, v in IKEV2_INTEG_NAMES.items()}


@dataclass(frozen=True, slots=True)
class IkeSaKeyRow:
    """One ikev2_decryption_table row: what it takes to decrypt one IKE SA's SK payloads."""

    spi_i: bytes
    spi_r: bytes
    sk_ei: bytes
    sk_er: bytes
    encr_id: int
    encr_key_bits: int
    sk_ai: bytes
    sk_ar: bytes
    integ_id: int
    where: str = field(default="", compare=False)  # "file line N" when read from a file: for errors about the row

    @property
    def encr_name(self) -> str:
        try:
            return _ENCR_BY_ID[(self.encr_id, self.encr_key_bits)]
        except KeyError:
            raise KeyFileError(
                f"no Wireshark IKEv2 name for encryption {self.encr_id} with {self.encr_key_bits}-bit keys"
            ) from None

    @property
    def integ_name(self) -> str:
        try:
            return _INTEG_BY_ID[self.integ_id]
        except KeyError:
            raise KeyFileError(f"no Wireshark IKEv2 name for integrity algorithm {self.integ_id}") from None

    @property
    def wireshark_can_decrypt(self) -> bool:
        return "ipseclab-only" not in self.encr_name + self.integ_name

    def to_row(self) -> str:
        return ",".join([
            self.spi_i.hex(), self.spi_r.hex(), self.sk_ei.hex(), self.sk_er.hex(), f'"{self.encr_name}"',
            self.sk_ai.hex(), self.sk_ar.hex(), f'"{self.integ_name}"',
        ])


def _hex(field: str, what: str, line: int) -> bytes:
    try:
        return bytes.fromhex(field.strip().removeprefix("0x"))
    except ValueError:
        raise KeyFileError(f"line {line}: {what} is not hex: {field!r}") from None


def csv_rows(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a Wireshark key file, blank and ``#`` comment lines skipped.

    Both key-file formats are CSV; what the csv module refuses (a field over its 131,072-character
    limit, a NUL byte) becomes a KeyFileError naming the file and the line, like any other bad row.
    """
    reader = csv.reader(io.StringIO(text))
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise KeyFileError(f"{source} line {reader.line_num}: not a key-file row ({exc})") from None
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        yield reader.line_num, fields


def parse_ikev2_decryption_table(text: str, source: str = "<keys>",
                                 skipped: list[str] | None = None) -> list[IkeSaKeyRow]:
    """Parse the rows of an ikev2_decryption_table; KeyFileError names the line and field at fault.

    With a ``skipped`` list a bad row is noted there (file, line, why) and left out instead.
    Whether the keys fit the algorithms is checked where they are used (``analysis.keyrows.crypto_from_row``),
    with the row's ``where`` in the message: this module knows names and ids, not key sizes.
    """
    rows = []
    for n, fields in csv_rows(text, source):
        try:
            rows.append(_ikev2_row(fields, source, n))
        except KeyFileError as exc:
            skip_or_raise(exc, skipped)
    return rows


def _ikev2_row(fields: list[str], source: str, n: int) -> IkeSaKeyRow:
    if len(fields) != 8:
        raise KeyFileError(
            f"{source} line {n}: expected 8 fields (ISPI,RSPI,SK_ei,SK_er,\"ENC\",SK_ai,SK_ar,\"INTEG\"), "
            f"got {len(fields)}"
        )
    spi_i, spi_r = _hex(fields[0], "ISPI", n), _hex(fields[1], "RSPI", n)
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise KeyFileError(f"{source} line {n}: SPIs must be 8 bytes (16 hex digits)")
    encr = lookup_name(fields[4].strip(), IKEV2_ENCR_NAMES)
    integ = lookup_name(fields[7].strip(), IKEV2_INTEG_NAMES)
    if encr is None:
        raise KeyFileError(
            f"{source} line {n}: unknown encryption algorithm {fields[4].strip()!r} "
            f"(known: {', '.join(sorted(IKEV2_ENCR_NAMES))})"
        )
    if integ is None:
        raise KeyFileError(
            f"{source} line {n}: unknown integrity algorithm {fields[7].strip()!r} "
            f"(known: {', '.join(sorted(IKEV2_INTEG_NAMES))})"
        )
    (eid, bits), iid = encr[1], integ[1]
    return IkeSaKeyRow(spi_i, spi_r, _hex(fields[2], "SK_ei", n), _hex(fields[3], "SK_er", n), eid, bits,
                       _hex(fields[5], "SK_ai", n), _hex(fields[6], "SK_ar", n), iid, f"{source} line {n}")


def read_key_file(path: str | Path) -> str:
    """The text of a Wireshark key file; KeyFileError naming the file when it cannot be read.

    A UTF-8 byte order mark (Windows editors write one) is dropped, not read as part of the first field.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    return key_file_text(data, str(path))


def key_file_text(data: bytes, source: str) -> str:
    """The text of a key file's bytes: UTF-8 with an optional BOM; KeyFileError naming ``source`` otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KeyFileError(
            f"{source} is not a key file: byte {exc.start} is not UTF-8 text (a capture given as a key file?)"
        ) from None


def read_ikev2_decryption_table(path: str | Path, skipped: list[str] | None = None) -> list[IkeSaKeyRow]:
    """Read an ikev2_decryption_table file; KeyFileError for a missing or malformed file (or row, without
    ``skipped``: see :func:`parse_ikev2_decryption_table`)."""
    return parse_ikev2_decryption_table(read_key_file(path), str(path), skipped)


def write_ikev2_decryption_table(path: str | Path, rows: list[IkeSaKeyRow]) -> None:
    """Write rows in Wireshark's format (a profile's ``ikev2_decryption_table`` file)."""
    Path(path).write_text("".join(r.to_row() + "\n" for r in rows), encoding="utf-8")


def tshark_ikev2_options(rows: list[IkeSaKeyRow]) -> list[str]:
    """``-o uat:ikev2_decryption_table:...`` arguments for tshark, one per row Wireshark can use."""
    return [arg for r in rows if r.wireshark_can_decrypt for arg in ("-o", f"uat:ikev2_decryption_table:{r.to_row()}")]

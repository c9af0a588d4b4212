"""Wireshark key-table rows to and from ipseclab's SAs: the one place that builds either side.

``pcap/keyfiles.py`` and ``pcap/esp_keyfiles.py`` read and write the two tables' text (names and
ids only, so the pcap layer stays independent of the data plane).  This module joins them to the
codec and the data plane: a row from an SA or an engine event (what the endpoint and the tests
write for Wireshark), and an SA or SK crypto from a row (what ``decrypt`` and the interop check
read), each row checked once, its file and line in every complaint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..crypto import TransformType, get_encr, get_integ
from ..crypto.algorithms import algorithm
from ..errors import IpsecLabError, KeyFileError, UnsupportedTransformError
from ..esp import AhSA, EspSA
from ..packets.message import IkeSaCrypto, SkCrypto
from ..pcap.esp_keyfiles import ESP_ENCR_REFUSALS, EspSaRow, read_esp_sa
from ..pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table

if TYPE_CHECKING:  # a run of decrypt never derives keys: crypto.keys (and DH) stay unloaded
    from ..crypto.keys import IkeSaKeys

R = TypeVar("R")
REPLAY_WINDOW = 4096  # per SA when reading a capture: a packet seen twice within it is a replay


class _IkeSaEvent(Protocol):
    """What an IKE SA's keys event carries (``ike.events.IkeSaEstablished``; not imported: no ike/ here)."""

    @property
    def spi_i(self) -> bytes: ...
    @property
    def spi_r(self) -> bytes: ...
    @property
    def encr_id(self) -> int: ...
    @property
    def encr_key_bits(self) -> int: ...
    @property
    def integ_id(self) -> int | None: ...
    @property
    def keys(self) -> IkeSaKeys: ...


# --- rows from SAs -------------------------------------------------------------------------------------


def ike_sa_row(event: _IkeSaEvent) -> IkeSaKeyRow:
    """The ikev2_decryption_table row of an established IKE SA (the engine's ``IkeSaEstablished``)."""
    k = event.keys
    return IkeSaKeyRow(event.spi_i, event.spi_r, k.sk_ei, k.sk_er, event.encr_id, event.encr_key_bits,
                       k.sk_ai, k.sk_ar, event.integ_id or 0)


def esp_sa_row(sa: EspSA, *, src: str = "*", dst: str = "*", family: str | None = None) -> EspSaRow:
    """The Wireshark esp_sa row for an ipseclab SA (so tshark can check what ipseclab sent)."""
    fam = family or ("IPv6" if ":" in (sa.tunnel[0] if sa.tunnel else src) else "IPv4")
    integ = sa.integ.id if sa.integ is not None else 0
    return EspSaRow.from_ids(sa.spi, sa.encr.id, sa.key, integ, sa.integ_key, src=src, dst=dst, family=fam)


# --- SAs from rows -------------------------------------------------------------------------------------


def crypto_from_row(row: IkeSaKeyRow) -> IkeSaCrypto:
    """Both directions' SK crypto from one ikev2_decryption_table row.

    KeyFileError naming the row's file and line when its algorithms do not go together or a key
    has the wrong length: checked here, once per row, so a bad row never reaches the codec.
    """
    where = row.where or f"ikev2_decryption_table row {row.spi_i.hex()}_i {row.spi_r.hex()}_r"
    try:
        encr = get_encr(row.encr_id, row.encr_key_bits or None)
        integ = get_integ(row.integ_id) if row.integ_id else None
    except IpsecLabError as exc:
        raise KeyFileError(f"{where}: {exc}") from None
    if encr.aead and integ is not None:
        raise KeyFileError(f"{where}: {row.encr_name} is a combined-mode cipher: its integrity must be NONE [RFC4306]")
    if not encr.aead and integ is None:
        raise KeyFileError(f"{where}: {row.encr_name} needs an integrity algorithm; NONE [RFC4306] is for "
                           "AES-GCM and ChaCha20-Poly1305 rows")
    keys = [("SK_ei", row.sk_ei, encr.key_size, row.encr_name), ("SK_er", row.sk_er, encr.key_size, row.encr_name)]
    if integ is not None and integ.checked:  # an "ANY n-bits [No Checking]" row's keys are not used, as in Wireshark
        keys += [("SK_ai", row.sk_ai, integ.key_size, row.integ_name), ("SK_ar", row.sk_ar, integ.key_size,
                                                                         row.integ_name)]
    for name, key, size, alg_name in keys:
        if len(key) != size:
            raise KeyFileError(f"{where}: {name} is {len(key)} bytes; {alg_name} needs {size} "
                               f"({2 * size} hex digits)")
    if integ is not None and not integ.checked:
        return IkeSaCrypto(SkCrypto(encr, integ, row.sk_ei, b""), SkCrypto(encr, integ, row.sk_er, b""))
    return IkeSaCrypto(SkCrypto(encr, integ, row.sk_ei, row.sk_ai), SkCrypto(encr, integ, row.sk_er, row.sk_ar))


def checks_icv(row: EspSaRow) -> bool:
    """False for Wireshark's "ANY n bit [no checking]" rows: the ICV is skipped, so nothing is verified."""
    return not row.integ_id or get_integ(row.integ_id).checked


def esp_sa_from_row(row: EspSaRow, spi: int, esn: bool) -> EspSA:
    """A receiving EspSA for one SPI the row matches (transport mode: the capture shows the outer header)."""
    if row.encr_id is None or row.integ_id is None:
        raise UnsupportedTransformError(f"ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}")
    auth_key = row.auth_key if checks_icv(row) else b""  # an "ANY n bit" row's key is not used, as in Wireshark
    return EspSA(spi, row.encr_id, row.encr_key, integ=row.integ_id or None, integ_key=auth_key,
                 mode="transport", esn=esn, replay_window=REPLAY_WINDOW, check_padding=False)


def ah_sa_from_row(row: EspSaRow, spi: int, esn: bool) -> AhSA:
    """A receiving AhSA from a row's authentication key (users keep AH keys in esp_sa rows with NULL encryption)."""
    if not row.integ_id:
        raise IpsecLabError(f"{row.auth_name!r} cannot verify AH")
    # transport mode whatever the SA's: the ICV covers the same bytes, and the payload is shown as captured
    return AhSA(spi, row.integ_id, row.auth_key, mode="transport", esn=esn, replay_window=REPLAY_WINDOW)


def check_esp_row(row: EspSaRow) -> None:
    """KeyFileError naming the row's file and line unless ipseclab can decrypt with it (algorithms, key sizes)."""
    where = row.where or "esp_sa row"
    if row.encr_id is None or row.integ_id is None:
        why = ESP_ENCR_REFUSALS.get(row.encr_name, "")
        raise KeyFileError(f"{where}: ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}"
                           + (f" ({why})" if why else ""))
    alg = algorithm(TransformType.ENCR, row.encr_id)
    if alg is not None and alg.key_bits != (0,) and row.key_bits not in alg.key_bits:
        sizes = " or ".join(f"{(b // 8) + alg.salt}" for b in alg.key_bits)
        salt = f" (with its {alg.salt}-byte salt)" if alg.salt else ""
        raise KeyFileError(f"{where}: the encryption key is {len(row.encr_key)} bytes; {row.encr_name} takes "
                           f"{sizes}{salt}")
    try:
        esp_sa_from_row(row, row.spi or 1, False)
    except UnsupportedTransformError:
        raise KeyFileError(f"{where}: ipseclab cannot decrypt {row.encr_name!r} / {row.auth_name!r}") from None
    except IpsecLabError as exc:
        raise KeyFileError(f"{where}: {exc}") from None


# --- the tables as a user gives them ---------------------------------------------------------------------


def read_key_tables(ike_paths: list[str], esp_paths: list[str]) -> tuple[list[IkeSaKeyRow], list[EspSaRow], list[str]]:
    """The rows of every table that ipseclab can use, and one line (file, line, why) per row it cannot.

    As Wireshark does, a row that cannot be used is left out and the rest of its table is used. A table
    none of whose rows can be used is a KeyFileError (the first reason): a mistake to stop at.
    """
    ike: list[IkeSaKeyRow] = []
    esp: list[EspSaRow] = []
    notes: list[str] = []
    for path in ike_paths:
        skipped: list[str] = []
        ike += _usable(read_ikev2_decryption_table(path, skipped), crypto_from_row, skipped)
        notes += skipped
    for path in esp_paths:
        skipped = []
        esp += _usable(read_esp_sa(path, skipped), check_esp_row, skipped)
        notes += skipped
    return ike, esp, notes


def _usable(rows: list[R], check: Callable[[R], object], skipped: list[str]) -> list[R]:
    good = []
    for row in rows:
        try:
            check(row)
            good.append(row)
        except KeyFileError as exc:
            skipped.append(str(exc))
    skipped.sort(key=_line_number)  # rows refused when read and when checked, in the file's order
    if skipped and not good:
        more = len(skipped) - 1
        raise KeyFileError(skipped[0] + (f" (and {more} more unusable row{'s' * (more > 1)})" if more else ""))
    return good


def _line_number(note: str) -> int:
    found = re.search(r" line (\d+): ", note)
    return int(found.group(1)) if found else 0

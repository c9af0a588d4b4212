"""Kernel SAs (``ip xfrm state``) to Wireshark ``esp_sa`` rows, so every run's ESP opens decrypted.

Rows use ``*`` for the addresses: the SPI alone identifies the SA, and behind the NAT router
the same SA is seen with different addresses on each link.  AH SAs get no row (there is
nothing to decrypt).  SAs Wireshark 4.0 cannot decrypt (ChaCha20-Poly1305, AES-GMAC) get rows
with ipseclab-only names, which ``ipseclab decrypt`` reads and the Wireshark checks leave out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import IpsecLabError
from ..esp.xfrm_names import esp_algorithms
from ..pcap.esp_keyfiles import EspSaRow, write_esp_sa
from .keys import XfrmState


def esp_sa_row(state: XfrmState) -> EspSaRow | None:
    """The ``esp_sa`` row for a kernel ESP SA, or None (AH, or an algorithm ipseclab does not know)."""
    if state.proto != "esp":
        return None
    try:
        algs = esp_algorithms(aead=state.aead, enc=state.enc, auth=state.auth)
        return EspSaRow.from_ids(state.spi, algs.encr.id, algs.encr_key, algs.integ.id if algs.integ else 0,
                                 algs.integ_key, family="IPv6" if ":" in state.src else "IPv4")
    except IpsecLabError:
        return None


def write_run_esp_sa(path: Path, states: list[XfrmState], own: Sequence[EspSaRow] = ()) -> list[EspSaRow]:
    """Write one row per distinct SPI to ``path`` (kernel SAs, then rows peers wrote themselves); returns them.

    ``own`` are rows of a peer without kernel SAs (the ipseclab endpoint's own ``esp_sa``): they
    get ``*`` addresses too, since the endpoint names the addresses it sees, not those of every link.
    """
    rows: dict[int, EspSaRow] = {}
    for s in states:
        row = esp_sa_row(s)
        if row is not None and s.spi not in rows:
            rows[s.spi] = row
    for r in own:
        if r.spi is not None and r.spi not in rows:
            rows[r.spi] = replace(r, src="*", dst="*")
    write_esp_sa(path, list(rows.values()))
    return list(rows.values())

"""ESP SAs from the engine's ChildSaEstablished event: the one place that turns negotiated keys into EspSAs."""

from __future__ import annotations

from ..esp import EspSA
from ..ike.events import ChildSaEstablished


def esp_sas(child: ChildSaEstablished, local: str, remote: str, *, replay_window: int = 64) -> tuple[EspSA, EspSA]:
    """(outbound, inbound) SAs; tunnel mode puts ``local``/``remote`` in the outer header."""
    kw: dict[str, object] = dict(mode=child.mode, esn=child.esn, key_bits=child.encr_key_bits or None,
                                 replay_window=replay_window)
    if child.encr_id is None:
        raise ValueError("AH Child SAs are not built by the endpoint yet")
    out = EspSA(child.spi_out, child.encr_id, child.encr_key_out, integ=child.integ_id,
                integ_key=child.integ_key_out, tunnel=(local, remote) if child.mode == "tunnel" else None,
                **kw)  # type: ignore[arg-type]
    inn = EspSA(child.spi_in, child.encr_id, child.encr_key_in, integ=child.integ_id,
                integ_key=child.integ_key_in, tunnel=(remote, local) if child.mode == "tunnel" else None,
                **kw)  # type: ignore[arg-type]
    return out, inn

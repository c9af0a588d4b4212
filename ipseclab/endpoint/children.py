"""ESP SAs from the engine's ChildSaEstablished event: the one place that turns negotiated keys into EspSAs."""

from __future__ import annotations

from ..esp import AhSA, EspSA
from ..ike.events import ChildSaEstablished
from ..packets.enums import ProtocolId


def esp_sas(child: ChildSaEstablished, local: str, remote: str, *,
            replay_window: int = 64, tfc_padding: int = 0) -> tuple[EspSA | AhSA, EspSA | AhSA]:
    """(outbound, inbound) SAs, ESP or AH as negotiated; tunnel mode puts ``local``/``remote`` in the outer header.

    ``tfc_padding``: the outbound ESP SA pads each inner packet to that many bytes (RFC 4303 2.7; tunnel mode
    only, where the inner IP header says where the padding starts)."""
    tun_out = (local, remote) if child.mode == "tunnel" else None
    tun_in = (remote, local) if child.mode == "tunnel" else None
    if child.protocol == ProtocolId.AH:
        assert child.integ_id is not None
        # RFC 4302 2.2: AH is 32-bit aligned in IPv4 (strongSwan and Libreswan set the kernel's align4)
        return (AhSA(child.spi_out, child.integ_id, child.integ_key_out, mode=child.mode, tunnel=tun_out,
                     esn=child.esn, replay_window=replay_window, align4=True),
                AhSA(child.spi_in, child.integ_id, child.integ_key_in, mode=child.mode, tunnel=tun_in,
                     esn=child.esn, replay_window=replay_window, align4=True))
    kw: dict[str, object] = dict(mode=child.mode, esn=child.esn, key_bits=child.encr_key_bits or None,
                                 replay_window=replay_window)
    assert child.encr_id is not None
    out = EspSA(child.spi_out, child.encr_id, child.encr_key_out, integ=child.integ_id,
                integ_key=child.integ_key_out, tunnel=tun_out, tfc_pad_to=tfc_padding if tun_out else 0,
                **kw)  # type: ignore[arg-type]
    inn = EspSA(child.spi_in, child.encr_id, child.encr_key_in, integ=child.integ_id,
                integ_key=child.integ_key_in, tunnel=tun_in,
                **kw)  # type: ignore[arg-type]
    return out, inn

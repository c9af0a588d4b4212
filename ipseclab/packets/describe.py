"""Payloads as plain dicts (for ``--json`` output and logs), with IANA names instead of bare numbers."""

from __future__ import annotations

from typing import Any

from ..crypto.registry import AuthMethod, TransformType, transform_name
from .enums import CertEncoding, CfgType, IdType, NotifyType, PayloadType, ProtocolId, enum_name
from .message import EncryptedFragment, EncryptedPayload, Message
from .payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    TsPayload,
    UnknownPayload,
    payload_type_of,
)


def payload_dict(p: Payload) -> dict[str, Any]:
    """One payload as a dict: ``type`` plus its fields, bytes as hex."""
    out: dict[str, Any] = {"type": enum_name(PayloadType, payload_type_of(p))}
    if getattr(p, "critical", False):
        out["critical"] = True
    if isinstance(p, SaPayload):
        out["proposals"] = [
            {
                "num": pr.num,
                "protocol": enum_name(ProtocolId, pr.protocol),
                "spi": pr.spi.hex(),
                "transforms": [
                    transform_name(t.type, t.id) + (f"_{t.key_length}" if t.key_length else "")
                    for t in pr.transforms
                ],
            }
            for pr in p.proposals
        ]
    elif isinstance(p, KePayload):
        out.update(group=transform_name(TransformType.KE, p.group), data=p.data.hex())
    elif isinstance(p, IdPayload):
        out.update(id_type=enum_name(IdType, p.id_type), id=p.text())
    elif isinstance(p, AuthPayload):
        out.update(method=enum_name(AuthMethod, p.method), data=p.data.hex())
    elif isinstance(p, NoncePayload):
        out["data"] = p.data.hex()
    elif isinstance(p, NotifyPayload):
        out.update(notify=enum_name(NotifyType, p.notify_type), protocol=enum_name(ProtocolId, p.protocol),
                   spi=p.spi.hex(), data=p.data.hex())
    elif isinstance(p, DeletePayload):
        out.update(protocol=enum_name(ProtocolId, p.protocol), spis=[s.hex() for s in p.spis])
    elif isinstance(p, TsPayload):
        out["selectors"] = [str(ts) for ts in p.selectors]
    elif isinstance(p, CpPayload):
        out.update(cfg_type=enum_name(CfgType, p.cfg_type), attributes=[[t, v.hex()] for t, v in p.attributes])
    elif isinstance(p, CertPayload | CertReqPayload):
        out.update(encoding=enum_name(CertEncoding, p.encoding), data=p.data.hex())
    elif isinstance(p, EncryptedPayload):
        if p.payloads is None:
            out["encrypted"] = True
        else:
            out["payloads"] = [payload_dict(q) for q in p.payloads]
    elif isinstance(p, EncryptedFragment):
        out.update(number=p.number, total=p.total, decrypted=p.plaintext is not None)
    elif isinstance(p, UnknownPayload):
        out["data"] = p.data.hex()
    else:
        data = getattr(p, "data", None)
        if isinstance(data, bytes):
            out["data"] = data.hex()
    return out


def message_dict(msg: Message) -> dict[str, Any]:
    """A message header and its payload tree as a dict."""
    from .enums import ExchangeType

    return {
        "spi_i": msg.spi_i.hex(),
        "spi_r": msg.spi_r.hex(),
        "exchange": enum_name(ExchangeType, msg.exchange),
        "message_id": msg.message_id,
        "response": msg.response,
        "sender": "initiator" if msg.initiator else "responder",
        "payloads": [payload_dict(p) for p in msg.payloads],
    }

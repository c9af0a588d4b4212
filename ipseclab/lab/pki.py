"""A certificate authority per run: both peers' certificates and the EAP secret, made with ``crypto.ca``.

Each run makes its own root CA (and, for a chain case, an intermediate CA under it), so no key outlives the run
and nothing is fetched or read from the host.  The end-entity certificates name the peers' IKE identities in
their subjectAltName (RFC 4945 3.1), which both daemons check against the ID payload.  An ``expired`` peer
gets a certificate whose validity ended yesterday: the other side must refuse it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..crypto.ca import Ca, pem
from .peerconfig import PeerCredentials

EAP_PASSWORD = "ipseclab-interop-eap"


@dataclass(frozen=True, slots=True)
class RunPki:
    """What one run's CA issued: each side's credentials."""

    left: PeerCredentials
    right: PeerCredentials
    ca_pem: bytes


def make_pki(left_id: str, right_id: str, *, key_type: str = "ecdsa-p256", chain: bool = False,
             expired: str = "") -> RunPki:
    """Certificates for ``left_id`` and ``right_id`` from a fresh root (and intermediate when ``chain``).

    ``expired`` names the side ("left" or "right") whose certificate has expired.  The CA itself is ECDSA
    P-256 unless ``key_type`` is RSA (strongSwan and the Web PKI profile both take either).
    """
    root = Ca.create("ipseclab run CA", key_type="rsa-2048" if key_type.startswith("rsa") else "ecdsa-p256")
    issuer = root.intermediate("ipseclab run intermediate CA") if chain else root
    inter = (pem(issuer.certificate),) if chain else ()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    out = []
    for side, ident in (("left", left_id), ("right", right_id)):
        if side == expired:
            cert, key = issuer.issue(ident, key_type=key_type, not_before=past, days=29)
        else:
            cert, key = issuer.issue(ident, key_type=key_type)
        out.append(PeerCredentials(pem(cert), pem(key), inter, (pem(root.certificate),),
                                   eap_identity=left_id, eap_password=EAP_PASSWORD))
    return RunPki(out[0], out[1], pem(root.certificate))

"""The endpoint spec's authenticators as JSON: each side's ``local_auth`` / ``remote_auth`` (``ike.auth``).

Certificates and keys travel as PEM text inside the spec (lab material, like the PSK next to them), so a spec
is one self-contained file::

    {"kind": "psk", "secret": "..."}
    {"kind": "pubkey", "certificate": PEM, "private_key": PEM, "intermediates": [PEM], "method": "signature"}
    {"kind": "cas", "cas": [PEM]}
    {"kind": "eap-client", "password": "...", "identity": null, "methods": ["md5"], "eap_only": false}
    {"kind": "eap-server", "users": [["name", "password"]], "method": "md5", "eap_only": true}
"""

from __future__ import annotations

from typing import Any

from ..crypto.x509 import load_certificate, load_private_key, pem
from ..errors import ConfigError
from ..ike.auth import EapClient, EapServer, LocalAuth, Psk, PubkeyAuth, RemoteAuth, TrustedCas


def _pem(text: str) -> bytes:
    return text.encode()


def from_json(raw: dict[str, Any] | None) -> LocalAuth | RemoteAuth | None:
    """An authenticator from its JSON object (None stays None: the spec's PSK stands in)."""
    if raw is None:
        return None
    kind = raw.get("kind")
    if kind == "psk":
        return Psk(str(raw["secret"]).encode())
    if kind == "pubkey":
        return PubkeyAuth(load_certificate(_pem(raw["certificate"])), load_private_key(_pem(raw["private_key"])),
                          tuple(load_certificate(_pem(c)) for c in raw.get("intermediates", ())),
                          method=raw.get("method", "signature"), scheme=raw.get("scheme"))
    if kind == "cas":
        return TrustedCas(tuple(load_certificate(_pem(c)) for c in raw["cas"]))
    if kind == "eap-client":
        return EapClient(raw["password"], raw.get("identity"), tuple(raw.get("methods", ("mschapv2", "md5"))),
                         bool(raw.get("eap_only", False)))
    if kind == "eap-server":
        return EapServer(tuple((str(u), str(p)) for u, p in raw["users"]), raw.get("method", "mschapv2"),
                         bool(raw.get("eap_only", True)))
    raise ConfigError(f"authenticator kind {kind!r}: use psk, pubkey, cas, eap-client or eap-server")


def to_json(auth: LocalAuth | RemoteAuth | None) -> dict[str, Any] | None:
    """The JSON object ``from_json`` reads back."""
    if auth is None:
        return None
    if isinstance(auth, Psk):
        return {"kind": "psk", "secret": auth.secret.decode()}
    if isinstance(auth, PubkeyAuth):
        return {"kind": "pubkey", "certificate": pem(auth.certificate).decode(),
                "private_key": pem(auth.private_key).decode(),
                "intermediates": [pem(c).decode() for c in auth.intermediates], "method": auth.method,
                "scheme": auth.scheme}
    if isinstance(auth, TrustedCas):
        return {"kind": "cas", "cas": [pem(c).decode() for c in auth.cas]}
    if isinstance(auth, EapClient):
        return {"kind": "eap-client", "password": auth.password, "identity": auth.identity,
                "methods": list(auth.methods), "eap_only": auth.eap_only}
    return {"kind": "eap-server", "users": [list(u) for u in auth.users], "method": auth.method,
            "eap_only": auth.eap_only}

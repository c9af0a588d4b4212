"""ipseclab's own endpoint as a lab peer: its driver turns a :class:`PeerConfig` into the endpoint's JSON spec.

The endpoint needs no kernel IPsec and no image: it runs as a process in the side's namespace
(``runtimes/process.py``), driven over its stdin/stdout line protocol.  ``lab/`` does not import
the engine: the spec is plain JSON.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ...crypto.x509 import validity_problem
from ...errors import ConfigError, LabError
from ..keys import StrongswanIkeKeys
from ..peerconfig import PeerConfig
from ..runtimes.process import SPEC, EndpointHost
from ..topology import HostAddressing
from .contract import write_private


def endpoint_spec(cfg: PeerConfig, directory: Path) -> dict[str, Any]:
    """The endpoint's JSON spec for a PeerConfig (``endpoint/runner.py`` reads it; so does ``ipseclab endpoint``)."""
    local = str(cfg.local_address)
    remote = str(cfg.remote_address) if cfg.remote_address is not None else None
    host = 32 if cfg.local_address.version == 4 else 128
    psk = cfg.psk if isinstance(cfg.psk, str) else cfg.psk.decode()
    esn = "-esn" if cfg.esn else ""
    ike = {
        "local_id": str(cfg.local_id or local),
        "remote_id": str(cfg.remote_id or remote),  # PeerConfig requires remote_id without remote_address
        "psk": psk,
        "ike_proposals": list(cfg.ike_proposals),
        "esp_proposals": [p + esn for p in cfg.esp_proposals],
        "ah_proposals": [p + esn for p in cfg.ah_proposals],
        "protocol": cfg.protocol,
        "local_ts": [str(n) for n in cfg.local_ts] or [f"{local}/{host}"],
        "remote_ts": [str(n) for n in cfg.remote_ts] or ([f"{remote}/{host}"] if remote
                                                         else ["0.0.0.0/0" if host == 32 else "::/0"]),
        "mode": cfg.mode,
        "local_endpoint": [local, 500],
        "remote_endpoint": [remote, 500] if remote else None,
        "fragmentation": cfg.fragmentation != "no",
        "dpd_delay": cfg.dpd_delay or None,
        "local_auth": _auth_json(cfg, local=True),
        "remote_auth": _auth_json(cfg, local=False),
    }
    return {"ike": ike, "local": local, "remote": remote, "initiator": cfg.role == "initiator",
            "out_dir": str(directory), "encap": cfg.encap, "replay_window": cfg.replay_window,
            "tfc_padding": cfg.tfc_padding}


class IpseclabDriver:
    """ipseclab's own endpoint as a peer (see the module docstring)."""

    impl = "ipseclab"
    image: str | None = None
    placement = "process"
    gives_ike_keys = True  # the endpoint writes its own ikev2_decryption_table
    probe_refusal = ""  # its status answer (each Child SA's facts and counters) and its esp_sa key file
    daemon: str | None = None  # "kill" ends the endpoint process itself
    # no rekey or additional-Child-SA command in its line protocol yet; shell commands run in its namespace,
    # whose traffic its TUN device carries (EndpointHost.exec)
    actions = frozenset({"kill", "shell"})
    # its table gets each IKE SA's row once IKE_SA_INIT gave the keys (IkeSaKeysDerived), so also a refused one's
    # IkeConfig checks its own certificate when the connection is made (crypto.x509.check_local)
    expired_cert_refusal = "the ipseclab endpoint refuses an expired certificate of its own before anything starts"

    def check_topology(self, kind: str) -> None:
        return None  # direct, and NAT (RFC 7296 2.23 detection, IKE and ESP on UDP 4500)

    # AH and transport mode over IPv6 transit, and forced UDP encapsulation (``encap``: its NAT detection
    # hash names a port it does not use, as strongSwan's encap=yes does) are all within the endpoint

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        why = []
        lifecycle = cfg.lifecycle_settings()
        defaults = inspect.signature(PeerConfig.__init__).parameters
        lifecycle += [name for name in ("ike_lifetime", "ike_rekey_margin", "child_lifetime", "child_rekey_margin")
                      if getattr(cfg, name) != defaults[name].default]
        if lifecycle:
            why.append(f"lifecycle settings ({', '.join(lifecycle)}), which the driver does not pass to the engine")
        if why:
            raise ConfigError(f"the ipseclab endpoint does not do {', '.join(why)} yet")
        expired = validity_problem(cfg.credentials.certificate) if cfg.auth == "pubkey" and cfg.credentials else ""
        if expired:
            raise ConfigError(f"{expired}: {self.expired_cert_refusal}")

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        self.check_supported(cfg)
        # it holds the PSK and, with certificates, the private key
        write_private(directory / SPEC, json.dumps(endpoint_spec(cfg, directory), indent=2) + "\n")

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return ""

    def initiate(self, host: Any, cfg: PeerConfig, timeout: float) -> str:
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        host.command({"cmd": "initiate"})
        event = host.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed"), timeout)
        if event["type"] != "ChildSaEstablished":
            raise LabError(f"the ipseclab endpoint could not establish the SA: {event.get('reason')}",
                           output=json.dumps(event), hint=f"see {host.dir}/events.jsonl")
        return (f"ipseclab: CHILD_SA {event.get('mode')} spi in {event.get('spi_in', 0):#010x} "
                f"out {event.get('spi_out', 0):#010x} established (events in {host.dir}/events.jsonl)")

    def counters(self, host: Any) -> dict[str, Any]:
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        answer = host.command({"cmd": "status"})
        return {"source": "ipseclab", **{k: v for k, v in answer.items() if k not in ("kind", "cmd")}}

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # the engine's Child SA is in the data plane before the IKE_AUTH response goes out

    def rekey(self, host: Any, cfg: PeerConfig, what: str, timeout: float) -> str:
        raise LabError("the ipseclab endpoint's line protocol has no rekey command yet (actions: kill)")

    def initiate_child(self, host: Any, cfg: PeerConfig, name: str, timeout: float) -> str:
        raise LabError("the ipseclab endpoint's line protocol has no command for an additional Child SA yet")

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # the endpoint writes its own ikev2_decryption_table (see Lab._collect_keys)


def _auth_json(cfg: PeerConfig, *, local: bool) -> dict[str, Any] | None:
    """One side's authenticator in the endpoint spec's JSON (``endpoint/auth_spec.py``); None: the PSK."""
    kind = cfg.auth if local else cfg.remote_auth
    creds = cfg.credentials
    if kind == "psk" or creds is None:
        return None
    if kind == "pubkey" and local:
        return {"kind": "pubkey", "certificate": creds.certificate.decode(), "private_key": creds.private_key.decode(),
                "intermediates": [c.decode() for c in creds.intermediates]}
    if kind == "pubkey":
        return {"kind": "cas", "cas": [c.decode() for c in creds.cas]}
    method = kind.removeprefix("eap-")
    if local:
        return {"kind": "eap-client", "password": creds.eap_password, "identity": creds.eap_identity or None,
                "methods": [method]}
    return {"kind": "eap-server", "users": [[creds.eap_identity, creds.eap_password]], "method": method,
            "eap_only": False}

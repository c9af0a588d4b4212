"""ipseclab's own endpoint as a lab peer: its driver turns a :class:`PeerConfig` into the endpoint's JSON spec.

The endpoint needs no kernel IPsec and no image: it runs as a process in the side's namespace
(``runtimes/process.py``), driven over its stdin/stdout line protocol.  ``lab/`` does not import
the engine: the spec is plain JSON.
"""

from __future__ import annotations

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
        "local_auth": _auth_json(cfg, local=True),
        "remote_auth": _auth_json(cfg, local=False),
        **lifecycle_json(cfg),
    }
    children = [{"name": f"{cfg.name}-{i + 2}", "local_ts": [str(local)], "remote_ts": [str(remote)]}
                for i, (local, remote) in enumerate(cfg.extra_children)]
    return {"ike": ike, "local": local, "remote": remote, "initiator": cfg.role == "initiator",
            "out_dir": str(directory), "encap": cfg.encap, "replay_window": cfg.replay_window,
            "tfc_padding": cfg.tfc_padding, "children": children, "dpd_action": cfg.dpd_action}


def lifecycle_json(cfg: PeerConfig) -> dict[str, Any]:
    """The engine's lifetimes, volume limits, DPD and retransmission settings (``ike.config.IkeConfig``) for a
    PeerConfig's: a rekey at lifetime - margin (none with ``rekey=False``: the SA is only answered, and expires
    at its lifetime), strongSwan's shape; PeerConfig's retransmissions double, ``retransmit_tries`` after the
    first send."""
    out: dict[str, Any] = {
        "ike_rekey_time": cfg.ike_lifetime - cfg.ike_rekey_margin if cfg.rekey else None,
        "ike_life_time": cfg.ike_lifetime,
        "child_rekey_time": cfg.child_lifetime - cfg.child_rekey_margin if cfg.rekey else None,
        "child_life_time": cfg.child_lifetime,
        "rekey_jitter": cfg.rekey_jitter,
        "child_rekey_bytes": cfg.child_rekey_bytes or None,
        "child_life_bytes": cfg.child_life_bytes or None,
        "dpd_delay": cfg.dpd_delay or None,
    }
    if cfg.retransmit_timeout is not None:
        out["retransmit_timeout"] = cfg.retransmit_timeout
        out["retransmit_base"] = 2.0
    if cfg.retransmit_tries is not None:
        out["retransmit_tries"] = cfg.retransmit_tries + 1
    return out


class IpseclabDriver:
    """ipseclab's own endpoint as a peer (see the module docstring)."""

    impl = "ipseclab"
    image: str | None = None
    placement = "process"
    gives_ike_keys = True  # the endpoint writes its own ikev2_decryption_table
    probe_refusal = ""  # its status answer (each Child SA's facts and counters) and its esp_sa key file
    daemon: str | None = None  # "kill" ends the endpoint process itself
    # rekey, child: its line protocol's commands; shell commands run in its namespace, whose traffic its TUN
    # device carries (EndpointHost.exec)
    actions = frozenset({"rekey", "child", "kill", "revive", "shell"})
    # its table gets each IKE SA's row once IKE_SA_INIT gave the keys (IkeSaKeysDerived), so also a refused one's
    # IkeConfig checks its own certificate when the connection is made (crypto.x509.check_local)
    expired_cert_refusal = "the ipseclab endpoint refuses an expired certificate of its own before anything starts"

    def check_topology(self, kind: str) -> None:
        return None  # direct, and NAT (RFC 7296 2.23 detection, IKE and ESP on UDP 4500)

    # AH and transport mode over IPv6 transit, and forced UDP encapsulation (``encap``: its NAT detection
    # hash names a port it does not use, as strongSwan's encap=yes does) are all within the endpoint

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        why = []
        if cfg.reauth:
            why.append("reauthentication (reauth): the engine has it (ike/reauth.py, make-before-break) but the "
                       "endpoint's loop drives one IkeConnection as the initiator, not a Reauthentication")
        if cfg.dpd_action == "hold":
            why.append("dpd_action='hold': a dead peer's SAs are cleared (the engine's IkeSaFailed) or, with "
                       "'restart', a new IKE SA started; there is no trap policy to hold traffic on")
        if why:
            raise ConfigError(f"the ipseclab endpoint does not do {', '.join(why)} yet")
        expired = validity_problem(cfg.credentials.certificate) if cfg.auth == "pubkey" and cfg.credentials else ""
        if expired:
            raise ConfigError(f"{expired}: {self.expired_cert_refusal}")

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        self.check_supported(cfg)
        # it holds the PSK and, with certificates, the private key
        write_private(directory / SPEC, json.dumps(endpoint_spec(cfg, directory), indent=2) + "\n")

    def revive_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return ""  # the endpoint is the process itself: EndpointHost.revive starts a new one

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        # each additional Child SA's own address on lo (the endpoint routes the remote subnet into its TUN device)
        return "".join(f"ip addr add {next(local.hosts())}/32 dev lo\n" for local, _ in cfg.extra_children)

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

    def initiate_refused(self, host: Any, cfg: PeerConfig, timeout: float) -> str:
        """As ``initiate``, but the endpoint's report of an error notify in the IKE_SA_INIT response also ends
        the wait: the engine drops it, unauthenticated, and keeps waiting (RFC 7296 2.21.1); the lab only
        observes that it came (LabError quoting it)."""
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        since = len(host.events)
        host.command({"cmd": "initiate"})
        event = host.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed", "DatagramDropped"), timeout,
                                since=since, where=lambda e: e["type"] != "DatagramDropped" or bool(e.get("notify")))
        if event["type"] != "ChildSaEstablished":
            raise LabError(f"the ipseclab endpoint could not establish the SA: {event.get('reason')}",
                           output=json.dumps(event), hint=f"see {host.dir}/events.jsonl")
        return f"ipseclab: CHILD_SA spi in {event.get('spi_in', 0):#010x} established although it was to be refused"

    def counters(self, host: Any, snapshot: str | None = None) -> dict[str, Any]:
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        answer = host.command({"cmd": "status"})
        return {"source": "ipseclab", **{k: v for k, v in answer.items() if k not in ("kind", "cmd")}}

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # the engine's Child SA is in the data plane before the IKE_AUTH response goes out

    def rekey(self, host: Any, cfg: PeerConfig, what: str, timeout: float) -> str:
        """Rekey the first Child SA or the IKE SA now; returns once the engine says it is done (or refused)."""
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        since = len(host.events)
        answer = host.command({"cmd": "rekey", "what": what})
        if what == "ike":
            event = host.wait_event(("IkeSaRekeyed", "IkeSaRekeyFailed", "IkeSaFailed"), timeout, since=since)
            if event["type"] != "IkeSaRekeyed":
                raise LabError(f"the ipseclab endpoint's IKE rekey failed: {event.get('reason')}")
            return f"ipseclab: IKE SA rekeyed, now {event.get('spi_i')}/{event.get('spi_r')}"
        old, new = answer.get("old_spi_in"), answer.get("spi_in")
        event = host.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed"), timeout, since=since,
                                where=lambda e: e["type"] != "ChildSaEstablished" or e.get("spi_in") == new)
        if event["type"] != "ChildSaEstablished":
            raise LabError(f"the ipseclab endpoint's Child SA rekey failed: {event.get('reason')}")
        return f"ipseclab: CHILD_SA {old:#010x} rekeyed, new spi in {event.get('spi_in', 0):#010x}"

    def initiate_child(self, host: Any, cfg: PeerConfig, name: str, timeout: float) -> str:
        """Create the additional Child SA ``name`` (``<conn>-2``, ...: the spec's ``children``)."""
        if not isinstance(host, EndpointHost):
            raise LabError("the ipseclab driver drives an EndpointHost")
        since = len(host.events)
        spi = host.command({"cmd": "child", "name": name}).get("spi_in")
        event = host.wait_event(("ChildSaEstablished", "ChildSaFailed", "IkeSaFailed"), timeout, since=since,
                                where=lambda e: e["type"] != "ChildSaEstablished" or e.get("spi_in") == spi)
        if event["type"] != "ChildSaEstablished":
            raise LabError(f"the ipseclab endpoint could not create the Child SA {name}: {event.get('reason')}")
        return f"ipseclab: CHILD_SA {name} spi in {spi:#010x} out {event.get('spi_out', 0):#010x} established"

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

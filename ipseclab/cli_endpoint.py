"""``ipseclab endpoint --config FILE``: ipseclab's own IKEv2/IPsec endpoint in the current network namespace.

The file is the lab's :class:`~ipseclab.lab.peerconfig.PeerConfig` in TOML or JSON; the lab's driver turns it
into the endpoint's spec (one translation for both).  The endpoint makes a TUN device, routes the negotiated
selectors into it, initiates when ``role`` is ``initiator``, prints each event as a JSON line, takes the same
JSON commands on stdin as under the lab (``status``, ``close``, ...), and on Ctrl-C deletes its SAs
(an INFORMATIONAL Delete) before it leaves.  Needs root (raw sockets, the TUN device, routing rules).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import ConfigError


def _cmd_endpoint(args: argparse.Namespace) -> int:
    from .endpoint.runner import EndpointSpec, serve
    from .lab.impls.ipseclab import IpseclabDriver, endpoint_spec
    from .lab.peerconfig import load_peer_config

    cfg = load_peer_config(Path(args.config))
    IpseclabDriver().check_supported(cfg)  # what the endpoint cannot do (reauth, ...) is one line, not ignored
    if os.geteuid() != 0:
        raise ConfigError("the endpoint needs root (raw sockets, a TUN device, routing rules): run it with sudo")
    out = Path(args.out or f"ipseclab-endpoint-{cfg.name}").resolve()
    raw = endpoint_spec(cfg, out)
    raw["tun"] = args.tun
    spec = EndpointSpec.from_json(json.dumps(raw))
    print(f"ipseclab endpoint {cfg.name}: {cfg.role} at {spec.local}, TUN device {spec.tun}, keys and events in "
          f"{out}; Ctrl-C deletes the SAs and exits", file=sys.stderr)
    return serve(spec, sys.stdin, initiate=cfg.role == "initiator", exit_on_eof=False)


def add_endpoint_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("endpoint", help="run ipseclab's own IKEv2/IPsec endpoint here, from a PeerConfig file (root)")
    p.add_argument("--config", required=True, metavar="FILE", help="a PeerConfig as TOML (.toml) or JSON")
    p.add_argument("--out", metavar="DIR", help="where keys (Wireshark's files), events and counters go "
                                                "(default: ./ipseclab-endpoint-NAME)")
    p.add_argument("--tun", default="ipsec0", help="the TUN device's name (default: ipsec0)")
    p.set_defaults(func=_cmd_endpoint)

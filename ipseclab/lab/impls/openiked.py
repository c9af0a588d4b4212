"""OpenIKED 7.2 as a lab peer: its renderer and its driver (iked with PF_KEY).  Image: ``containers/openiked/``.

The renderer turns a :class:`PeerConfig` into ``iked.conf`` (one ``ikev2`` policy): pure
functions, text in and out.  What the translation relies on (iked.conf(5) of 7.2):

* One policy: ``ikev2 "NAME" active|passive [transport] esp|ah from A to B local L peer P
  ikesa enc E auth A prf P group G childsa enc E auth A [group G] [esn|noesn] srcid I dstid J
  ikelifetime T lifetime T psk "..."``; ``active`` initiates as soon as iked starts, so the
  harness's initiator uses it and its "initiate" is waiting for the SA.
* Names: ``aes-128``/``aes-192``/``aes-256`` (CBC), ``aes-128-gcm``/``aes-256-gcm`` (and
  ``aes-192-gcm`` for ESP, ``-gcm-12`` for IKE), ``chacha20-poly1305``, ``aes-N-gmac`` and
  ``null`` for ESP only, ``3des``; ``hmac-md5``, ``hmac-sha1``, ``hmac-sha2-256/384/512`` for
  auth and prf; groups by name (``modp2048``, ``ecp256``, ``curve25519``, ...).
* A ``group`` in ``childsa`` is only used for PFS in later CREATE_CHILD_SA exchanges.
* No AES-XCBC/CMAC; one PSK per policy.
* Child SAs go to the kernel through PF_KEY, and 7.2's Linux PF_KEY mapping is narrow (seen in
  this lab): an HMAC-SHA2 Child SA fails to install ("pfkey_sa: unsupported integrity algorithm
  HMAC_SHA2_256_128"), and AES-GCM/ChaCha20 are left out of its Child SA proposal altogether (the
  peer sees an empty proposal).  So Child SAs are AES-CBC or 3DES with HMAC-SHA1-96 or HMAC-MD5-96;
  anything else is refused here with that reason.

OpenIKED's algorithm names, and which transforms its PF_KEY path installs, are its columns of
the algorithm registry (``crypto/algorithms.py``).
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...crypto.algorithms import OPENIKED_PFKEY_REFUSAL, algorithm, name_of
from ...crypto.proposals import TransformSpec, parse_proposal
from ...crypto.registry import EncrId, IntegId, KeId, PrfId, TransformType
from ...errors import ConfigError, LabError
from ..keys import StrongswanIkeKeys
from ..peerconfig import PeerConfig, psk_text
from ..topology import HostAddressing
from .contract import WAIT_FOR, kernel_counters, write_private

if TYPE_CHECKING:
    from ..runtimes.uml import UmlHost

IMPL = "openiked"


def refuse(peer: PeerConfig, setting: str, problem: str) -> ConfigError:
    return ConfigError(f"{IMPL}: peer {peer.name!r}: {setting}: {problem}")


def _name(t: TransformSpec, child: bool) -> str:
    """OpenIKED's name for a transform in a Child SA (``childsa``) or IKE SA (``ikesa``), '' for none."""
    return name_of("openiked_esp" if child else "openiked_ike", t.type, t.id, t.key_bits)


# transform type -> (iked.conf keyword, what the error calls it, IANA enum)
_KEYWORD: dict[int, tuple[str, str, type[IntEnum]]] = {
    TransformType.INTEG: ("auth", "integrity", IntegId), TransformType.PRF: ("prf", "PRF", PrfId),
    TransformType.KE: ("group", "group", KeId),
}


def _transforms(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec], child: bool) -> str:
    words = []
    for t in specs:
        if t.type == TransformType.ENCR:
            name = _name(t, child)
            if not name:
                raise refuse(peer, setting, f"{text!r}: cipher {EncrId(t.id).name}"
                             f"{f' ({t.key_bits} bits)' if t.key_bits else ''} has no OpenIKED name "
                             f"{'for ESP' if child else 'for IKE'}")
            words.append(f"enc {name}")
        elif t.type in _KEYWORD:
            keyword, what, enum = _KEYWORD[t.type]
            name = _name(t, child)
            if not name:
                raise refuse(peer, setting, f"{text!r}: {what} {enum(t.id).name} is not in OpenIKED")
            words.append(f"{keyword} {name}")
    return " ".join(words)


def _check_pfkey(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec]) -> None:
    for t in specs:
        if t.type not in (TransformType.ENCR, TransformType.INTEG):
            continue
        alg = algorithm(t.type, t.id)
        if alg is None or not alg.openiked_pfkey:
            name = EncrId(t.id).name if t.type == TransformType.ENCR else IntegId(t.id).name
            raise refuse(peer, setting, f"{text!r}: OpenIKED 7.2 on Linux cannot install a {name} Child SA "
                         f"{OPENIKED_PFKEY_REFUSAL}")


def _check(peer: PeerConfig) -> None:
    if peer.protocol == "ah":
        raise refuse(peer, "protocol", "OpenIKED's AH support depends on the kernel's PF_KEY AH path, "
                     "which this harness has not verified; AH cells are left out")
    if peer.encap:
        raise refuse(peer, "encap", "OpenIKED forces NAT-T only for every policy at once (iked -t), "
                     "not per connection")
    if peer.auth != "psk" or peer.remote_auth != "psk":
        kind = peer.auth if peer.auth != "psk" else peer.remote_auth
        raise refuse(peer, "auth", f"{kind} authentication is not rendered for OpenIKED yet")
    if len(peer.local_ts) > 1 or len(peer.remote_ts) > 1:
        raise refuse(peer, "local_ts", "one subnet per side")
    unset = peer.lifecycle_settings()
    if unset:
        raise refuse(peer, unset[0], f"{', '.join(unset)} not rendered for OpenIKED yet (ikelifetime and "
                     "lifetime are)")


def render_iked_conf(peer: PeerConfig) -> str:
    """``iked.conf`` with one policy: see the module docstring for the syntax it relies on."""
    _check(peer)
    ike = [_transforms(peer, f"ike_proposals[{i}]", p, parse_proposal(p, "ike"), False)
           for i, p in enumerate(peer.ike_proposals)]
    attr = "esp_proposals" if peer.protocol == "esp" else "ah_proposals"
    props = getattr(peer, attr)
    child = []
    for i, p in enumerate(props):
        specs = parse_proposal(p, peer.protocol)
        _check_pfkey(peer, f"{attr}[{i}]", p, specs)
        child.append(_transforms(peer, f"{attr}[{i}]", p, specs, True))
    if peer.mode == "tunnel":
        flows = " ".join(f"from {a} to {b}" for a in peer.local_ts for b in peer.remote_ts)
    else:
        remote = peer.remote_address if peer.remote_address is not None else "any"
        flows = f"from {peer.local_address} to {remote}"
    text = psk_text(peer.psk_bytes)
    psk = f'"{text}"' if text is not None else "0x" + peer.psk_bytes.hex()
    peer_addr = str(peer.remote_address) if peer.remote_address is not None else "any"
    mode = "active" if peer.role == "initiator" else "passive"
    lines = [
        f"# generated by ipseclab.lab.impls.openiked for peer {peer.name}",
        "set nomobike",
        "set fragmentation" if peer.fragmentation != "no" else "set nofragmentation",
        f'ikev2 "{peer.name}" {mode} {"transport " if peer.mode == "transport" else ""}{peer.protocol} \\',
        f"\t{flows} \\",
        f"\tlocal {peer.local_address} peer {peer_addr} \\",
        *(f"\tikesa {p} \\" for p in ike),
        *(f"\tchildsa {p} {'esn' if peer.esn else 'noesn'} \\" for p in child),
        f"\tsrcid {peer.effective_local_id.value} dstid {peer.effective_remote_id.value} \\",
        f"\tikelifetime {peer.ike_lifetime} lifetime {peer.child_lifetime} \\",
        f"\tpsk {psk}",
    ]
    return "\n".join(lines) + "\n"


def write_iked_conf(peer: PeerConfig, directory: str | Path) -> Path:
    """Write ``iked.conf`` (mode 0600: it holds the PSK; iked refuses a group- or world-readable one)."""
    text = render_iked_conf(peer)
    path = Path(directory) / "iked.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)
    return path


# --- the driver -----------------------------------------------------------------------------

IKED_SOCK = "/run/iked.sock"


class OpenikedDriver:
    """OpenIKED 7.2 (OpenBSD's iked, Debian's openiked): PF_KEY on Linux, so ``af_key`` in the guest.

    Built only through the adapter contract.  The initiator's policy is ``active`` (iked starts
    the exchange as soon as it runs), so :meth:`initiate` waits for the kernel SAs the
    exchange installs.  It does not log its IKE keys, so the other side must supply them.
    """

    impl = "openiked"
    image: str | None = "openiked"
    placement = "kernel"
    gives_ike_keys = False
    probe_refusal = "OpenIKED is not among issue 13's probe victims: no probe cell has been verified against it"
    daemon: str | None = "iked"
    actions = frozenset({"kill", "shell"})

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT (iked does NAT-T)

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        render_iked_conf(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        write_iked_conf(cfg, directory)

    def revive_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        # not in ``actions``: a case with a Revive of this side is UNSUPPORTED before anything runs
        raise ConfigError("OpenIKED is not started again after a kill here: its driver offers no 'revive' action")

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return (
            # a UML guest loads af_key itself; on a host kernel (docker, kernel IPsec "host") it is there already
            # (the host_ipsec probe's PF_KEY socket loads it) or cannot be loaded from the container
            "[ -e /proc/net/pfkey ] || modprobe af_key || { echo 'no PF_KEY (af_key) in this kernel'; exit 1; }\n"
            + "mkdir -p /var/lib/openiked/empty /run\n"
            # -d: foreground, log to stderr; -vv: exchanges and SAs in the log
            + f"iked -d -vv -f /ipl/iked.conf -s {IKED_SOCK} > /ipl/iked.log 2>&1 &\n"
            + WAIT_FOR.format(path=IKED_SOCK, what="iked")
            # the control socket comes before the configuration is loaded; an exchange that starts
            # earlier is freed by the load ("sa_free: reload"): wait for its last line
            + "i=0; while ! grep -q 'config_getstatic: .*stickyaddress' /ipl/iked.log && [ $i -lt 200 ]; "
              "do ipl_sleep 0.05; i=$((i+1)); done\n"
        )

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        # the active policy initiates by itself: wait for both SAs of the Child SA in the kernel
        return self._child_sas(host, timeout)

    def initiate_refused(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        return self.initiate(host, cfg, timeout)  # the wait for the Child SA's SAs runs its course

    def counters(self, host: Any, snapshot: str | None = None) -> dict[str, Any]:
        return kernel_counters(host, snapshot)

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        self._child_sas(host, timeout)  # iked answers IKE_AUTH, then installs the Child SA

    def _child_sas(self, host: UmlHost, timeout: float) -> str:
        """Wait for both SAs of the Child SA in the guest's kernel; LabError if they do not come."""
        script = (f"i=0; while [ $(ip xfrm state | grep -c '^src') -lt 2 ] && [ $i -lt {int(timeout * 10)} ]; "
                  "do ipl_sleep 0.1; i=$((i+1)); done; ip xfrm state | grep -c '^src'; "
                  f"ikectl -s {IKED_SOCK} show sa 2>&1 | head -20")
        rc, out = host.exec(script, timeout=timeout + 10, check=False)
        count = out.strip().splitlines()[0] if out.strip() else "0"
        if rc != 0 or not count.isdigit() or int(count) < 2:
            raise LabError("OpenIKED could not establish the SA", command=["iked (active policy)"], output=out,
                           hint=f"see {host.dir}/iked.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # iked does not log its IKE SA keys

    def rekey(self, host: Any, cfg: PeerConfig, what: str, timeout: float) -> str:
        raise LabError("the OpenIKED driver has no rekey command (actions: kill, shell)")

    def initiate_child(self, host: Any, cfg: PeerConfig, name: str, timeout: float) -> str:
        raise LabError("the OpenIKED driver starts no additional Child SA (actions: kill, shell)")

"""strongSwan 5.9.8 as a lab peer: its renderer, its drivers (kernel IPsec and kernel-libipsec), its IKE keys.

The renderer turns a :class:`PeerConfig` into ``strongswan.conf`` and ``swanctl.conf``: pure
functions, text in and out; :func:`write_strongswan_config` is the only one that touches the file
system.  The drivers start charon and drive it with swanctl over vici; :func:`parse_charon_log`
reads the IKE keys charon logs.  Image: ``containers/strongswan/``.

Facts this relies on (LAB-NOTES, seen on this project's machines):

* charon starts much faster with ``load_modular = no`` and an explicit ``load`` list, which must
  include ``kdf`` (IKE fails without it); ``threads = 8`` under UML (the default 16 is slower,
  4 deadlocks vici; kernel-libipsec would need 16 as it keeps 9 workers busy, but under UML we
  use the guest kernel's ESP/AH through kernel-netlink);
* swanctl loads in ~1.3 s instead of ~15 s with ``swanctl { load = pem pkcs1 x509 pubkey openssl
  random nonce }``;
* swanctl.conf takes one setting per line (``local { auth = psk id = x }`` is rejected);
* charon logs the derived keys at level 4 for ``ike`` and ``chd`` (Debian has no save-keys plugin).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...crypto.algorithms import algorithm, name_of
from ...crypto.proposals import TransformSpec
from ...crypto.registry import TransformType
from ...errors import ConfigError, LabError
from ..keys import StrongswanIkeKeys
from ..peerconfig import Identity, PeerConfig, psk_text
from ..topology import HostAddressing
from .contract import WAIT_FOR, Reload, kernel_counters, require_daemon, write_private

if TYPE_CHECKING:
    from ..runtimes.uml import UmlHost

IMPL = "strongswan"

# Every crypto plugin our proposal keywords can need (openssl covers ECP/brainpool/x448/MD5,
# gmp the MODP groups, chapoly ChaCha20-Poly1305, xcbc/cmac the AES MACs), plus kdf (needed
# by IKE in 5.9.8), the kernel and socket backends and vici.  Same list as the pcaps fixtures
# minus kernel-libipsec.
CHARON_PLUGINS = (
    "random", "nonce", "openssl", "aes", "sha1", "sha2", "md5", "hmac", "xcbc", "cmac", "ctr", "ccm", "gcm", "chapoly",
    "curve25519", "gmp", "kdf", "pem", "pkcs1", "pubkey", "x509", "kernel-netlink", "socket-default", "vici",
)
SWANCTL_PLUGINS = ("pem", "pkcs1", "x509", "pubkey", "openssl", "random", "nonce")
# swanctl's commands that only talk to charon over vici (initiate, terminate, list-sas, rekey, reload-settings, and
# --load-all of a peer without certificates or keys: nothing to parse) need none of those plugins; with one
# (``load = nonce``; an empty ``load`` means every plugin) a swanctl costs a UML guest ~24 CPU-ms instead of ~45-53
# (AMD EPYC, 2026-12-01).  Its own file, so strongswan.conf (which a reload compares byte for byte) is untouched.
SWANCTL_CONTROL_CONF = "swanctl {\n    load = nonce\n}\n"
THREADS = 8
LIBIPSEC_THREADS = 16

def refuse(peer: PeerConfig, setting: str, problem: str) -> ConfigError:
    """The error for what strongSwan cannot be configured to do, naming the setting and the peer."""
    return ConfigError(f"{IMPL}: peer {peer.name!r}: {setting}: {problem}")


def proposal_keywords(specs: list[TransformSpec]) -> str:
    """strongSwan's canonical keywords for one parsed proposal (PRFs always explicit).

    Written from the IANA transforms rather than copied from the user's text, so the config
    holds exactly the spelling strongSwan's proposal_keywords_static.txt defines.
    """
    words: list[str] = []
    for kind in (TransformType.ENCR, TransformType.INTEG, TransformType.PRF, TransformType.KE):
        for t in (s for s in specs if s.type == kind):
            words.append(_keyword(t))
    return "-".join(words)


def _keyword(t: TransformSpec) -> str:
    name = name_of("strongswan", t.type, t.id, t.key_bits)
    if not name:  # parse_proposal produced a transform the registry gives no strongSwan keyword
        raise ConfigError(f"no strongSwan keyword for {t}")
    return name


def ike_proposals(peer: PeerConfig) -> list[str]:
    return [proposal_keywords(p) for p in peer.parsed_ike_proposals()]


def child_proposals(peer: PeerConfig) -> list[str]:
    """ESP/AH proposals with the ESN choice appended to each (strongSwan negotiates ESN per proposal)."""
    esn = "esn" if peer.esn else "noesn"
    return [f"{proposal_keywords(p)}-{esn}" for p in peer.parsed_child_proposals()]


def identity(ident: Identity) -> str:
    """strongSwan's spelling: it recognises an address, ``user@domain`` and a host name by their form."""
    return ident.value


def _check_kernel_can_install(peer: PeerConfig) -> None:
    """kernel-netlink hands ESP/AH to the kernel: a transform with no xfrm name cannot be installed."""
    for n, specs in enumerate(peer.parsed_child_proposals()):
        for t in specs:
            alg = algorithm(t.type, t.id)
            if t.type in (TransformType.ENCR, TransformType.INTEG) and alg is not None and not alg.xfrm:
                why = alg.refusals.get("linux", "not an algorithm of the Linux kernel's xfrm")
                raise refuse(peer, f"child_proposals[{n}]", f"{alg.iana_name} is {why}, so kernel-netlink "
                             "cannot install the Child SA")


def _check(peer: PeerConfig) -> None:
    if not peer.nat_t:
        raise refuse(peer, "nat_t", "strongSwan 5.9.8 has no setting to ignore a detected NAT: it always "
                     "switches to UDP encapsulation when it finds one")
    if peer.esn and peer.replay_window == 0:
        raise refuse(peer, "esn", "ESN with replay_window=0: the Linux kernel (XFRM) rejects an ESN SA "
                     "without a replay window (xfrm_init_replay), so kernel-netlink cannot install it")


def render_strongswan_conf(peer: PeerConfig, *, vici_socket: str | Path, log_path: str | Path,
                           threads: int | None = None, libipsec: bool = False) -> str:
    """``strongswan.conf`` for one charon: plugin list, threads, vici socket, a file log.

    Paths are as the daemon sees them (inside the guest).  With ``peer.log_keys`` the ``ike``
    and ``chd`` groups log at level 4, where charon dumps SKEYSEED, SK_* and the Child SA keys.
    ``libipsec`` loads kernel-libipsec before kernel-netlink (userspace ESP through a TUN device);
    it keeps about 9 worker threads busy, so it gets 16 (8 would hang vici).
    """
    _check(peer)
    if not libipsec:
        _check_kernel_can_install(peer)
    threads = threads or (LIBIPSEC_THREADS if libipsec else THREADS)
    plugins = list(CHARON_PLUGINS)
    if libipsec:
        plugins.insert(plugins.index("kernel-netlink"), "kernel-libipsec")
    if peer.updown is not None:
        plugins.append("updown")  # children's updown = needs the plugin loaded
    plugins += auth_plugins(peer)
    key_level = 4 if peer.log_keys else 2
    lines = [
        f"# generated by ipseclab.lab.impls.strongswan for peer {peer.name}",
        "charon {",
        "    load_modular = no",
        f"    load = {' '.join(plugins)}",
        "    # 8 under UML with kernel-netlink: the default 16 starts slower, 4 deadlocks vici",
        f"    threads = {threads}",
        *_retransmit_lines(peer),
        "    plugins {",
        "        vici {",
        f"            socket = unix://{vici_socket}",
        "        }",
        "    }",
        "    filelog {",
        "        ipseclab {",
        f"            path = {log_path}",
        # appended to: a charon started again in the same cell (a Revive step) keeps the keys logged before
        "            append = yes",
        "            flush_line = yes",
        "            ike_name = yes",
        "            time_format = %H:%M:%S",
        "            default = 1",
        *(["            # level 4: charon logs the derived IKE and Child SA keys"] if peer.log_keys else []),
        f"            ike = {key_level}",
        f"            chd = {key_level}",
        "            cfg = 2",
        "            knl = 2",
        "            net = 2",
        "        }",
        "    }",
        "}",
        "swanctl {",
        f"    load = {' '.join((*SWANCTL_PLUGINS, *(['pkcs8'] if 'pubkey' in (peer.auth, peer.remote_auth) else [])))}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _retransmit_lines(peer: PeerConfig) -> list[str]:
    """charon's retransmission settings (global in strongswan.conf): timeout * 2**n, ``tries`` times."""
    out = []
    if peer.retransmit_timeout is not None:
        out += [f"    retransmit_timeout = {peer.retransmit_timeout:g}", "    retransmit_base = 2"]
    if peer.retransmit_tries is not None:
        out.append(f"    retransmit_tries = {peer.retransmit_tries}")
    return out


_DPD_ACTION = {"clear": "clear", "hold": "trap", "restart": "restart"}  # 5.9 calls hold "trap"


def _child_lines(peer: PeerConfig, local_ts: tuple[str, ...], remote_ts: tuple[str, ...]) -> list[str]:
    """The settings of one child: mode, proposals, selectors, lifetimes and volume limits, DPD action."""
    child_rekey = peer.child_lifetime - peer.child_rekey_margin if peer.rekey else 0
    lines = [
        f"mode = {peer.mode}",
        f"{peer.protocol}_proposals = {', '.join(child_proposals(peer))}",
    ]
    if peer.mode == "tunnel":
        # transport mode: the defaults (dynamic = the IKE addresses) are the hosts, also behind a NAT
        if local_ts:
            lines.append(f"local_ts = {', '.join(local_ts)}")
        if remote_ts:
            lines.append(f"remote_ts = {', '.join(remote_ts)}")
    lines += [
        f"replay_window = {peer.replay_window}",
        *([f"tfc_padding = {peer.tfc_padding}"] if peer.tfc_padding else []),
        f"rekey_time = {child_rekey}s",
        f"life_time = {peer.child_lifetime}s",
        f"rand_time = {peer.rekey_jitter}s",
    ]
    if peer.child_rekey_bytes and peer.rekey:
        lines += [f"rekey_bytes = {peer.child_rekey_bytes}", "rand_bytes = 0"]
    if peer.child_life_bytes:
        lines.append(f"life_bytes = {peer.child_life_bytes}")
    if peer.dpd_delay:
        lines.append(f"dpd_action = {_DPD_ACTION[peer.dpd_action]}")
    lines.append(f"start_action = {'start' if peer.auto_start else 'none'}")
    if peer.updown is not None:
        lines.append(f"updown = {peer.updown}")
    return lines


def child_names(peer: PeerConfig) -> list[str]:
    """The children of the connection: ``name``, then ``name-2``, ... for ``extra_children``."""
    return [peer.name] + [f"{peer.name}-{i + 2}" for i in range(len(peer.extra_children))]


def render_swanctl_conf(peer: PeerConfig) -> str:
    """``swanctl.conf``: one connection (IKE SA) with one child of the same name, and its PSK.

    One setting per line, as swanctl requires.  ``start_action`` is none unless ``auto_start``:
    the harness initiates with ``swanctl --initiate --child NAME``.
    """
    _check(peer)
    name = peer.name
    remote_addr = str(peer.remote_address) if peer.remote_address is not None else "%any"
    ike_renew = peer.ike_lifetime - peer.ike_rekey_margin if peer.rekey else 0
    conn = [
        "    version = 2",
        f"    local_addrs = {peer.local_address}",
        f"    remote_addrs = {remote_addr}",
        f"    proposals = {', '.join(ike_proposals(peer))}",
        f"    encap = {_yes(peer.encap)}",
        "    mobike = no",
        f"    fragmentation = {peer.fragmentation}",
        f"    dpd_delay = {peer.dpd_delay}s",
        # the IKE SA rekeys (or reauthenticates) at lifetime - margin and is gone at lifetime: over_time is the margin
        f"    rekey_time = {0 if peer.reauth else ike_renew}s",
        f"    over_time = {peer.ike_rekey_margin}s",
        f"    rand_time = {peer.rekey_jitter}s",
        f"    reauth_time = {ike_renew if peer.reauth else 0}s",
        # Libreswan 4.10 sends no CERTREQ, and charon's default (ifasked) would then leave its certificate out
        *(["    send_cert = always"] if peer.auth == "pubkey" else []),
        "    local {",
        *[f"        {line}" for line in _auth_lines(peer, local=True)],
        f"        id = {identity(peer.effective_local_id)}",
        "    }",
        "    remote {",
        *[f"        {line}" for line in _auth_lines(peer, local=False)],
        f"        id = {identity(peer.effective_remote_id)}",
        "    }",
        "    children {",
    ]
    selectors = [(tuple(map(str, peer.local_ts)), tuple(map(str, peer.remote_ts)))]
    selectors += [((str(local),), (str(remote),)) for local, remote in peer.extra_children]
    for child_name, (local_ts, remote_ts) in zip(child_names(peer), selectors, strict=True):
        conn.append(f"        {child_name} {{")
        conn += [f"            {line}" for line in _child_lines(peer, local_ts, remote_ts)]
        conn.append("        }")
    conn += ["    }"]
    lines = [f"# generated by ipseclab.lab.impls.strongswan for peer {name}", "connections {", f"    {name} {{"]
    lines += [f"    {line}" for line in conn]
    lines += ["    }", "}", "secrets {", f"    ike-{name} {{",
              f"        id-local = {identity(peer.effective_local_id)}",
              f"        id-remote = {identity(peer.effective_remote_id)}",
              f"        secret = {secret(peer.psk_bytes)}",
              "    }"]
    lines += [f"    {line}" for line in _secret_lines(peer)]
    lines += ["}"]
    return "\n".join(lines) + "\n"


# swanctl --file /ipl/swanctl.conf takes the file's directory as its base: --load-all reads x509/, x509ca/ and
# private/ there, and certs/cacerts are relative to x509/ and x509ca/ (seen on 5.9.8)


def auth_plugins(peer: PeerConfig) -> list[str]:
    """The plugins authentication needs beyond the PSK's: pkcs8 for the PEM key, the EAP method and identity."""
    kinds = (peer.auth, peer.remote_auth)
    out = ["pkcs8"] if "pubkey" in kinds else []
    for k in kinds:
        if k.startswith("eap-"):
            out += [k, "eap-identity"]
    return out


def _auth_lines(peer: PeerConfig, *, local: bool) -> list[str]:
    kind = peer.auth if local else peer.remote_auth
    creds = peer.credentials
    if kind == "psk":
        return ["auth = psk"]
    if kind == "pubkey" and creds is not None:
        if local:
            return ["auth = pubkey", f"certs = {peer.name}-local.pem"]
        return ["auth = pubkey", f"cacerts = {peer.name}-ca-0.pem"]
    if kind.startswith("eap-") and creds is not None:
        if local:
            return [f"auth = {kind}", f"eap_id = {creds.eap_identity or identity(peer.effective_local_id)}"]
        return [f"auth = {kind}", f"eap_id = {creds.eap_identity or identity(peer.effective_remote_id)}"]
    raise refuse(peer, "auth" if local else "remote_auth", f"{kind} without credentials")


def _secret_lines(peer: PeerConfig) -> list[str]:
    creds = peer.credentials
    if creds is None:
        return []
    out = []  # the private key is loaded from private/ by --load-all
    if "eap-" in peer.auth + peer.remote_auth:
        out += [f"eap-{peer.name} {{", f"    id = {creds.eap_identity}",
                f"    secret = {secret(creds.eap_password.encode())}", "}"]
    return out


def _write_credentials(peer: PeerConfig, directory: Path) -> None:
    """The PEM files ``_auth_lines`` names, in x509/, x509ca/ and private/ beside swanctl.conf."""
    creds = peer.credentials
    if creds is None:
        return
    base = directory
    for sub in ("x509", "x509ca", "private"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if peer.auth == "pubkey":
        (base / "x509" / f"{peer.name}-local.pem").write_bytes(creds.certificate)
        key = base / "private" / f"{peer.name}-local.pem"
        key.touch(mode=0o600)
        key.write_bytes(creds.private_key)
        for i, c in enumerate(creds.intermediates):
            (base / "x509ca" / f"{peer.name}-intermediate-{i}.pem").write_bytes(c)
    for i, c in enumerate(creds.cas):
        (base / "x509ca" / f"{peer.name}-ca-{i}.pem").write_bytes(c)


def secret(psk: bytes) -> str:
    """A swanctl secret: a quoted string when it reads back literally, else ``0x`` hex."""
    text = psk_text(psk)
    return f'"{text}"' if text is not None else "0x" + psk.hex()


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class StrongswanFiles(NamedTuple):
    strongswan_conf: Path
    swanctl_conf: Path


def write_strongswan_config(peer: PeerConfig, directory: str | Path, *, vici_socket: str | Path,
                            log_path: str | Path, threads: int | None = None,
                            libipsec: bool = False) -> StrongswanFiles:
    """Write ``strongswan.conf`` and ``swanctl.conf`` (mode 0600: it holds the PSK) into ``directory``.

    Both texts are rendered before anything is written, so a refused configuration leaves no file.
    """
    conf = render_strongswan_conf(peer, vici_socket=vici_socket, log_path=log_path, threads=threads,
                                  libipsec=libipsec)
    swanctl = render_swanctl_conf(peer)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = StrongswanFiles(d / "strongswan.conf", d / "swanctl.conf")
    files.strongswan_conf.write_text(conf)
    (d / CONTROL_CONF_NAME).write_text(SWANCTL_CONTROL_CONF)
    write_private(files.swanctl_conf, swanctl)
    _write_credentials(peer, d)
    return files


# --- the drivers ----------------------------------------------------------------------------

VICI = "/run/charon.vici"
CHARON_PID = "/run/charon.pid"
CONTROL_CONF_NAME = "swanctl-control.conf"


def swanctl(args: str, cfg: PeerConfig | None = None) -> str:
    """The shell command ``swanctl ARGS`` against the guest's charon: with the one-plugin SWANCTL_CONTROL_CONF,
    unless it is the ``--load-all`` of ``cfg`` with credentials (certificates and keys to parse: strongswan.conf's
    ``swanctl`` plugins)."""
    conf = "strongswan.conf" if cfg is not None and cfg.credentials is not None else CONTROL_CONF_NAME
    return f"STRONGSWAN_CONF=/ipl/{conf} swanctl {args} --uri unix://{VICI}"


class StrongswanDriver:
    """strongSwan 5.9.8: charon in the foreground, controlled with swanctl over vici."""

    impl = "strongswan"
    image: str | None = "strongswan"
    placement = "kernel"
    gives_ike_keys = True  # charon logs them at level 4
    probe_refusal = ""  # the guest kernel's xfrm counters
    daemon: str | None = "charon"
    actions = frozenset({"rekey", "child", "kill", "revive", "shell"})
    libipsec = False  # kernel-libipsec (userspace ESP through a TUN device) instead of the kernel's XFRM

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        render_strongswan_conf(cfg, vici_socket=VICI, log_path="/ipl/charon.log", libipsec=self.libipsec)
        render_swanctl_conf(cfg)

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        write_strongswan_config(cfg, directory, vici_socket=VICI, log_path="/ipl/charon.log", libipsec=self.libipsec)

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        return (
            "STRONGSWAN_CONF=/ipl/strongswan.conf /usr/lib/ipsec/charon > /ipl/charon.stdout 2>&1 &\n"
            + WAIT_FOR.format(path=VICI, what="charon")
            + swanctl("--load-all --file /ipl/swanctl.conf", cfg) + " || exit 1\n"
        )

    def revive_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        """charon again after a kill: its pid file and vici socket removed first (WAIT_FOR would take the dead
        one's socket for the new one's)."""
        return f"rm -f {VICI} {CHARON_PID}\n" + self.start_script(cfg, host, dev)

    def drop_script(self, cfg: PeerConfig, dev: str = "vec0") -> str:
        """End the cell's IKE SA (and its Child SAs) at once, without telling the other peer, then wait until charon
        holds no SA.  The guest's global addresses go first, so the Delete charon sends cannot leave: a peer told
        of it may act on it (Libreswan 4.10 as the initiator revives a connection whose IKE SA the responder
        deleted, seen 2026-11-30), and the other peer is itself dropped or restarted before the next cell."""
        return (require_daemon(CHARON_PID, "charon") +
                f"ip addr flush dev {dev} scope global\n"
                + swanctl(f"--terminate --ike {cfg.name} --force") + " >/dev/null 2>&1\n"
                # an SA is a "list-sa event" of --raw; with none it prints only "list-sas reply {}"
                "i=0; while :; do\n"
                f"  case \"$({swanctl('--list-sas --raw')})\" in *'list-sa event'*) ;; *) break;; esac\n"
                "  [ $i -lt 40 ] || { echo 'charon still holds SAs'; exit 1; }; ipl_sleep 0.05; i=$((i+1)); done\n")

    def reload(self, old: PeerConfig, new: PeerConfig, old_dir: Path, new_dir: Path, host: HostAddressing,
               dev: str = "vec0") -> Reload | None:
        """charon keeps running from one cell to the next when the new ``strongswan.conf`` is the old one byte for
        byte (plugins, threads, retransmission and log settings are read at start; the file names the log, and
        ``--reload-settings`` reopens it in the new ``/ipl``).  After the routes ``start_script`` adds, ``load``
        is ``--load-all --clear``: the new cell's connections, secrets and credentials only (a connection the
        file does not hold is unloaded, one of the same name replaced, the credentials cleared first)."""
        if self.libipsec:
            return None
        try:
            if (old_dir / "strongswan.conf").read_bytes() != (new_dir / "strongswan.conf").read_bytes():
                return None
        except OSError:
            return None
        load = (swanctl("--reload-settings") + " || exit 1\n"
                + swanctl("--load-all --clear --file /ipl/swanctl.conf", new) + " || exit 1\n")
        return Reload(CHARON_PID, "/run/charon.*", load)

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        rc, out = host.exec(swanctl(f"--initiate --child {cfg.name} --timeout {int(timeout)}"),
                            timeout=timeout + 10, check=False)
        if rc != 0 or "initiate completed successfully" not in out:
            raise LabError("strongSwan could not establish the SA", command=["swanctl", "--initiate"],
                           output=out, hint=f"see {host.dir}/charon.log")
        return out

    def initiate_refused(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        return self.initiate(host, cfg, timeout)  # charon gives up at the refusal notify itself

    def initiate_child(self, host: UmlHost, cfg: PeerConfig, name: str, timeout: float) -> str:
        """Start the additional child ``name`` (``<cfg.name>-2``, ...) under the IKE SA already up."""
        rc, out = host.exec(swanctl(f"--initiate --child {name} --timeout {int(timeout)}"),
                            timeout=timeout + 10, check=False)
        if rc != 0 or "initiate completed successfully" not in out:
            raise LabError(f"strongSwan could not establish the Child SA {name}", command=["swanctl", "--initiate"],
                           output=out, hint=f"see {host.dir}/charon.log")
        return out

    def rekey(self, host: UmlHost, cfg: PeerConfig, what: str, timeout: float) -> str:
        """Rekey the connection's first Child SA (``what="child"``) or its IKE SA (``"ike"``) now."""
        target = f"--child {cfg.name}" if what == "child" else f"--ike {cfg.name}"
        rc, out = host.exec(swanctl(f"--rekey {target}"), timeout=timeout, check=False)
        if rc != 0:
            raise LabError(f"strongSwan refused to rekey the {what} SA", command=["swanctl", "--rekey"],
                           output=out, hint=f"see {host.dir}/charon.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        log = directory / "charon.log"
        return parse_charon_log(log.read_text(errors="replace")) if log.exists() else []

    def counters(self, host: Any, snapshot: str | None = None) -> dict[str, Any]:
        return kernel_counters(host, snapshot)

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # charon installs the Child SA before it answers IKE_AUTH


class StrongswanLibipsecDriver(StrongswanDriver):
    """strongSwan 5.9.8 with kernel-libipsec: ESP in charon itself, through a TUN device, on any host kernel.

    Built only through the adapter contract (the strongswan image, ``placement = "container"``),
    it shows what another implementation needs.  What 5.9.8's kernel-libipsec cannot do is
    refused, so those cells are UNSUPPORTED with the reason: it does ESP in tunnel mode only, and
    it always encapsulates ESP in UDP (it fakes NAT detection), so a case that promises plain ESP
    between the hosts cannot be met.
    """

    impl = "strongswan-libipsec"
    image = "strongswan"
    placement = "container"
    libipsec = True
    probe_refusal = ("strongSwan's kernel-libipsec keeps its SAs inside charon (fixed 128-packet window), so "
                     "there are no xfrm replay/integrity counters to read")

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        why = []
        if cfg.protocol != "esp":
            why.append("AH")
        if cfg.mode != "tunnel":
            why.append("transport mode")
        if not cfg.encap and topology != "nat":
            why.append("plain ESP between the hosts (it always encapsulates ESP in UDP)")
        if cfg.esn:
            why.append("ESN")
        if why:
            raise ConfigError(f"strongSwan's kernel-libipsec does not do {', '.join(why)}")
        super().check_supported(cfg, topology)


# --- IKE keys from charon's log ---------------------------------------------------------------

_DUMP_HEAD = re.compile(r"\[IKE\] <([^>]*)> (Sk_[a-z]{1,2}) secret => (\d+) bytes")
_DUMP_LINE = re.compile(r"\[IKE\] <([^>]*)>\s+\d+: ((?:[0-9A-F]{2} ){1,16})")
_SELECTED = re.compile(r"<([^>]*)> selected proposal: IKE:(\S+)")


def parse_charon_log(text: str) -> list[StrongswanIkeKeys]:
    """The IKE SA key sets in a charon log written with ``ike = 4`` (in the order they were derived).

    A log holds several: every rekeyed IKE SA derives a new set.  A set belongs to the IKE SA the
    log line names (``<name|unique-id>``); a secret that appears again under the same name starts a
    new set (charon may derive a rekeyed SA's keys in the old SA's context).  Each set takes the
    proposal last selected for its name, else the last selected at all before its keys (the rekey's).
    """
    done: list[StrongswanIkeKeys] = []
    sas: dict[str, StrongswanIkeKeys] = {}
    proposals: dict[str, str] = {}
    last_proposal = ""
    current: tuple[str, str, int] | None = None
    buf = bytearray()

    def flush() -> None:
        nonlocal current, buf
        if current is not None:
            sa, name, n = current
            keys = sas.get(sa)
            if keys is None or name.lower() in keys.secrets:
                if keys is not None:
                    done.append(keys)
                keys = sas[sa] = StrongswanIkeKeys(sa, proposals.get(sa, last_proposal))
            keys.secrets[name.lower()] = bytes(buf[:n])
        current, buf = None, bytearray()

    for line in text.splitlines():
        m = _SELECTED.search(line)
        if m:
            proposals[m.group(1)] = last_proposal = m.group(2)
            continue
        m = _DUMP_HEAD.search(line)
        if m:
            flush()
            current = (m.group(1), m.group(2), int(m.group(3)))
            continue
        m = _DUMP_LINE.search(line)
        if m and current is not None and m.group(1) == current[0]:
            buf += bytes.fromhex(m.group(2).replace(" ", ""))
            continue
        flush()
    flush()
    done += sas.values()
    return [keys for keys in done if keys.proposal and {"sk_ei", "sk_er"} <= keys.secrets.keys()]

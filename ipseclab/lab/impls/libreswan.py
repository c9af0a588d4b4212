"""Libreswan 4.10 as a lab peer: its renderer and its driver (pluto, whack).  Image: ``containers/libreswan/``.

The renderer turns a :class:`PeerConfig` into ``ipsec.conf`` and ``ipsec.secrets``: pure functions,
text in and out; :func:`write_libreswan_config` is the only one that writes.

What the translation relies on (Libreswan's own sources and ipsec.conf(5) of the 4.x series):

* IKEv2 is ``ikev2=yes``: 4.x reads the old ``insist`` as yes and dropped propose/permit;
  ``keyexchange=ikev2`` is the newer spelling (5.x marks ``ikev2=`` obsolete but still maps
  it), while 3.x-era parsers took only ``keyexchange=ike``.  ``ikev2=yes`` reads the same in both.
* Proposals: ``ENCR-PRF;DH`` for IKE (Libreswan derives IKE integrity from the PRF, by design),
  ``ENCR-INTEG;DH`` for ESP, ``INTEG;DH`` for AH, ``+`` joins alternatives.  Encryption is
  ``aes256`` (CBC), ``aes_gcm_16_256`` / ``_12_`` / ``_8_`` (``<name>_<keylen>``),
  ``aes_gmac_256``, ``chacha20_poly1305``, ``null``; integrity/PRF ``sha1``, ``md5``,
  ``sha2_256``, ``sha2_384``, ``sha2_512``, and for ESP/AH only ``aes_xcbc``, ``aes_cmac``;
  DH ``dh5``, ``dh14``-``dh18``, ``dh19``-``dh21`` (ECP), ``dh31`` (Curve25519).  Not there:
  modp768, modp1024 (not compiled in since 4.0), ECP-192/224, brainpool and Curve448 (NSS).
* A DH group in ``esp=``/``ah=`` is the PFS group of rekeys; without one, ``pfs=no`` keeps
  Libreswan from adding the IKE group, which a strongSwan peer without PFS would reject.
* ``replay-window=0`` silently turns ESN off; ``salifetime``/``ikelifetime`` are capped at 24 h;
  one ``rekeymargin`` serves both SAs; ``fragmentation=force`` is IKEv1-only.
* ``leftupdown=%disabled``: the updown script forks per SA and under UML made IKE_AUTH take
  7-14 s instead of ~1 s (LAB-NOTES); the harness adds routes itself.

Key logging: ``plutodebug`` with ``crypt`` dumps the ESP keys pluto hands to the kernel and
``private`` the bytes of its NSS symmetric keys (SKEYSEED, SK_*); the child SA keys are more
simply read from ``ip xfrm state`` in the guest (the only source here for AH keys).
The driver starts pluto with ``--debug none`` and turns this debug on with whack once pluto listens (its
start-up self-tests would otherwise be dumped too).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...crypto.algorithms import algorithm, algorithms, name_of
from ...crypto.proposals import TransformSpec
from ...crypto.registry import EncrId, IntegId, KeId, PrfId, TransformType
from ...crypto.x509 import key_kind, load_certificate, pkcs12, validity_problem
from ...errors import ConfigError, LabError
from ..keys import StrongswanIkeKeys
from ..peerconfig import Identity, IPNetwork, PeerConfig, psk_text
from ..topology import HostAddressing
from .contract import WAIT_FOR, Reload, kernel_counters, require_daemon, write_private

if TYPE_CHECKING:
    from ..runtimes.uml import UmlHost

IMPL = "libreswan"
MAX_LIFETIME = 86400  # ikelifetime and salifetime are capped at 24h
KEY_DEBUG = "crypt private"


def _ike_integ(iid: int) -> str | None:
    """Libreswan's IKE name of an integrity transform, None where it offers it for ESP/AH only."""
    alg = algorithm(TransformType.INTEG, iid)
    if alg is None or not alg.libreswan or "libreswan-ike" in alg.refusals:
        return None
    return alg.libreswan


def _prf(pid: int) -> tuple[str, int] | None:
    """(Libreswan's PRF name, the IKE integrity it derives from that PRF), None where it has no name."""
    name = name_of("libreswan", TransformType.PRF, pid)
    integ = next((a.id for a in algorithms(TransformType.INTEG) if a.prf == pid and _ike_integ(a.id)), None)
    return (name, integ) if name and integ is not None else None


def refuse(peer: PeerConfig, setting: str, problem: str) -> ConfigError:
    """The error for what Libreswan cannot be configured to do, naming the setting and the peer."""
    return ConfigError(f"{IMPL}: peer {peer.name!r}: {setting}: {problem}")


# --- proposals -----------------------------------------------------------------------------


def _encr(t: TransformSpec) -> str | None:
    return name_of("libreswan", TransformType.ENCR, t.id, t.key_bits) or None


def _dh(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec]) -> list[str]:
    out = []
    for t in (s for s in specs if s.type == TransformType.KE):
        alg = algorithm(TransformType.KE, t.id)
        if alg is None or not alg.libreswan:
            why = alg.refusals.get("libreswan", "") if alg is not None else ""
            raise refuse(peer, setting, f"{text!r}: key exchange {KeId(t.id).name} is "
                         f"{why or 'not supported by Libreswan'}")
        out.append(alg.libreswan)
    return out


def _encrs(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec], *, ike: bool = False) -> list[str]:
    """Libreswan's names of a proposal's ciphers; ``ike``: for ``ike=``, which takes fewer (no AES-CCM, ...)."""
    out = []
    for t in (s for s in specs if s.type == TransformType.ENCR):
        name = _encr(t)
        alg = algorithm(TransformType.ENCR, t.id)
        why = alg.refusals.get("libreswan", "") if alg is not None else ""
        if ike and alg is not None and not why:
            why = alg.refusals.get("libreswan-ike", "")
        if name is None or why:
            why = why or "not supported by Libreswan"
            raise refuse(peer, setting, f"{text!r}: cipher {EncrId(t.id).name} is {why}")
        out.append(name)
    return out


def ike_proposal(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec]) -> str:
    """One IKE proposal as ``ENCR[+ENCR]-PRF[+PRF];DH[+DH]``.

    Libreswan names the PRF and derives integrity from it (HMAC PRF -> the HMAC integrity of the
    same hash; none for AEAD), so a strongSwan proposal whose integrity is not the one its PRF
    implies cannot be written.
    """
    encrs = _encrs(peer, setting, text, specs, ike=True)
    integs = {IntegId(t.id) for t in specs if t.type == TransformType.INTEG}
    for i in integs:
        if _ike_integ(i) is None:
            alg = algorithm(TransformType.INTEG, i)
            why = (alg.refusals.get("libreswan-ike", "") if alg is not None else "") or "not supported by Libreswan"
            raise refuse(peer, setting, f"{text!r}: integrity {i.name} is {why}")
    prfs: list[str] = []
    derived: set[IntegId] = set()
    for t in (s for s in specs if s.type == TransformType.PRF):
        pid = PrfId(t.id)
        found = _prf(pid)
        if found is None:
            raise refuse(peer, setting, f"{text!r}: PRF {pid.name} is not translated for Libreswan "
                         "(use prfsha256/prfsha384/prfsha512/prfsha1)")
        name, integ = found
        prfs.append(name)
        derived.add(IntegId(integ))
    if integs and integs != derived:
        raise refuse(peer, setting, f"{text!r}: Libreswan derives IKE integrity from the PRF, so integrity "
                     f"{'+'.join(sorted(i.name for i in integs))} cannot go with PRF "
                     f"{'+'.join(sorted(p for p in prfs))}; drop the prf... keyword or make them match")
    dhs = _dh(peer, setting, text, specs)
    return f"{'+'.join(encrs)}-{'+'.join(prfs)};{'+'.join(dhs)}"


def child_proposal(peer: PeerConfig, setting: str, text: str, specs: list[TransformSpec]) -> str:
    """One ESP (``ENCR[-INTEG][;DH]``) or AH (``INTEG[;DH]``) proposal; the DH is the rekey PFS group."""
    parts = []
    if peer.protocol == "esp":
        parts.append("+".join(_encrs(peer, setting, text, specs)))
    integs = []
    for t in (s for s in specs if s.type == TransformType.INTEG):
        iid = IntegId(t.id)
        name = name_of("libreswan", TransformType.INTEG, iid)
        if not name:
            alg = algorithm(TransformType.INTEG, iid)
            why = (alg.refusals.get("libreswan", "") if alg is not None else "") or "not supported by Libreswan"
            raise refuse(peer, setting, f"{text!r}: integrity {iid.name} is {why}")
        integs.append(name)
    if integs:
        parts.append("+".join(integs))
    out = "-".join(parts)
    dhs = _dh(peer, setting, text, specs)
    return f"{out};{'+'.join(dhs)}" if dhs else out


def ike_proposals(peer: PeerConfig) -> list[str]:
    return [ike_proposal(peer, f"ike_proposals[{i}]", text, specs)
            for i, (text, specs) in enumerate(zip(peer.ike_proposals, peer.parsed_ike_proposals(), strict=True))]


def child_proposals(peer: PeerConfig) -> tuple[list[str], bool]:
    """The ``esp=``/``ah=`` proposals and whether they ask for PFS (all of them, or none may)."""
    attr = f"{peer.protocol}_proposals"
    out, pfs = [], []
    for i, (text, specs) in enumerate(zip(peer.child_proposals, peer.parsed_child_proposals(), strict=True)):
        out.append(child_proposal(peer, f"{attr}[{i}]", text, specs))
        pfs.append(any(t.type == TransformType.KE for t in specs))
    if any(pfs) and not all(pfs):
        raise refuse(peer, attr, "Libreswan has one pfs= per connection: either every proposal names a "
                     "key exchange (PFS on rekey) or none does")
    return out, all(pfs)


# --- identities and secrets ------------------------------------------------------------------


def identity(ident: Identity) -> str:
    """Libreswan's spelling: ``@name`` keeps a host name from being resolved in DNS."""
    return f"@{ident.value}" if ident.kind == "fqdn" else ident.value


def render_ipsec_secrets(peer: PeerConfig) -> str:
    """``ipsec.secrets``: ``LOCALID REMOTEID : PSK "..."`` (hex when the key is not plain text); with certificates
    nothing: pluto finds the private key of ``leftcert`` in the NSS database."""
    head = f"# generated by ipseclab.lab.impls.libreswan for peer {peer.name}\n"
    if peer.auth != "psk":
        return head
    text = psk_text(peer.psk_bytes)
    value = f'"{text}"' if text is not None else "0x" + peer.psk_bytes.hex()
    return head + f"{identity(peer.effective_local_id)} {identity(peer.effective_remote_id)} : PSK {value}\n"


# --- certificates: the NSS database -----------------------------------------------------------
#
# pluto keeps certificates and keys in NSS only.  The guest's database is made at boot on tmpfs (``ipsec initnss``);
# ``nss_lines`` imports the run's CAs with trust "CT,," (certutil -A) and the peer's PKCS#12 (pk12util -i: its
# certificate, key and intermediates, the friendly name becoming the nickname that ``leftcert=`` names).

NSS_DIR = "/run/nss"
NSS_FILES = "nss"  # beside ipsec.conf in the peer directory (/ipl/nss in the guest)
LOCAL_CERT = "ipseclab-local"
P12_PASSWORD = "ipseclab-lab"  # protects the file on its way into NSS; the file itself is 0600
# Libreswan 4.10's own words: ipsec.conf(5) authby=/leftauth=, leftautheap= (and pluto's SIGNATURE_HASH_ALGORITHMS)
NO_EDDSA = ("Libreswan 4.10 has no EdDSA (RFC 8420): authby=/leftauth= take rsasig, rsa-sha2, rsa-sha2_384, "
            "rsa-sha2_512, rsa-sha1, ecdsa, secret and null, and pluto's SIGNATURE_HASH_ALGORITHMS offers SHA2-256/"
            "384/512, not Identity")
EAP_TLS_ONLY = ("Libreswan 4.10 does EAP only as EAP-TLS: leftautheap=/rightautheap= take none (the default) or "
                "tls, so {kind} is not available")
# seen in refuse-expired-cert (2026-11-30): pluto will not add the conn at all
EXPIRED_OWN = ("Libreswan 4.10 will not load a conn whose own certificate has expired (\"failed to add connection: "
               "left certificate '...' is expired or not yet valid\")")
_AUTHBY = {"rsa": "rsasig", "ecdsa": "ecdsa"}


def auth_lines(peer: PeerConfig) -> list[str]:
    """``authby=`` and, with certificates, ``leftcert=``/``leftsendcert=``/``sendca=``; refuses what 4.10 lacks."""
    for kind in (peer.auth, peer.remote_auth):
        if kind.startswith("eap-"):
            raise refuse(peer, "auth" if kind == peer.auth else "remote_auth", EAP_TLS_ONLY.format(kind=kind))
    if peer.auth == "psk" and peer.remote_auth == "psk":
        return ["\tauthby=secret"]
    if peer.auth != peer.remote_auth:
        raise refuse(peer, "remote_auth", f"{peer.auth} one way and {peer.remote_auth} the other (leftauth=/"
                     "rightauth=) is not rendered for Libreswan")
    creds = peer.credentials
    if creds is None:  # PeerConfig requires them for auth='pubkey'; this keeps the renderer total
        raise refuse(peer, "credentials", "auth='pubkey' without a certificate")
    expired = validity_problem(creds.certificate)
    if expired:
        raise refuse(peer, "credentials", f"{expired}: {EXPIRED_OWN}")
    key = key_kind(load_certificate(creds.certificate))
    if key not in _AUTHBY:
        raise refuse(peer, "credentials", f"the certificate's key is {key}: {NO_EDDSA}")
    return [f"\tauthby={_AUTHBY[key]}", f"\tleftcert={LOCAL_CERT}", "\tleftsendcert=always",
            *(["\tsendca=all"] if creds.intermediates else [])]


def nss_lines(peer: PeerConfig, directory: str = "/ipl") -> str:
    """Shell lines for the guest that fill the NSS database from the files ``write_nss_files`` wrote."""
    creds = peer.credentials
    if creds is None or peer.auth != "pubkey":
        return ""
    src, log = f"{directory}/{NSS_FILES}", f"{directory}/nss.log"
    lines = [f"certutil -A -d sql:{NSS_DIR} -n ipseclab-ca-{i} -t CT,, -a -i {src}/ca-{i}.pem >> {log} 2>&1 || exit 1\n"
             for i in range(len(creds.cas))]
    lines.append(f"pk12util -i {src}/local.p12 -d sql:{NSS_DIR} -w {src}/p12.pass -K '' >> {log} 2>&1 || exit 1\n")
    lines.append(f"certutil -L -d sql:{NSS_DIR} >> {log} 2>&1\n")
    return "".join(lines)


def write_nss_files(peer: PeerConfig, directory: Path) -> None:
    """The CA certificates (PEM) and the peer's PKCS#12 with its password file (both 0600) for ``nss_lines``."""
    creds = peer.credentials
    if creds is None or peer.auth != "pubkey":
        return
    d = directory / NSS_FILES
    d.mkdir(parents=True, exist_ok=True)
    for i, ca in enumerate(creds.cas):
        (d / f"ca-{i}.pem").write_bytes(ca)
    write_private(d / "p12.pass", P12_PASSWORD + "\n")
    write_private(d / "local.p12", pkcs12(LOCAL_CERT, creds.certificate, creds.private_key, creds.intermediates,
                                          P12_PASSWORD.encode()))


# --- ipsec.conf ------------------------------------------------------------------------------


def _check(peer: PeerConfig) -> None:
    auth_lines(peer)
    if peer.fragmentation == "force":
        raise refuse(peer, "fragmentation", "'force' exists in Libreswan for IKEv1 only; IKEv2 takes yes or no")
    if peer.esn and peer.replay_window == 0:
        raise refuse(peer, "esn", "Libreswan turns ESN off when replay-window=0 (and the kernel needs a "
                     "replay window for ESN)")
    for setting in ("ike_lifetime", "child_lifetime"):
        if getattr(peer, setting) > MAX_LIFETIME:
            raise refuse(peer, setting, f"{getattr(peer, setting)} s is over Libreswan's maximum of 24h, "
                         "which it would silently apply")
    if peer.ike_rekey_margin != peer.child_rekey_margin:
        raise refuse(peer, "child_rekey_margin", f"Libreswan has one rekeymargin for both SAs; "
                     f"ike_rekey_margin={peer.ike_rekey_margin} differs from {peer.child_rekey_margin}")
    if peer.child_rekey_bytes:
        raise refuse(peer, "child_rekey_bytes", "Libreswan chooses its own soft volume limit below "
                     "ipsec-max-bytes (child_life_bytes) and takes no rekey_bytes; set child_life_bytes alone")
    if peer.rekey_jitter and peer.ike_rekey_margin != peer.child_rekey_margin:
        raise refuse(peer, "rekey_jitter", "Libreswan's rekeyfuzz is a share of its one rekeymargin")
    for setting, nets in (("local_ts", peer.local_ts), ("remote_ts", peer.remote_ts)):
        if len(nets) > 1:
            raise refuse(peer, setting, "Libreswan 4.x takes one subnet per side in an IKEv2 conn, not "
                         f"{', '.join(map(str, nets))}")


def _encapsulation(peer: PeerConfig) -> str:
    if peer.encap:
        return "yes"
    return "auto" if peer.nat_t else "no"


def render_ipsec_conf(peer: PeerConfig, *, log_path: str | Path, secrets_path: str | Path | None = None) -> str:
    """``ipsec.conf``: ``config setup`` (log file, key-logging debug) and one conn.

    Paths are as pluto sees them (inside the guest).  ``auto=add`` unless ``auto_start``: the
    harness initiates with ``ipsec whack --initiate --name NAME``.
    """
    _check(peer)
    ike = ike_proposals(peer)
    child, pfs = child_proposals(peer)
    setup = [
        f"\tlogfile={log_path}",
        "\tlogtime=yes",
        "\tlogappend=no",
    ]
    if peer.log_keys:
        setup.append("\t# crypt: the ESP keys given to the kernel; private: SKEYSEED and SK_* bytes")
        setup.append(f'\tplutodebug="{KEY_DEBUG}"')
    if secrets_path is not None:
        setup.append(f"\tsecretsfile={secrets_path}")
    conns = [(peer.name, peer.local_ts[:1], peer.remote_ts[:1])]
    conns += [(name, (local,), (remote,)) for name, (local, remote)
              in zip(conn_names(peer)[1:], peer.extra_children, strict=True)]
    body: list[str] = []
    for name, local_ts, remote_ts in conns:
        body += ["", f"conn {name}", *_conn_lines(peer, ike, child, pfs, local_ts, remote_ts)]
    lines = [f"# generated by ipseclab.lab.impls.libreswan for peer {peer.name}", "config setup", *setup, *body]
    return "\n".join(lines) + "\n"


def conn_names(peer: PeerConfig) -> list[str]:
    """The conns: ``name``, then ``name-2``, ... for ``extra_children`` (pluto shares the IKE SA between them)."""
    return [peer.name] + [f"{peer.name}-{i + 2}" for i in range(len(peer.extra_children))]


def _conn_lines(peer: PeerConfig, ike: list[str], child: list[str], pfs: bool,
                local_ts: tuple[IPNetwork, ...], remote_ts: tuple[IPNetwork, ...]) -> list[str]:
    """One conn's settings: the peer's and the given subnets (the first Child SA's or an extra one's)."""
    right = str(peer.remote_address) if peer.remote_address is not None else "%any"
    conn = [
        "\tikev2=yes",
        *auth_lines(peer),
        f"\tleft={peer.local_address}",
        f"\tleftid={identity(peer.effective_local_id)}",
    ]
    if peer.mode == "tunnel" and local_ts:
        conn.append(f"\tleftsubnet={local_ts[0]}")
    conn.append(f"\tleftupdown={peer.updown if peer.updown is not None else '%disabled'}")
    conn += [f"\tright={right}", f"\trightid={identity(peer.effective_remote_id)}"]
    if peer.mode == "tunnel" and remote_ts:
        conn.append(f"\trightsubnet={remote_ts[0]}")
    if peer.mode == "transport" and remote_ts:
        # the peer's own address where it is not right= (behind a NAT): pluto 4.10 compares TSi with it and
        # answers TS_UNACCEPTABLE otherwise (seen in tcp-transport-nat; rightsubnet=vhost:%priv did not help)
        conn.append(f"\trightsubnet={remote_ts[0]}")
    fuzz = round(100 * peer.rekey_jitter / peer.ike_rekey_margin)
    conn += [
        f"\tike={','.join(ike)}",
        f"\tphase2={peer.protocol}",
        f"\t{peer.protocol}={','.join(child)}",
        f"\tpfs={'yes' if pfs else 'no'}",
        f"\ttype={peer.mode}",
        f"\tencapsulation={_encapsulation(peer)}",
        f"\treplay-window={peer.replay_window}",
        f"\tesn={'yes' if peer.esn else 'no'}",
        *([f"\ttfc={peer.tfc_padding}"] if peer.tfc_padding else []),
        f"\tikelifetime={peer.ike_lifetime}s",
        f"\tsalifetime={peer.child_lifetime}s",
        f"\trekeymargin={peer.ike_rekey_margin}s",
        f"\trekeyfuzz={fuzz}%",
        f"\tfragmentation={peer.fragmentation}",
        "\tmobike=no",
    ]
    if not peer.rekey:
        conn.append("\trekey=no")
    if peer.reauth:
        conn.append("\treauth=yes")
    if peer.child_life_bytes:
        conn.append(f"\tipsec-max-bytes={peer.child_life_bytes}")
    if peer.retransmit_timeout is not None:
        conn.append(f"\tretransmit-interval={round(peer.retransmit_timeout * 1000)}")
    total = peer.retransmit_total()
    if total is not None:
        conn.append(f"\tretransmit-timeout={math.ceil(total)}s")
    if peer.dpd_delay:
        # IKEv2 liveness needs only dpddelay in 4.x (dpdtimeout is IKEv1's; 5.x warns that IKEv2 ignores it);
        # the peer is declared dead when retransmit-timeout runs out
        conn.append(f"\tdpddelay={peer.dpd_delay}s")
        conn.append(f"\tdpdaction={peer.dpd_action}")
    conn.append(f"\tauto={'start' if peer.auto_start else 'add'}")
    return conn


class LibreswanFiles(NamedTuple):
    ipsec_conf: Path
    ipsec_secrets: Path


def write_libreswan_config(peer: PeerConfig, directory: str | Path, *, log_path: str | Path,
                           secrets_path: str | Path | None = None) -> LibreswanFiles:
    """Write ``ipsec.conf`` and ``ipsec.secrets`` (mode 0600) into ``directory``.

    ``secrets_path`` is where pluto will find the secrets (a guest path), written into
    ``config setup``; both texts are rendered first, so a refused configuration writes nothing.
    """
    conf = render_ipsec_conf(peer, log_path=log_path, secrets_path=secrets_path)
    secrets = render_ipsec_secrets(peer)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = LibreswanFiles(d / "ipsec.conf", d / "ipsec.secrets")
    files.ipsec_conf.write_text(conf)
    write_private(files.ipsec_secrets, secrets)
    write_nss_files(peer, d)
    return files


def add_conns(cfg: PeerConfig) -> str:
    """The shell line that loads the peer's conns into pluto: what ``ipsec auto --add NAME`` ends in (addconn), for
    every conn at once."""
    return f"{LIBEXEC}/addconn --ctlsocket {PLUTO_CTL} --config /ipl/ipsec.conf {' '.join(conn_names(cfg))} || exit 1\n"


def forward_log() -> str:
    """Shell lines that copy what pluto logs from now on into this cell's ``/ipl/pluto.log`` (see PLUTO_LOG)."""
    return (f"o=$(stat -c %s {PLUTO_LOG} 2>/dev/null || echo 0); echo $o > {LOG_OFFSET}\n"
            f"tail -c +$((o + 1)) -F -s 0.05 {PLUTO_LOG} >> /ipl/pluto.log 2>/dev/null < /dev/null &\n"
            "unset o\n")


def wait_status(arms: str, tries: int, failure: str) -> str:
    """Shell lines that look at ``whack --status`` (one whack a look, its text in ``$t``) every 50 ms until one of
    the ``case`` ``arms`` breaks out, else after ``tries`` more looks print ``failure`` and exit 1."""
    return ("i=0; while :; do\n"
            f"  t=$({WHACK} --status 2>&1)\n"
            f"  case \"$t\" in {arms} esac\n"
            f"  [ $i -lt {tries} ] || {{ echo '{failure}'; exit 1; }}; ipl_sleep 0.05; i=$((i+1))\n"
            "done; unset t i\n")


def setup_section(conf: str) -> str:
    """The ``config setup`` section of an ipsec.conf text: what pluto reads at start only."""
    return conf.split("\nconn ", 1)[0]


# --- the driver -----------------------------------------------------------------------------

PLUTO_CTL = "/run/pluto/pluto.ctl"
PLUTO_PID = "/run/pluto/pluto.pid"
# pluto 4.10 cannot reopen its log file, so it writes one on the guest's tmpfs for as long as it runs, and a
# forwarder (tail -F, killed with everything else at each reset) copies each cell's part into that cell's /ipl
PLUTO_LOG = "/run/pluto/pluto.log"
LOG_OFFSET = "/run/pluto/log.offset"  # where in PLUTO_LOG the current cell's /ipl/pluto.log begins
LIBEXEC = "/usr/libexec/ipsec"  # where the ``ipsec`` wrapper finds the programs it execs
PLUTO = f"{LIBEXEC}/pluto"
WHACK = f"{LIBEXEC}/whack --ctlsocket {PLUTO_CTL}"
# what pluto 4.10 logs for an error notify in the IKE_SA_INIT response, which it drops (unauthenticated)
PLUTO_INIT_REFUSAL = "dropping unexpected IKE_SA_INIT message containing [A-Z_]* notification"


class LibreswanDriver:
    """Libreswan 4.10: pluto with its NSS database on the guest's tmpfs, controlled with whack."""

    impl = "libreswan"
    image: str | None = "libreswan"
    placement = "kernel"
    gives_ike_keys = False  # see docs/architecture.md
    probe_refusal = ""  # the guest kernel's xfrm counters
    expired_cert_refusal = EXPIRED_OWN  # so a refusal case gives the other side the expired certificate
    # seen in refuse-expired-cert libreswan->strongswan (2026-11-30); RFC 7296 2.21.2 makes the notify a MAY
    silent_initiator_refusal = ("Libreswan 4.10 as the initiator refuses it without a notify (pluto: \"NSS: ERROR: "
                                "... SEC_ERROR_EXPIRED_CERTIFICATE\", then \"deleting state (STATE_V2_PARENT_I2) ... "
                                "and NOT sending notification\"), so no AUTHENTICATION_FAILED reaches the trace")
    daemon: str | None = "pluto"
    actions = frozenset({"rekey", "child", "kill", "revive", "shell"})

    def check_topology(self, kind: str) -> None:
        return None  # direct and NAT: both daemons do NAT-T

    def check_supported(self, cfg: PeerConfig, topology: str = "direct") -> None:
        if topology == "nat" and cfg.mode == "transport" and cfg.role == "responder" and not cfg.remote_ts:
            # seen in tcp-transport-nat (2026-11-30): without rightsubnet= naming the initiator's own address, pluto
            # answers IKE_AUTH with N(TS_UNACCEPTABLE) to an initiator whose TSi is its address behind the NAT
            raise ConfigError("Libreswan 4.10 refuses (TS_UNACCEPTABLE) an IKEv2 transport-mode initiator behind "
                              "a NAT unless rightsubnet names the initiator's own address (remote_ts)")
        render_ipsec_conf(cfg, log_path="/ipl/pluto.log")
        render_ipsec_secrets(cfg)

    def check_pair(self, cfg: PeerConfig, topology: str, peer: str) -> None:
        """What Libreswan cannot do with this particular peer (the contract's optional pair check)."""
        if topology == "nat" and cfg.mode == "transport" and cfg.role == "initiator" and peer.startswith("strongswan"):
            # seen in tcp-transport-nat (2026-11-30): strongSwan answers with TSi narrowed to the NAT's address
            # (RFC 7296 2.23.1), which pluto 4.10 rejects, also when strongSwan's remote_ts names the initiator's
            # own address; with ipseclab as responder the cell passes
            raise ConfigError("Libreswan 4.10 as a transport-mode initiator behind a NAT rejects strongSwan's "
                              "IKE_AUTH answer, whose TSi strongSwan narrowed to the NAT's address (pluto: "
                              "'CHILD SA failed: TS_UNACCEPTABLE', 'IKE SA established but initiator rejected "
                              "Child SA response')")

    def write_config(self, cfg: PeerConfig, directory: Path) -> None:
        write_libreswan_config(cfg, directory, log_path="/ipl/pluto.log")

    def start_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        """The NSS database, pluto (which adds the conns itself, see ``_launch``) and its listening sockets (the
        lab's network batch has added the routes): the programs themselves, not the ``ipsec`` wrapper scripts
        (under UML every fork and exec costs tens of milliseconds, and ``ipsec auto --add`` is three shell scripts
        before it execs addconn; ``ipsec initnss`` is ``certutil -N --empty-password``).
        With ``log_keys`` pluto starts with ``--debug none`` (after ``--config``, so it overrides ``plutodebug``) and
        whack turns the key-logging debug on once it listens: at start-up pluto runs its algorithms' self-tests, whose
        crypt/private dump is some 4,700 log lines on hostfs (0.6 s of a 1 s start, seen 2026-11-30)."""
        return (
            f"mkdir -p /run/pluto {NSS_DIR}\n"
            + f"certutil -N -d sql:{NSS_DIR} --empty-password > /ipl/initnss.log 2>&1 || exit 1\n"
            + nss_lines(cfg)
            + forward_log()
            + self._launch(cfg)
        )

    def revive_script(self, cfg: PeerConfig, host: HostAddressing, dev: str = "vec0") -> str:
        """pluto again after a kill, on the NSS database it had (``certutil -N`` refuses one that exists) and with
        the log forwarder still running (it follows PLUTO_LOG, which pluto appends to): its lock file and
        control socket removed first (pluto refuses to start while the lock file is there)."""
        return f"rm -f {PLUTO_PID} {PLUTO_CTL}\n" + self._launch(cfg)

    def _launch(self, cfg: PeerConfig) -> str:
        """pluto's start, once its NSS database is made: listening, key logging, and a wait until it holds the
        conns.  pluto 4.10 adds the ``auto=add`` conns of its ``--config`` itself as it starts, and already takes
        whack's requests meanwhile (its control socket comes first): an ``addconn`` of them replaced each one
        ("terminating SAs using this connection"), which once killed an IKE SA the other peer had set up on the conn
        pluto added (a CI run, 2026-12-01), and without a wait the lab's ``whack --initiate`` once came before pluto
        had added them ("no connection named"); so the start adds none and waits for ``whack --status`` to count
        them (one look as a rule; a reload, whose drop deleted them, adds them)."""
        n = len(conn_names(cfg))
        return (
            f"{PLUTO} --config /ipl/ipsec.conf --nssdir {NSS_DIR} --rundir /run/pluto "
              f"--secretsfile /ipl/ipsec.secrets --logfile {PLUTO_LOG}"
            + (" --debug none" if cfg.log_keys else "") + " || exit 1\n"
            + WAIT_FOR.format(path=PLUTO_CTL, what="pluto")
            + f"{WHACK} --listen\n"
            + (f"{WHACK} {' '.join(f'--debug {c}' for c in KEY_DEBUG.split())} || exit 1\n" if cfg.log_keys else "")
            + wait_status(f"*'Total IPsec connections: loaded {n},'*) break;;", 200,
                          "pluto did not add its conns (see pluto.log)")
        )

    def drop_script(self, cfg: PeerConfig, dev: str = "vec0") -> str:
        """Delete the cell's conns (their states with them, so pluto cannot revive them), the guest's global
        addresses gone first so that no Delete leaves it; then wait until pluto holds no state and no conn, and until
        the forwarder has copied pluto's log of the cell into its /ipl."""
        names = " ".join(conn_names(cfg))
        return (require_daemon(PLUTO_PID, "pluto") +
                f"ip addr flush dev {dev} scope global\n"
                f"for c in {names}; do {WHACK} --delete --name $c >/dev/null 2>&1; done\n"
                # --status lists every state (a "000 #N:" line) and counts the conns
                + wait_status("*$'\\n'\"000 #\"*) ;; *'Total IPsec connections: loaded 0,'*) break;;", 40,
                              "pluto still holds states or conns") +
                f"read -r o < {LOG_OFFSET}; n=$(($(stat -c %s {PLUTO_LOG}) - o)); i=0\n"
                "while [ \"$(stat -c %s /ipl/pluto.log 2>/dev/null || echo 0)\" -lt $n ]; do\n"
                "  [ $i -lt 40 ] || { echo 'pluto.log not copied'; exit 1; }; ipl_sleep 0.05; i=$((i+1)); done\n"
                "unset t n i o\n")

    def reload(self, old: PeerConfig, new: PeerConfig, old_dir: Path, new_dir: Path, host: HostAddressing,
               dev: str = "vec0") -> Reload | None:
        """pluto keeps running from one cell to the next when what it read at start is the same: the ``config
        setup`` section of the new ``ipsec.conf`` is the old one's (log and debug settings, secrets file), and neither
        cell has certificates (the NSS database stays as ``certutil -N`` made it).  ``load`` then starts the log
        forwarder, has pluto look at the interfaces again (the reset flushed and gave back their addresses), rereads
        the secrets and adds the new conns: what ``start_script`` does after pluto started."""
        if nss_lines(old) or nss_lines(new):
            return None
        try:
            same = setup_section((old_dir / "ipsec.conf").read_text()) == setup_section(
                (new_dir / "ipsec.conf").read_text())
        except OSError:
            return None
        if not same:
            return None
        load = (forward_log()
                # one whack for both (a message carries every request; pluto 4.10's --listen rereads the
                # secrets itself too): an exec of whack costs a UML guest ~20 CPU-ms
                + f"{WHACK} --listen --rereadsecrets || exit 1\n"
                + add_conns(new))
        return Reload(PLUTO_PID, "/run/pluto|/run/nss", load)

    def initiate(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        rc, out = host.exec(f"timeout {int(timeout)} {WHACK} --initiate --name {cfg.name}",
                            timeout=timeout + 10, check=False)
        if rc != 0 or ("established Child SA" not in out and "IPsec SA established" not in out):
            raise LabError("Libreswan could not establish the SA", command=["ipsec", "whack", "--initiate"],
                           output=out, hint=f"see {host.dir}/pluto.log")
        return out

    def initiate_refused(self, host: UmlHost, cfg: PeerConfig, timeout: float) -> str:
        """``initiate``, ended (whack killed) once pluto logs the refusal in the IKE_SA_INIT response that it drops
        (unauthenticated; it keeps retransmitting until its own timeout): LabError quoting pluto's line."""
        script = (f"n=$(cat /ipl/pluto.log 2>/dev/null | wc -l)\n"
                  f"timeout {int(timeout)} {WHACK} --initiate --name {cfg.name} "
                  "> /run/initiate.out 2>&1 & w=$!\n"
                  "seen=''\n"
                  "while kill -0 $w 2>/dev/null; do\n"
                  f"  seen=$(tail -n +$((n + 1)) /ipl/pluto.log | grep -m1 '{PLUTO_INIT_REFUSAL}')\n"
                  "  [ -n \"$seen\" ] && { kill $w; break; }\n"
                  "  ipl_sleep 0.1\n"
                  "done\n"
                  "wait $w; rc=$?\n"
                  "cat /run/initiate.out\n"
                  "[ -n \"$seen\" ] && echo \"refusal seen: $seen\"\n"
                  "exit $rc\n")
        rc, out = host.exec(script, timeout=timeout + 10, check=False)
        seen = next((line for line in out.splitlines() if line.startswith("refusal seen: ")), "")
        if seen:
            raise LabError(f"Libreswan received the refusal (and keeps waiting, as RFC 7296 2.21.1 lets it): "
                           f"{seen.removeprefix('refusal seen: ')}", hint=f"see {host.dir}/pluto.log")
        if rc != 0 or ("established Child SA" not in out and "IPsec SA established" not in out):
            raise LabError("Libreswan could not establish the SA", command=["ipsec", "whack", "--initiate"],
                           output=out, hint=f"see {host.dir}/pluto.log")
        return out

    def initiate_child(self, host: UmlHost, cfg: PeerConfig, name: str, timeout: float) -> str:
        """Start the conn ``name`` (``<cfg.name>-2``, ...): pluto puts it under the IKE SA already up."""
        rc, out = host.exec(f"timeout {int(timeout)} {WHACK} --initiate --name {name}",
                            timeout=timeout + 10, check=False)
        if rc != 0 or ("established Child SA" not in out and "IPsec SA established" not in out):
            raise LabError(f"Libreswan could not establish the Child SA {name}", command=["ipsec", "whack"],
                           output=out, hint=f"see {host.dir}/pluto.log")
        return out

    def rekey(self, host: UmlHost, cfg: PeerConfig, what: str, timeout: float) -> str:
        """Rekey the conn's Child SA (``what="child"``) or its IKE SA (``"ike"``) now."""
        flag = "--rekey-ipsec" if what == "child" else "--rekey-ike"
        rc, out = host.exec(f"timeout {int(timeout)} {WHACK} {flag} --name {cfg.name}",
                            timeout=timeout + 10, check=False)
        if rc != 0:
            raise LabError(f"Libreswan refused to rekey the {what} SA", command=["ipsec", "whack", flag],
                           output=out, hint=f"see {host.dir}/pluto.log")
        return out

    def ike_keys(self, directory: Path) -> list[StrongswanIkeKeys]:
        return []  # Libreswan's IKE keys: see docs/architecture.md (the strongSwan side supplies them)

    def counters(self, host: Any, snapshot: str | None = None) -> dict[str, Any]:
        return kernel_counters(host, snapshot)

    def wait_installed(self, host: Any, cfg: PeerConfig, timeout: float) -> None:
        return None  # pluto installs the Child SA before it answers IKE_AUTH

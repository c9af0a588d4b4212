#!/usr/bin/env python3
"""Regenerate the strongSwan IKEv2 capture fixtures kept in ``pcaps/``.

Why this exists
---------------
ipseclab's IKEv2 codec and key schedule must be checked against traffic made by an
independent, widely deployed implementation, not only against our own output (a codec
that agrees with itself proves little).  This script makes such fixtures: it runs two
real strongSwan ``charon`` daemons against each other, captures their IKEv2 exchanges
(IKE_SA_INIT, IKE_AUTH, INFORMATIONAL liveness check and DELETE) with tcpdump, and
takes from charon's own level-4 log the keys strongSwan derived (g^ir, SKEYSEED,
SK_d/ai/ar/ei/er/pi/pr and the Child SA keys).  Nothing here computes a key: every
value written comes from strongSwan's log or from the capture.

Outputs, per suite NAME (see ``SUITES``), in the directory of this file:

* ``NAME.pcap``                   the IKE traffic (UDP 500 and 4500) seen on the initiator's veth
* ``NAME.ikev2_decryption_table`` one row in Wireshark's ``ikev2_decryption_table`` UAT format
* ``NAME.keys.log``               the lines of both charon logs that carry the derived keys

and ``tests/vectors/strongswan_kdf.json`` (one vector per IKE SA), plus the generated
section of ``pcaps/README.md`` (packet list and tshark command of each capture).

How it runs (root only; only for regenerating fixtures, CI never runs it):

* two network namespaces ``ipl-fx-i<pid>`` and ``ipl-fx-r<pid>`` joined by a veth pair
  (198.51.100.1/24 and 198.51.100.2/24; traffic selectors 203.0.113.1/32 and
  203.0.113.2/32 on ``lo``), nothing routed out of them;
* one ``/usr/lib/ipsec/charon`` per namespace, in the foreground, each in its own mount
  namespace (``unshare --mount`` + a tmpfs on /run, so the two pid files do not clash),
  with its own ``STRONGSWAN_CONF`` (explicit plugin list, ``kernel-libipsec`` before
  ``kernel-netlink`` because the host kernel has XFRM but no ESP) and its own vici socket
  (``swanctl --uri``);
* everything is torn down in ``finally`` blocks: charons and tcpdump are stopped by pid
  and the namespaces deleted, even on error.

Needs: strongswan-charon strongswan-swanctl libstrongswan-standard-plugins
libstrongswan-extra-plugins libcharon-extra-plugins (strongSwan 5.9.8), tcpdump,
iproute2, util-linux; tshark (optional: without it, or with ``--no-verify``, the decryption check is skipped).

Usage::

    sudo python3 pcaps/make_strongswan_captures.py            # all suites, verify with tshark
    sudo python3 pcaps/make_strongswan_captures.py --list
    sudo python3 pcaps/make_strongswan_captures.py --suite strongswan-aes256-sha256-modp2048
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VECTORS = REPO / "tests" / "vectors" / "strongswan_kdf.json"
README = HERE / "README.md"

CHARON = "/usr/lib/ipsec/charon"
NS_PREFIX = "ipl-fx-"
VETH_I = "fxi0"
VETH_R = "fxr0"
ADDR_I = "198.51.100.1"
ADDR_R = "198.51.100.2"
PREFIXLEN = 24
TS_I = "203.0.113.1"
TS_R = "203.0.113.2"
LAB_NETS = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"))
ID_I = "initiator.ipseclab.test"
ID_R = "responder.ipseclab.test"
# A fixed, public, fixture-only pre-shared key: the captures are meant to be decrypted.
PSK = "ipseclab-fixture-psk-not-a-secret"
CONN = "fx"
DPD_DELAY_S = 2
CHARON_PLUGINS = (
    "random nonce openssl aes sha1 sha2 hmac xcbc cmac gcm chapoly curve25519 gmp kdf "
    "pem pkcs1 pubkey x509 kernel-libipsec kernel-netlink socket-default vici"
)
SWANCTL_PLUGINS = "pem pkcs1 x509 pubkey openssl random nonce"


@dataclasses.dataclass(frozen=True)
class Suite:
    """One capture: the proposals configured on both peers and their IANA/Wireshark names."""

    name: str
    ike_proposal: str
    esp_proposal: str
    encr_id: int  # IKEv2 transform type 1 id
    encr_key_bits: int
    prf_id: int  # transform type 2
    integ_id: int | None  # transform type 3, None for AEAD
    dh_group: int  # transform type 4
    esp_encr_id: int
    esp_encr_key_bits: int
    esp_integ_id: int | None
    ws_encr: str | None  # Wireshark 4.0 ikev2_decryption_table name, None if unsupported
    ws_integ: str
    fragment_size: int = 0  # charon.fragment_size; 0 = leave strongSwan's default
    fragmentation: bool = False
    fallback: Suite | None = None  # tried when strongSwan rejects this one
    note: str = ""


SUITES: tuple[Suite, ...] = (
    Suite(
        name="strongswan-aes256gcm16-prfsha256-ecp256",
        ike_proposal="aes256gcm16-prfsha256-ecp256",
        esp_proposal="aes256gcm16",
        encr_id=20,
        encr_key_bits=256,
        prf_id=5,
        integ_id=None,
        dh_group=19,
        esp_encr_id=20,
        esp_encr_key_bits=256,
        esp_integ_id=None,
        ws_encr="AES-GCM-256 with 16 octet ICV [RFC5282]",
        ws_integ="NONE [RFC4306]",
    ),
    Suite(
        name="strongswan-aes256-sha256-modp2048",
        ike_proposal="aes256-sha256-modp2048",
        esp_proposal="aes128-sha256",
        encr_id=12,
        encr_key_bits=256,
        prf_id=5,
        integ_id=12,
        dh_group=14,
        esp_encr_id=12,
        esp_encr_key_bits=128,
        esp_integ_id=12,
        ws_encr="AES-CBC-256 [RFC3602]",
        ws_integ="HMAC_SHA2_256_128 [RFC4868]",
    ),
    Suite(
        name="strongswan-aes128-sha1-prfaesxcbc-modp2048",
        ike_proposal="aes128-sha1-prfaesxcbc-modp2048",
        esp_proposal="aes128-sha1",
        encr_id=12,
        encr_key_bits=128,
        prf_id=4,
        integ_id=2,
        dh_group=14,
        esp_encr_id=12,
        esp_encr_key_bits=128,
        esp_integ_id=2,
        ws_encr="AES-CBC-128 [RFC3602]",
        ws_integ="HMAC_SHA1_96 [RFC2404]",
        fallback=Suite(
            name="strongswan-aes128-sha1-modp2048",
            ike_proposal="aes128-sha1-modp2048",
            esp_proposal="aes128-sha1",
            encr_id=12,
            encr_key_bits=128,
            prf_id=2,
            integ_id=2,
            dh_group=14,
            esp_encr_id=12,
            esp_encr_key_bits=128,
            esp_integ_id=2,
            ws_encr="AES-CBC-128 [RFC3602]",
            ws_integ="HMAC_SHA1_96 [RFC2404]",
        ),
    ),
    Suite(
        name="strongswan-chacha20poly1305-prfsha256-x25519",
        ike_proposal="chacha20poly1305-prfsha256-x25519",
        esp_proposal="chacha20poly1305",
        encr_id=28,
        encr_key_bits=256,
        prf_id=5,
        integ_id=None,
        dh_group=31,
        esp_encr_id=28,
        esp_encr_key_bits=256,
        esp_integ_id=None,
        ws_encr=None,
        ws_integ="NONE [RFC4306]",
        note="Wireshark 4.0 has no ChaCha20-Poly1305 in its IKEv2 decryption table.",
    ),
    Suite(
        name="strongswan-aes256-sha256-modp2048-frag",
        ike_proposal="aes256-sha256-modp2048",
        esp_proposal="aes256-sha256",
        encr_id=12,
        encr_key_bits=256,
        prf_id=5,
        integ_id=12,
        dh_group=14,
        esp_encr_id=12,
        esp_encr_key_bits=256,
        esp_integ_id=12,
        ws_encr="AES-CBC-256 [RFC3602]",
        ws_integ="HMAC_SHA2_256_128 [RFC4868]",
        fragment_size=200,
        fragmentation=True,
        note="IKE_AUTH sent as RFC 7383 Encrypted Fragment (SKF) payloads.",
    ),
)

# Labels of charon's DBG4 hex dumps (keymat_v2.c) -> vector field.
IKE_KEY_LABELS = {
    "shared Diffie Hellman secret": "g_ir",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d",
    "Sk_ai secret": "sk_ai",
    "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei",
    "Sk_er secret": "sk_er",
    "Sk_pi secret": "sk_pi",
    "Sk_pr secret": "sk_pr",
}
AUTH_LABELS = {
    "IDx'": "idx",
    "SK_p": "sk_p",
    "octets = message + nonce + prf(Sk_px, IDx')": "octets",
    "secret": "psk",
    "prf(secret, keypad)": "prf_psk_keypad",
    "AUTH = prf(prf(secret, keypad), octets)": "auth",
}
CHILD_KEY_LABELS = {
    "encryption initiator key": "encr_i",
    "integrity initiator key": "integ_i",
    "encryption responder key": "encr_r",
    "integrity responder key": "integ_r",
}


class FixtureError(RuntimeError):
    """A step of the capture run failed."""


class ProposalRejected(FixtureError):
    """strongSwan refused the suite (config not loaded or negotiation failed): try its fallback."""


def log(msg: str) -> None:
    print(f"[make_strongswan_captures] {msg}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run an argument list (never a shell string) and capture its output."""
    proc = subprocess.run(list(cmd), env=env, timeout=timeout, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise FixtureError(f"{' '.join(cmd)} -> rc {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


# --------------------------------------------------------------------------------------
# Preflight
# --------------------------------------------------------------------------------------


def preflight() -> None:
    if os.geteuid() != 0:
        raise FixtureError("must run as root (network namespaces, tcpdump, charon)")
    for tool in ("ip", "unshare", "mount", "tcpdump", "swanctl"):
        if shutil.which(tool) is None:
            raise FixtureError(f"missing tool: {tool}")
    if not os.access(CHARON, os.X_OK):
        raise FixtureError(f"missing {CHARON}: apt-get install strongswan-charon ...")
    # The lab must never shadow anything the host itself uses.
    for cmd in (["ip", "-o", "route", "show", "table", "all"], ["ip", "-o", "addr", "show"]):
        for line in run(cmd).stdout.splitlines():
            for word in line.split():
                try:
                    net = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if any(net.overlaps(lab) for lab in LAB_NETS):
                    raise FixtureError(f"host already uses a lab range: {line.strip()}")


# --------------------------------------------------------------------------------------
# Configuration files
# --------------------------------------------------------------------------------------


def strongswan_conf(vici: Path, logfile: Path, fragment_size: int) -> str:
    frag = f"    fragment_size = {fragment_size}\n" if fragment_size else ""
    return f"""# generated by pcaps/make_strongswan_captures.py
charon {{
    load_modular = no
    load = {CHARON_PLUGINS}
    # kernel-libipsec keeps 9 worker threads busy (TUN reader, ESP processor, ...):
    # with 8 threads no worker is left for vici and swanctl hangs. 16 is the default.
    threads = 16
    # no NAT keep-alives: kernel-libipsec fakes a NAT to force UDP encapsulation
    keep_alive = 0s
{frag}    plugins {{
        vici {{
            socket = unix://{vici}
        }}
    }}
    filelog {{
        fixture {{
            path = {logfile}
            append = no
            flush_line = yes
            ike_name = yes
            default = 1
            # level 4 for ike and chd: charon logs the derived keys (keymat_v2.c)
            ike = 4
            chd = 4
        }}
    }}
}}
swanctl {{
    load = {SWANCTL_PLUGINS}
}}
"""


def swanctl_conf(suite: Suite, *, initiator: bool) -> str:
    local, remote = (ADDR_I, ADDR_R) if initiator else (ADDR_R, ADDR_I)
    lts, rts = (TS_I, TS_R) if initiator else (TS_R, TS_I)
    lid, rid = (ID_I, ID_R) if initiator else (ID_R, ID_I)
    dpd = f"{DPD_DELAY_S}s" if initiator else "0s"
    # swanctl.conf: one setting per line (a one-line "local { auth = psk id = x }" is rejected)
    return f"""# generated by pcaps/make_strongswan_captures.py
connections {{
    {CONN} {{
        version = 2
        local_addrs = {local}
        remote_addrs = {remote}
        proposals = {suite.ike_proposal}
        fragmentation = {"yes" if suite.fragmentation else "no"}
        mobike = no
        dpd_delay = {dpd}
        local {{
            auth = psk
            id = {lid}
        }}
        remote {{
            auth = psk
            id = {rid}
        }}
        children {{
            {CONN} {{
                local_ts = {lts}/32
                remote_ts = {rts}/32
                esp_proposals = {suite.esp_proposal}
                mode = tunnel
            }}
        }}
    }}
}}
secrets {{
    ike-{CONN} {{
        id-i = {ID_I}
        id-r = {ID_R}
        secret = "{PSK}"
    }}
}}
"""


# --------------------------------------------------------------------------------------
# The lab: namespaces, daemons, capture; always torn down
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Side:
    role: str  # "i" or "r"
    netns: str
    veth: str
    addr: str
    ts: str
    dir: Path
    conf: Path
    swanctl: Path
    vici: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"unix://{self.vici}"

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "STRONGSWAN_CONF": str(self.conf),
            "SWANCTL_DIR": str(self.dir),
        }


class Lab:
    """Two namespaces, two charons and a tcpdump for one suite."""

    def __init__(self, suite: Suite, workdir: Path) -> None:
        self.suite = suite
        self.workdir = workdir
        tag = str(os.getpid())
        self.sides: dict[str, Side] = {}
        for role, veth, addr, ts in (("i", VETH_I, ADDR_I, TS_I), ("r", VETH_R, ADDR_R, TS_R)):
            d = workdir / role
            d.mkdir(parents=True, exist_ok=True)
            self.sides[role] = Side(
                role,
                f"{NS_PREFIX}{role}{tag}",
                veth,
                addr,
                ts,
                d,
                d / "strongswan.conf",
                d / "swanctl.conf",
                d / "charon.vici",
                d / "charon.log",
            )
        self.created_ns: list[str] = []
        self.tcpdump: subprocess.Popen[bytes] | None = None
        self.pcap = workdir / "capture.pcap"
        self.tcpdump_err = workdir / "tcpdump.stderr"

    # -- network --------------------------------------------------------------------
    def setup_network(self) -> None:
        i, r = self.sides["i"], self.sides["r"]
        existing = run(["ip", "netns", "list"]).stdout
        for side in (i, r):
            if re.search(rf"^{re.escape(side.netns)}\b", existing, re.M):
                raise FixtureError(f"namespace {side.netns} already exists")
            run(["ip", "netns", "add", side.netns])
            self.created_ns.append(side.netns)
        run(["ip", "link", "add", i.veth, "netns", i.netns, "type", "veth", "peer", "name", r.veth, "netns", r.netns])
        for side in (i, r):
            ns = ["ip", "-n", side.netns]
            run([*ns, "link", "set", "lo", "up"])
            run([*ns, "addr", "add", f"{side.ts}/32", "dev", "lo"])
            run([*ns, "addr", "add", f"{side.addr}/{PREFIXLEN}", "dev", side.veth])
            run([*ns, "link", "set", side.veth, "up"])
            # no IPv6 on the veth: keeps the capture to the IKE traffic and nothing else
            run(
                ["ip", "netns", "exec", side.netns, "sysctl", "-q", "-w", f"net.ipv6.conf.{side.veth}.disable_ipv6=1"],
                check=False,
            )

    # -- daemons --------------------------------------------------------------------
    def write_configs(self) -> None:
        for side in self.sides.values():
            side.conf.write_text(strongswan_conf(side.vici, side.log, self.suite.fragment_size))
            side.swanctl.write_text(swanctl_conf(self.suite, initiator=side.role == "i"))

    def start_charon(self, side: Side) -> None:
        out = (side.dir / "charon.stdout").open("wb")
        cmd = [
            "ip",
            "netns",
            "exec",
            side.netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            str(Path(__file__).resolve()),
            "--exec-charon",
            str(side.conf),
        ]
        # ip netns exec, unshare and the helper all exec(): the pid is charon's own.
        side.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()

    def wait_vici(self, side: Side, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if side.proc is not None and side.proc.poll() is not None:
                raise FixtureError(
                    f"charon ({side.role}) exited: rc {side.proc.returncode}; "
                    f"see {side.dir / 'charon.stdout'} and {side.log}"
                )
            if side.vici.exists():
                proc = run(["swanctl", "--stats", "--uri", side.uri], env=side.env(), check=False)
                if proc.returncode == 0:
                    return
            time.sleep(0.2)
        raise FixtureError(f"charon ({side.role}) vici socket not ready after {timeout}s")

    def swanctl(self, side: Side, *args: str, timeout: float = 60) -> str:
        proc = run(["swanctl", *args, "--uri", side.uri], env=side.env(), timeout=timeout)
        return proc.stdout

    # -- capture --------------------------------------------------------------------
    def start_tcpdump(self) -> None:
        i = self.sides["i"]
        err = self.tcpdump_err.open("wb")
        self.tcpdump = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                i.netns,
                "tcpdump",
                "-i",
                i.veth,
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-w",
                str(self.pcap),
                "udp port 500 or udp port 4500",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        err.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if "listening on" in self.tcpdump_err.read_text(errors="replace"):
                return
            if self.tcpdump.poll() is not None:
                raise FixtureError(f"tcpdump exited: {self.tcpdump_err.read_text()}")
            time.sleep(0.1)
        raise FixtureError("tcpdump did not start listening")

    # -- teardown -------------------------------------------------------------------
    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, sig: int, what: str) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{what} (pid {proc.pid}) did not stop, killing it")
            proc.kill()
            proc.wait(timeout=10)

    def stop_tcpdump(self) -> None:
        self._stop(self.tcpdump, signal.SIGINT, "tcpdump")

    def teardown(self) -> None:
        errors: list[str] = []
        for step in (
            self.stop_tcpdump,
            lambda: self._stop(self.sides["i"].proc, signal.SIGTERM, "charon i"),
            lambda: self._stop(self.sides["r"].proc, signal.SIGTERM, "charon r"),
        ):
            try:
                step()
            except Exception as exc:  # keep tearing down whatever happens
                errors.append(repr(exc))
        for ns in reversed(self.created_ns):
            proc = run(["ip", "netns", "delete", ns], check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns delete {ns}: {proc.stderr.strip()}")
        self.created_ns.clear()
        if errors:
            log("teardown problems: " + "; ".join(errors))


def wait_for_log(path: Path, pattern: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if path.exists() and rx.search(path.read_text(errors="replace")):
            return True
        time.sleep(0.2)
    return False


def run_lab(suite: Suite, workdir: Path) -> Lab:
    """Bring the lab up, negotiate, check liveness, delete, and tear everything down."""
    lab = Lab(suite, workdir)
    try:
        lab.setup_network()
        lab.write_configs()
        for role in ("r", "i"):
            lab.start_charon(lab.sides[role])
        for role in ("r", "i"):
            lab.wait_vici(lab.sides[role])
        for role in ("r", "i"):
            try:
                lab.swanctl(lab.sides[role], "--load-all", "--file", str(lab.sides[role].swanctl))
            except FixtureError as exc:
                raise ProposalRejected(f"swanctl --load-all ({role}) failed: {exc}") from exc
        lab.start_tcpdump()
        i = lab.sides["i"]
        try:
            out = lab.swanctl(i, "--initiate", "--child", CONN, "--timeout", "30", timeout=60)
        except FixtureError as exc:
            raise ProposalRejected(f"initiate failed: {exc}") from exc
        if "initiate completed successfully" not in out:
            raise ProposalRejected(f"initiate failed:\n{out}")
        # INFORMATIONAL #1: the initiator's DPD liveness check (empty INFORMATIONAL request)
        if not wait_for_log(i.log, r"parsed INFORMATIONAL response \d+ \[ \]", DPD_DELAY_S * 4 + 5):
            log("warning: no DPD liveness exchange seen")
        # INFORMATIONAL #2: DELETE of the IKE SA
        lab.swanctl(i, "--terminate", "--ike", CONN, "--timeout", "15", timeout=60)
        wait_for_log(lab.sides["r"].log, r"IKE_SA .* deleted|deleting IKE_SA", 5)
        time.sleep(0.5)
        lab.stop_tcpdump()
    finally:
        lab.teardown()
    return lab


def exec_charon(conf: str) -> NoReturn:
    """Helper mode, run inside ``ip netns exec NS unshare --mount``: private /run, exec charon."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "ipl-fx-run", "/run"], check=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF": conf}
    os.execve(CHARON, [CHARON], env)


# --------------------------------------------------------------------------------------
# charon log parsing
# --------------------------------------------------------------------------------------

_DUMP_HEAD = re.compile(r"\] (?:<[^>]*> )?(?P<label>\S.*?) => (?P<n>\d+) bytes @ \S+\s*$")
_DUMP_ROW = re.compile(r"\] (?:<[^>]*> )?\s*(?P<off>\d+): (?P<hex>(?:[0-9A-F]{2} ){1,16})")


@dataclasses.dataclass(frozen=True)
class Dump:
    """One ``label => N bytes @ 0x...`` hex dump of a charon log (lines first..last)."""

    label: str
    data: bytes
    first: int
    last: int


def parse_dumps(text: str) -> list[Dump]:
    """All hex dumps (charon's ``%B`` format) of a charon log."""
    lines = text.splitlines()
    dumps: list[Dump] = []
    idx = 0
    while idx < len(lines):
        head = _DUMP_HEAD.search(lines[idx])
        if not head:
            idx += 1
            continue
        label, size, first = head.group("label").strip(), int(head.group("n")), idx
        data = bytearray()
        idx += 1
        while len(data) < size and idx < len(lines):
            row = _DUMP_ROW.search(lines[idx])
            if not row or int(row.group("off")) != len(data):
                break
            data += bytes.fromhex(row.group("hex").replace(" ", ""))
            idx += 1
        if len(data) != size:
            raise FixtureError(f"truncated hex dump for {label!r}: {len(data)}/{size} bytes")
        dumps.append(Dump(label, bytes(data), first, idx - 1))
    return dumps


@dataclasses.dataclass
class LogKeys:
    """What one charon log says about the run's single IKE SA and Child SA."""

    ike: dict[str, bytes]
    child: dict[str, bytes]
    # PSK AUTH computations (keymat_v2.c get_psk_sig), in log order: charon dumps one for the
    # AUTH it sends and one for the AUTH it verifies.
    auth: list[dict[str, bytes]]
    kept: set[int]  # line numbers of the dumps above


def extract_keys(text: str) -> LogKeys:
    out = LogKeys({}, {}, [], set())
    for d in parse_dumps(text):
        if d.label in IKE_KEY_LABELS:
            target, key = out.ike, IKE_KEY_LABELS[d.label]
        elif d.label in CHILD_KEY_LABELS:
            target, key = out.child, CHILD_KEY_LABELS[d.label]
        elif d.label in AUTH_LABELS:
            key = AUTH_LABELS[d.label]
            if key == "idx":
                out.auth.append({})
            if not out.auth:
                continue
            target = out.auth[-1]
        elif d.label == "seed" and "[CHD]" in text.splitlines()[d.first]:
            target, key = out.child, "seed"
        else:
            continue
        if key in target:
            raise FixtureError(f"{d.label!r} logged twice: expected one IKE SA per run")
        target[key] = d.data
        out.kept.update(range(d.first, d.last + 1))
    return out


def extract_child_spis(text: str) -> tuple[str, str]:
    """(initiator's SPI, responder's SPI) from the initiator's 'established with SPIs' line."""
    m = re.search(r"CHILD_SA \S+ established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o", text)
    if not m:
        raise FixtureError("no 'CHILD_SA ... established with SPIs' line in the initiator log")
    return m.group(1), m.group(2)


_CONTEXT = re.compile(
    r"Starting IKE charon|selected proposal|established|parsed |generating |"
    r"sending packet|received packet|faking NAT|splitting|received fragment|"
    r"reassembled|deleting|deleted|SPIs|sending DPD|authentication of|"
    r"using \S+ for (encryption|integrity)"
)


def trimmed_log(text: str, kept: set[int]) -> list[str]:
    """The key dumps plus the lines that say what happened (proposals, messages, SA state)."""
    return [ln for n, ln in enumerate(text.splitlines()) if n in kept or (_CONTEXT.search(ln) and "=>" not in ln)]


# --------------------------------------------------------------------------------------
# pcap parsing (stdlib): IKEv2 messages on UDP 500 / 4500
# --------------------------------------------------------------------------------------

EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
PAYLOADS = {
    33: "SA",
    34: "KE",
    35: "IDi",
    36: "IDr",
    37: "CERT",
    38: "CERTREQ",
    39: "AUTH",
    40: "Ni/Nr",
    41: "N",
    42: "D",
    43: "V",
    44: "TSi",
    45: "TSr",
    46: "SK",
    47: "CP",
    48: "EAP",
    53: "SKF",
}
NOTIFIES = {
    16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP",
    16404: "MULTIPLE_AUTH_SUPPORTED",
    16406: "REDIRECT_SUPPORTED",
    16418: "CHILDLESS_IKEV2_SUPPORTED",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED",
    16431: "SIGNATURE_HASH_ALGORITHMS",
}


@dataclasses.dataclass
class IkePacket:
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    non_esp_marker: bool
    ispi: bytes
    rspi: bytes
    exchange: int
    flags: int
    msgid: int
    length: int
    payloads: list[tuple[int, bytes]]  # (type, body) of the top-level payloads

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x20)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & 0x08)

    def payload(self, ptype: int) -> bytes | None:
        for t, body in self.payloads:
            if t == ptype:
                return body
        return None

    def summary(self) -> str:
        names = []
        for t, body in self.payloads:
            if t == 53 and len(body) >= 4:
                num, total = struct.unpack("!HH", body[:4])
                names.append(f"SKF {num}/{total}")
            elif t == 40:
                names.append("Ni" if self.from_initiator else "Nr")
            elif t == 41 and len(body) >= 4:
                ntype = struct.unpack("!H", body[2:4])[0]
                names.append(f"N({NOTIFIES.get(ntype, ntype)})")
            else:
                names.append(PAYLOADS.get(t, str(t)))
        return " ".join(names)


def read_pcap(path: Path) -> Iterator[tuple[int, float, bytes]]:
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian, tsdiv = "<", 1e6
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian, tsdiv = ">", 1e6
    elif magic == b"\x4d\x3c\xb2\xa1":
        endian, tsdiv = "<", 1e9
    else:
        raise FixtureError(f"{path}: not a classic pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise FixtureError(f"{path}: link type {linktype}, expected Ethernet")
    off, frame = 24, 0
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        off += 16
        frame += 1
        yield frame, sec + frac / tsdiv, data[off : off + caplen]
        off += caplen


def parse_ike_packets(path: Path) -> list[IkePacket]:
    out: list[IkePacket] = []
    for frame, ts, pkt in read_pcap(path):
        if len(pkt) < 14 + 20 + 8 or pkt[12:14] != b"\x08\x00":
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        src = str(ipaddress.IPv4Address(ip[12:16]))
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        sport, dport, ulen = struct.unpack("!HHH", ip[ihl : ihl + 6])
        udp = ip[ihl + 8 : ihl + ulen]
        marker = False
        if 4500 in (sport, dport):
            if len(udp) < 4 or udp[:4] != b"\x00\x00\x00\x00":
                continue  # ESP in UDP or NAT keep-alive: not IKE
            udp, marker = udp[4:], True
        if len(udp) < 28:
            continue
        ispi, rspi = udp[0:8], udp[8:16]
        next_pl, _ver, exch, flags = udp[16], udp[17], udp[18], udp[19]
        msgid, length = struct.unpack("!II", udp[20:28])
        payloads: list[tuple[int, bytes]] = []
        p = 28
        while next_pl != 0 and p + 4 <= len(udp):
            nxt, _crit, plen = udp[p], udp[p + 1], struct.unpack("!H", udp[p + 2 : p + 4])[0]
            payloads.append((next_pl, udp[p + 4 : p + plen]))
            if next_pl in (46, 53):  # everything after is encrypted
                break
            next_pl, p = nxt, p + plen
        out.append(
            IkePacket(frame, ts, src, sport, dst, dport, marker, ispi, rspi, exch, flags, msgid, length, payloads)
        )
    return out


def check_capture(pkts: list[IkePacket]) -> None:
    seen = {(p.exchange, p.is_response) for p in pkts}
    for exch in (34, 35, 37):
        for resp in (False, True):
            if (exch, resp) not in seen:
                kind = "response" if resp else "request"
                raise FixtureError(f"capture lacks an {EXCHANGES[exch]} {kind}")


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------


def decryption_row(suite: Suite, spi_i: bytes, spi_r: bytes, keys: dict[str, bytes]) -> str | None:
    if suite.ws_encr is None:
        return None
    aead = suite.integ_id is None
    sk_ai = "" if aead else keys["sk_ai"].hex()
    sk_ar = "" if aead else keys["sk_ar"].hex()
    return (
        f"{spi_i.hex()},{spi_r.hex()},{keys['sk_ei'].hex()},{keys['sk_er'].hex()},"
        f'"{suite.ws_encr}",{sk_ai},{sk_ar},"{suite.ws_integ}"'
    )


def tshark_args(pcap: str, row: str) -> list[str]:
    return ["tshark", "-n", "-r", pcap, "-o", f"uat:ikev2_decryption_table:{row}"]


def verify_with_tshark(pcap: Path, row: str, pkts: list[IkePacket]) -> str:
    """Check that tshark decrypts every SK/SKF payload; returns a one-line result."""
    fields = [
        "frame.number",
        "isakmp.exchangetype",
        "isakmp.enc.decrypted",
        "isakmp.frag.number",
        "isakmp.reassembled.length",
        "_ws.expert.message",
    ]
    cmd = [*tshark_args(str(pcap), row), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    proc = run(cmd, timeout=120)
    rows = {int(line.split("|")[0]): line.split("|") for line in proc.stdout.splitlines() if line}
    encrypted = [p for p in pkts if p.payload(46) is not None or p.payload(53) is not None]
    bad: list[str] = []
    for p in encrypted:
        r = rows.get(p.frame)
        if r is None or r[2] == "":
            bad.append(f"frame {p.frame}: not decrypted")
        elif "incorrect" in r[5].lower() or "error" in r[5].lower():
            bad.append(f"frame {p.frame}: {r[5]}")
    # RFC 7383 fragments: the frame with the last fragment must carry the reassembled message
    for p in pkts:
        skf = p.payload(53)
        if skf is not None and len(skf) >= 4:
            num, total = struct.unpack("!HH", skf[:4])
            r = rows.get(p.frame)
            if num == total and (r is None or r[4] == ""):
                bad.append(f"frame {p.frame}: fragments not reassembled")
    if bad:
        raise FixtureError(f"tshark could not decrypt {pcap.name}: {'; '.join(bad)}")
    frags = [p for p in pkts if p.payload(53) is not None]
    msgs = {(p.exchange, p.msgid, p.is_response) for p in frags}
    return f"{len(encrypted)}/{len(encrypted)} encrypted packets decrypted, no ICV error" + (
        f"; {len(frags)} SKF fragments reassembled into {len(msgs)} messages" if frags else ""
    )


def logged_messages(*texts: str) -> dict[tuple[str, str, int], str]:
    """(exchange, request|response, message id) -> payloads, from charon's 'generating' lines."""
    out: dict[tuple[str, str, int], str] = {}
    for text in texts:
        for m in re.finditer(r"generating (\S+) (request|response) (\d+) \[ (.*?) ?\]", text):
            if m.group(4).startswith("EF("):
                continue  # the per-fragment lines that follow the whole message's line
            out[(m.group(1), m.group(2), int(m.group(3)))] = m.group(4)
    return out


def packet_table(pkts: list[IkePacket], logged: dict[tuple[str, str, int], str]) -> list[str]:
    t0 = pkts[0].time if pkts else 0.0
    rows = [
        "| frame | time (s) | dir | UDP ports | exchange | msg id | type | payloads on the wire "
        "| inside SK/SKF (strongSwan log) | IKE length |",
        "|---:|---:|---|---|---|---:|---|---|---|---:|",
    ]
    for p in pkts:
        direction = "I→R" if p.src == ADDR_I else "R→I"
        ports = f"{p.sport}→{p.dport}" + (" + non-ESP marker" if p.non_esp_marker else "")
        kind = "response" if p.is_response else "request"
        exch = EXCHANGES.get(p.exchange, str(p.exchange))
        inner = ""
        if p.payload(46) is not None or p.payload(53) is not None:
            inner = logged.get((exch, kind, p.msgid), "?") or "(empty)"
        rows.append(
            f"| {p.frame} | {p.time - t0:.3f} | {direction} | {ports} | {exch} | {p.msgid} | "
            f"{kind} | {p.summary()} | {inner} | {p.length} |"
        )
    return rows


@dataclasses.dataclass
class Result:
    suite: Suite
    vector: dict[str, object]
    table_row: str | None
    packets: list[IkePacket]
    verify: str
    logged: dict[tuple[str, str, int], str]


def produce(suite: Suite, *, keep_workdir: bool, verify: bool) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="ipl-fx-", dir="/tmp"))
    try:
        log(f"{suite.name}: running strongSwan (workdir {workdir})")
        lab = run_lab(suite, workdir)
        i_text = lab.sides["i"].log.read_text(errors="replace")
        r_text = lab.sides["r"].log.read_text(errors="replace")
        keys_i, keys_r = extract_keys(i_text), extract_keys(r_text)
        ike_i, child_i = keys_i.ike, keys_i.child
        if suite.integ_id is None:
            # AEAD: no integrity keys; charon does not dump the zero-length SK_ai/SK_ar
            for keys in (keys_i, keys_r):
                for k in ("sk_ai", "sk_ar"):
                    if keys.ike.get(k, b""):
                        raise FixtureError(f"AEAD suite but {k} logged")
                    keys.ike[k] = b""
        missing = [k for k in IKE_KEY_LABELS.values() if k not in ike_i]
        if missing:
            raise FixtureError(f"initiator log lacks {missing}")
        if ike_i != keys_r.ike:
            raise FixtureError("initiator and responder logged different IKE SA keys")
        if child_i != keys_r.child:
            raise FixtureError("initiator and responder logged different Child SA keys")
        if len(keys_i.auth) != 2 or keys_i.auth != keys_r.auth:
            raise FixtureError("expected the same two PSK AUTH computations in both logs")
        if keys_i.auth[0].get("sk_p") != ike_i["sk_pi"] or keys_i.auth[1].get("sk_p") != ike_i["sk_pr"]:
            raise FixtureError("AUTH computations not in the expected order (initiator's first)")
        child_spi_i, child_spi_r = extract_child_spis(i_text)

        pkts = parse_ike_packets(lab.pcap)
        check_capture(pkts)
        init_req = next(p for p in pkts if p.exchange == 34 and not p.is_response)
        init_resp = next(p for p in pkts if p.exchange == 34 and p.is_response)
        ni, nr = init_req.payload(40), init_resp.payload(40)
        if ni is None or nr is None:
            raise FixtureError("IKE_SA_INIT without nonce")
        if child_i.get("seed") != ni + nr:
            raise FixtureError("the Child SA seed in the log is not Ni | Nr from the capture")
        spi_i, spi_r = init_resp.ispi, init_resp.rspi

        row = decryption_row(suite, spi_i, spi_r, ike_i)
        result = "not verified"
        if verify and row is not None:
            result = verify_with_tshark(lab.pcap, row, pkts)
            log(f"{suite.name}: tshark: {result}")
        elif verify:
            result = "not verifiable with tshark 4.0 (no ChaCha20-Poly1305 in its IKEv2 table)"

        pcap_out = HERE / f"{suite.name}.pcap"
        shutil.copyfile(lab.pcap, pcap_out)
        table_out = HERE / f"{suite.name}.ikev2_decryption_table"
        table_out.write_text(
            f"# This file is automatically generated, DO NOT MODIFY.\n{row}\n"
            if row
            else "# This file is automatically generated, DO NOT MODIFY.\n"
            f"# {suite.note}\n"
            f"# {spi_i.hex()},{spi_r.hex()},{ike_i['sk_ei'].hex()},{ike_i['sk_er'].hex()},"
            f'"<no Wireshark 4.0 name for ENCR {suite.encr_id}>",,,"NONE [RFC4306]"\n'
        )
        keys_out = HERE / f"{suite.name}.keys.log"
        keys_out.write_text(
            "# strongSwan charon logs (filelog: default 1, ike 4, chd 4) of this capture, trimmed\n"
            "# by pcaps/make_strongswan_captures.py to the hex dumps of the derived keys and AUTH\n"
            "# computations plus the lines that say what happened. The vectors in\n"
            "# tests/vectors/strongswan_kdf.json are read from these dumps.\n"
            f"# ---- initiator {ADDR_I} ----\n" + "\n".join(trimmed_log(i_text, keys_i.kept)) + "\n"
            f"# ---- responder {ADDR_R} ----\n" + "\n".join(trimmed_log(r_text, keys_r.kept)) + "\n"
        )

        selected = re.search(r"selected proposal: (IKE:\S+)", i_text)
        child_sel = re.search(r"selected proposal: (ESP:\S+)", i_text)
        vector: dict[str, object] = {
            "name": suite.name,
            "capture": f"pcaps/{pcap_out.name}",
            "ike_proposal": suite.ike_proposal,
            "strongswan_selected": selected.group(1) if selected else None,
            "encr_id": suite.encr_id,
            "encr_key_bits": suite.encr_key_bits,
            "prf_id": suite.prf_id,
            "integ_id": suite.integ_id,
            "dh_group": suite.dh_group,
            "spi_i": spi_i.hex(),
            "spi_r": spi_r.hex(),
            "ni": ni.hex(),
            "nr": nr.hex(),
            **{k: ike_i[k].hex() for k in IKE_KEY_LABELS.values()},
            "auth": {
                "method": 2,  # Shared Key Message Integrity Code
                "psk": keys_i.auth[0]["psk"].hex(),
                **{
                    who: {
                        "idx": a["idx"].hex(),
                        "octets": a["octets"].hex(),
                        "prf_psk_keypad": a["prf_psk_keypad"].hex(),
                        "auth": a["auth"].hex(),
                    }
                    for who, a in zip(("initiator", "responder"), keys_i.auth, strict=True)
                },
            },
        }
        if child_i:
            vector["child"] = {
                "esp_proposal": suite.esp_proposal,
                "strongswan_selected": child_sel.group(1) if child_sel else None,
                "encr_id": suite.esp_encr_id,
                "encr_key_bits": suite.esp_encr_key_bits,
                "integ_id": suite.esp_integ_id,
                "spi_i": child_spi_i,
                "spi_r": child_spi_r,
                "encr_i": child_i["encr_i"].hex(),
                "integ_i": child_i["integ_i"].hex() if "integ_i" in child_i else None,
                "encr_r": child_i["encr_r"].hex(),
                "integ_r": child_i["integ_r"].hex() if "integ_r" in child_i else None,
            }
        return Result(suite, vector, row, pkts, result, logged_messages(i_text, r_text))
    finally:
        if keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def strongswan_version() -> str:
    proc = run(["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"], check=False)
    return proc.stdout.strip() or "unknown"


def suite_order() -> list[str]:
    return [s.name for s in SUITES] + [s.fallback.name for s in SUITES if s.fallback]


def write_vectors(results: list[Result], drop: set[str]) -> None:
    # Vectors of suites not rerun this time are kept.
    by_name: dict[str, dict[str, object]] = {}
    if VECTORS.exists():
        for v in json.loads(VECTORS.read_text()).get("vectors", []):
            by_name[str(v["name"])] = v
    for r in results:
        by_name[r.suite.name] = r.vector
    for name in drop:
        by_name.pop(name, None)
    order = suite_order()
    vectors = [by_name[n] for n in sorted(by_name, key=lambda n: order.index(n) if n in order else len(order))]
    doc = {
        "source": (
            f"strongSwan {strongswan_version()} (Debian 12 strongswan-charon), two charon daemons in "
            "network namespaces (PSK, IKEv2), run by pcaps/make_strongswan_captures.py. Keys are the "
            "hex dumps charon logs at level 4 for 'ike' and 'chd' (keymat_v2.c: 'shared Diffie "
            "Hellman secret', 'SKEYSEED', 'Sk_d secret' ... 'Sk_pr secret', 'encryption/integrity "
            "initiator/responder key'), identical in the initiator's and the responder's log; SPIs "
            "and nonces (Ni, Nr: Nonce payload bodies) are read from the IKE_SA_INIT messages in "
            "the capture; Child SA SPIs from the initiator's 'CHILD_SA ... established with SPIs "
            "X_i Y_o' line (spi_i = SPI chosen by the initiator, spi_r = chosen by the responder). "
            "encr_i/integ_i protect initiator->responder traffic (ESP SPI spi_r), encr_r/integ_r "
            "responder->initiator (SPI spi_i). AEAD keys (sk_ei/sk_er, child encr_*) include the "
            "4-byte salt; for AEAD integ_id and the child integ_* are null and sk_ai/sk_ar are empty "
            "(charon derives and logs no integrity key). 'auth' holds charon's PSK AUTH dumps "
            "(RFC 7296 2.15): idx = IDx' (ID payload body), octets = the signed octets, "
            "prf_psk_keypad = prf(PSK, 'Key Pad for IKEv2'), auth = the AUTH data; checked equal in "
            "both logs, and the child 'seed' dump checked equal to Ni | Nr from the capture. Nothing "
            "here was computed by ipseclab. Transform ids are IANA IKEv2 ids."
        ),
        "vectors": vectors,
    }
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(doc, indent=2) + "\n")


README_BEGIN = "<!-- BEGIN GENERATED: make_strongswan_captures.py -->"
README_END = "<!-- END GENERATED -->"


def readme_section(r: Result) -> list[str]:
    s, v = r.suite, r.vector
    lines = [
        f"### `{s.name}`",
        "",
        f"IKE proposal `{s.ike_proposal}` (selected `{v.get('strongswan_selected')}`), "
        f"ESP proposal `{s.esp_proposal}`."
        + (f" fragment_size = {s.fragment_size}, fragmentation = yes." if s.fragmentation else "")
        + (f" {s.note}" if s.note else ""),
        "",
        f"IKE SPIs {v['spi_i']} / {v['spi_r']}. tshark check: {r.verify}.",
        "",
    ]
    lines += packet_table(r.packets, r.logged)
    lines.append("")
    if r.table_row:
        args = tshark_args(f"pcaps/{s.name}.pcap", r.table_row)
        quoted = " ".join(f"'{a}'" if (" " in a or '"' in a) else a for a in args)
        lines += ["```sh", f"{quoted} -V", "```", ""]
    else:
        lines += ["No tshark command: Wireshark 4.0 cannot decrypt this suite.", ""]
    return lines


def update_readme(results: list[Result], drop: set[str]) -> None:
    if not README.exists():
        log("pcaps/README.md missing: generated section not written")
        return
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        log("pcaps/README.md has no generated-section markers: not updated")
        return
    # Keep sections of suites not rerun this time.
    head, rest = text.split(README_BEGIN, 1)
    body, tail = rest.split(README_END, 1)
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in body.strip("\n").splitlines():
        m = re.match(r"### `([^`]+)`", line)
        if m:
            current = m.group(1)
            sections[current] = []
        if current:
            sections[current].append(line)
    for r in results:
        sections[r.suite.name] = readme_section(r)
    for name in drop:
        sections.pop(name, None)
    order = suite_order()
    names = sorted(sections, key=lambda n: order.index(n) if n in order else len(order))
    out = [README_BEGIN, ""]
    for n in names:
        out += [ln for ln in sections[n]]
        if out[-1] != "":
            out.append("")
    out.append(README_END)
    README.write_text(head + "\n".join(out) + tail)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--exec-charon"]:
        exec_charon(argv[1])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--suite", action="append", help="suite name (repeatable); default: all")
    ap.add_argument("--list", action="store_true", help="list the suites and exit")
    ap.add_argument("--no-verify", action="store_true", help="skip the tshark decryption check")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs and full logs in /tmp")
    args = ap.parse_args(argv)
    if args.list:
        for s in SUITES:
            print(f"{s.name}\t{s.ike_proposal} / esp {s.esp_proposal}")
        return 0
    suites = [s for s in SUITES if not args.suite or s.name in args.suite]
    if args.suite and len(suites) != len(args.suite):
        ap.error(f"unknown suite in {args.suite}")
    verify = not args.no_verify
    if verify and shutil.which("tshark") is None:
        log("tshark not found: skipping verification")
        verify = False
    preflight()
    # Make SIGTERM unwind through the finally blocks (namespaces, daemons) like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[Result] = []
    drop: set[str] = set()  # fallbacks made unnecessary: their old outputs go
    failures: list[str] = []
    for suite in suites:
        candidate: Suite | None = suite
        while candidate is not None:
            try:
                results.append(produce(candidate, keep_workdir=args.keep_workdir, verify=verify))
                if candidate is suite and suite.fallback is not None:
                    drop.add(suite.fallback.name)
                break
            except FixtureError as exc:
                log(f"{candidate.name}: FAILED: {exc}")
                failures.append(f"{candidate.name}: {str(exc).splitlines()[0]}")
                candidate = candidate.fallback if isinstance(exc, ProposalRejected) else None
                if candidate is not None:
                    log(f"trying fallback {candidate.name}")
    for name in drop:
        for ext in (".pcap", ".ikev2_decryption_table", ".keys.log"):
            (HERE / f"{name}{ext}").unlink(missing_ok=True)
    if results:
        write_vectors(results, drop)
        update_readme(results, drop)
    for f in failures:
        log(f"failure: {f}")
    log(f"done: {len(results)} capture(s) written")
    return 0 if len(results) == len(suites) else 1


if __name__ == "__main__":
    sys.exit(main())

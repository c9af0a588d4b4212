"""One peer configuration model that renders to strongSwan's and Libreswan's configuration files.

Why one model: an interop case says *what* to negotiate (identities, proposals, mode, NAT-T,
replay window, ESN, lifetimes) once, and every implementation gets the same intent in its own
syntax (``impls/strongswan.py``, ``impls/libreswan.py``, ``impls/openiked.py``).  The model checks what is wrong for any
peer (an AH SA cannot be UDP-encapsulated, transport mode protects only the hosts, ...); each
renderer refuses what its implementation cannot express, naming the setting and the peer, so
that a test reports UNSUPPORTED with a reason instead of failing half-configured.

Proposals are strongSwan-style strings (``"aes256gcm16-prfsha256-ecp256"``, ``"aes128-sha256"``),
parsed by :func:`ipseclab.crypto.proposals.parse_proposal`; the renderers work from the parsed
IANA transforms, not from the text, so spelling variants cannot leak into a daemon's config.
ESN is not written in child proposals: it is the :attr:`PeerConfig.esn` setting, because
Libreswan sets it per connection (``esn=``), not per proposal.

Strings are accepted where addresses, networks and identities are expected (the REPL is a
first-class user) and are converted once, by the constructor; after that every field has
the type its annotation says.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from ..crypto.proposals import TransformSpec, parse_proposal
from ..crypto.registry import EncrId, TransformType
from ..errors import ConfigError

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

Role = Literal["initiator", "responder"]
Protocol = Literal["esp", "ah"]
Mode = Literal["tunnel", "transport"]
Fragmentation = Literal["yes", "no", "force"]
DpdAction = Literal["clear", "hold", "restart"]
IdKind = Literal["fqdn", "ip", "email"]
AuthKind = Literal["psk", "pubkey", "eap-md5", "eap-mschapv2"]
AUTH_KINDS = ("psk", "pubkey", "eap-md5", "eap-mschapv2")

AEAD_ENCR = frozenset({EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305,
                       EncrId.NULL_AUTH_AES_GMAC})
# Connection names become swanctl.conf section names (a dot would split the key path) and
# Libreswan conn names; keep them to what both accept unquoted.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FQDN_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 3.5) of one of the kinds both daemons spell without ambiguity.

    ``kind`` is explicit because the daemons guess differently from a bare string (Libreswan
    resolves a bare hostname in DNS unless it starts with ``@``); renderers spell each kind.
    """

    kind: IdKind
    value: str

    def __post_init__(self) -> None:
        if self.kind == "fqdn":
            if not _FQDN_RE.match(self.value) or _is_ip(self.value):
                raise ConfigError(f"identity {self.value!r} is not a host name (letters, digits, '-', '.')")
        elif self.kind == "ip":
            if not _is_ip(self.value):
                raise ConfigError(f"identity {self.value!r} is not an IPv4 or IPv6 address")
            object.__setattr__(self, "value", str(ipaddress.ip_address(self.value)))
        elif self.kind == "email":
            if not _EMAIL_RE.match(self.value):
                raise ConfigError(f"identity {self.value!r} is not an e-mail address (user@domain)")
        else:
            raise ConfigError(f"identity kind must be fqdn, ip or email, not {self.kind!r}")

    @classmethod
    def fqdn(cls, name: str) -> Identity:
        return cls("fqdn", name)

    @classmethod
    def ip(cls, address: str | IPAddress) -> Identity:
        return cls("ip", str(address))

    @classmethod
    def email(cls, address: str) -> Identity:
        return cls("email", address)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Guess the kind like a person would: an address is ip, ``user@domain`` email, else fqdn.

        A leading ``@`` (Libreswan's "do not resolve" marker) is accepted and dropped.
        """
        if _is_ip(text):
            return cls.ip(text)
        if text.startswith("@"):
            return cls.fqdn(text[1:])
        if "@" in text:
            return cls.email(text)
        return cls.fqdn(text)

    def __str__(self) -> str:
        return self.value


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """One peer's certificate material and EAP secret (PEM bytes, made by the run's CA: ``lab/pki.py``).

    ``certificate``/``private_key``/``intermediates``: what this peer proves itself with (``auth="pubkey"``);
    ``cas``: what the other peer's certificate must chain to (``remote_auth="pubkey"``); ``eap_identity`` and
    ``eap_password``: the EAP client's credentials, or the one user an EAP server knows.
    """

    certificate: bytes = b""
    private_key: bytes = b""
    intermediates: tuple[bytes, ...] = ()
    cas: tuple[bytes, ...] = ()
    eap_identity: str = ""
    eap_password: str = ""


@dataclass(frozen=True, slots=True, init=False)
class PeerConfig:
    """What one peer is configured with: the same intent for every implementation.

    ``local``/``remote`` are from this peer's point of view (Libreswan's left/right).
    :meth:`mirrored` gives the other peer's configuration.

    The constructor (below, with the defaults) also takes strings for addresses, networks and
    identities and any sequence for the lists, and converts them once; the fields always hold
    the types annotated here.  Bad values raise ConfigError naming the peer and the setting.
    """

    name: str
    """Connection name: a swanctl connection and child, a Libreswan conn."""
    local_address: IPAddress
    remote_address: IPAddress | None
    """``None``: accept any address (responder only; e.g. behind a NAT whose address is not known)."""
    psk: bytes | str
    local_id: Identity | None
    """None: the local address as an ip identity."""
    remote_id: Identity | None
    """None: the remote address as an ip identity (required when ``remote_address`` is None)."""
    auth: AuthKind
    """How this peer proves itself: ``psk``, ``pubkey`` (its certificate in ``credentials``) or, for an
    initiator, ``eap-md5`` / ``eap-mschapv2`` (the EAP client)."""
    remote_auth: AuthKind
    """How the other peer must prove itself (``pubkey``: chaining to ``credentials.cas``; ``eap-*``: this
    responder is the EAP server); the constructor's None means the same as ``auth``."""
    credentials: PeerCredentials | None
    ike_proposals: tuple[str, ...]
    esp_proposals: tuple[str, ...]
    ah_proposals: tuple[str, ...]
    protocol: Protocol
    mode: Mode
    local_ts: tuple[IPNetwork, ...]
    """Protected networks behind this peer; empty means this host only (the only choice in transport mode)."""
    remote_ts: tuple[IPNetwork, ...]
    encap: bool
    """Force UDP encapsulation (RFC 3948) even without a NAT."""
    nat_t: bool
    """Allow NAT-T when a NAT is detected; False keeps ESP unencapsulated (Libreswan only)."""
    replay_window: int
    """Anti-replay window in packets; 0 disables replay protection."""
    esn: bool
    tfc_padding: int
    """Pad every outbound ESP tunnel-mode payload to this many bytes (RFC 4303 2.7 TFC padding); 0: none."""
    ike_lifetime: int
    """Seconds until the IKE SA expires; a rekey starts ``ike_rekey_margin`` seconds earlier."""
    ike_rekey_margin: int
    child_lifetime: int
    child_rekey_margin: int
    dpd_delay: int
    """Seconds between liveness checks; 0 disables them."""
    dpd_action: DpdAction
    """What to do with the Child SAs of a peer found dead: clear them, hold (trap) or restart."""
    rekey_jitter: int
    """Seconds a rekey may start earlier than lifetime - margin, at random (strongSwan rand_time, Libreswan
    rekeyfuzz as a share of the margin); 0 rekeys exactly on time, which lifecycle cases need."""
    rekey: bool
    """Whether this side starts rekeys at all (False: it never does, it only answers the peer's)."""
    reauth: bool
    """Renew the IKE SA by reauthentication (a new IKE_SA_INIT/IKE_AUTH) instead of a CREATE_CHILD_SA rekey."""
    child_rekey_bytes: int
    """Soft volume limit of a Child SA in bytes: rekey once it carried this many (strongSwan rekey_bytes);
    0: none.  Libreswan chooses its own soft limit below ``child_life_bytes`` and cannot take this one."""
    child_life_bytes: int
    """Hard volume limit of a Child SA in bytes (strongSwan life_bytes, Libreswan ipsec-max-bytes); 0: none."""
    retransmit_timeout: float | None
    """Seconds before the first retransmission of an IKE request (doubling after); None: the daemon's default."""
    retransmit_tries: int | None
    """Retransmissions before the peer is given up (DPD declares it dead); None: the daemon's default."""
    extra_children: tuple[tuple[IPNetwork, IPNetwork], ...]
    """Additional Child SAs (tunnel mode) as (local, remote) subnets, named ``<name>-2``, ``<name>-3``, ...:
    created by CREATE_CHILD_SA under the same IKE SA when the harness starts them."""
    fragmentation: Fragmentation
    role: Role
    auto_start: bool
    """Let the daemon initiate on load; False: the harness initiates (swanctl --initiate, whack --initiate)."""
    updown: str | None
    """Updown script; None disables it (Libreswan's updown forks per SA and is slow under UML)."""
    log_keys: bool
    """Make the daemon log the derived keys, for the run's Wireshark key files."""

    def __init__(
        self,
        name: str,
        local_address: IPAddress | str,
        remote_address: IPAddress | str | None,
        psk: bytes | str,
        *,
        local_id: Identity | str | None = None,
        remote_id: Identity | str | None = None,
        auth: AuthKind = "psk",
        remote_auth: AuthKind | None = None,
        credentials: PeerCredentials | None = None,
        ike_proposals: Sequence[str] = ("aes256-sha256-ecp256",),
        esp_proposals: Sequence[str] = ("aes128-sha256",),
        ah_proposals: Sequence[str] = ("sha256",),
        protocol: Protocol = "esp",
        mode: Mode = "tunnel",
        local_ts: Sequence[IPNetwork | str] | IPNetwork | str = (),
        remote_ts: Sequence[IPNetwork | str] | IPNetwork | str = (),
        encap: bool = False,
        nat_t: bool = True,
        replay_window: int = 32,
        esn: bool = False,
        tfc_padding: int = 0,
        ike_lifetime: int = 14400,
        ike_rekey_margin: int = 540,
        child_lifetime: int = 3600,
        child_rekey_margin: int = 540,
        dpd_delay: int = 0,
        dpd_action: DpdAction = "clear",
        rekey_jitter: int = 0,
        rekey: bool = True,
        reauth: bool = False,
        child_rekey_bytes: int = 0,
        child_life_bytes: int = 0,
        retransmit_timeout: float | None = None,
        retransmit_tries: int | None = None,
        extra_children: Sequence[tuple[IPNetwork | str, IPNetwork | str]] = (),
        fragmentation: Fragmentation = "yes",
        role: Role = "initiator",
        auto_start: bool = False,
        updown: str | None = None,
        log_keys: bool = True,
    ) -> None:
        set_ = object.__setattr__
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"peer name {name!r} must start with a letter and use letters, digits, '-', '_' "
                              "(it is a swanctl section and a Libreswan conn name)")
        set_(self, "name", name)
        set_(self, "local_address", self._address("local_address", local_address))
        set_(self, "remote_address", None if remote_address is None
             else self._address("remote_address", remote_address))
        set_(self, "psk", psk)
        set_(self, "local_id", self._identity("local_id", local_id))
        set_(self, "remote_id", self._identity("remote_id", remote_id))
        set_(self, "auth", auth)
        set_(self, "remote_auth", remote_auth if remote_auth is not None
             else ("psk" if auth.startswith("eap-") else auth))
        set_(self, "credentials", credentials)
        set_(self, "ike_proposals", self._proposals("ike_proposals", ike_proposals))
        set_(self, "esp_proposals", self._proposals("esp_proposals", esp_proposals))
        set_(self, "ah_proposals", self._proposals("ah_proposals", ah_proposals))
        set_(self, "protocol", protocol)
        set_(self, "mode", mode)
        set_(self, "local_ts", self._networks("local_ts", local_ts))
        set_(self, "remote_ts", self._networks("remote_ts", remote_ts))
        set_(self, "extra_children", self._children(extra_children))
        for attr, value in (("encap", encap), ("nat_t", nat_t), ("replay_window", replay_window), ("esn", esn),
                            ("tfc_padding", tfc_padding),
                            ("ike_lifetime", ike_lifetime), ("ike_rekey_margin", ike_rekey_margin),
                            ("child_lifetime", child_lifetime), ("child_rekey_margin", child_rekey_margin),
                            ("dpd_delay", dpd_delay), ("dpd_action", dpd_action), ("rekey_jitter", rekey_jitter),
                            ("rekey", rekey), ("reauth", reauth), ("child_rekey_bytes", child_rekey_bytes),
                            ("child_life_bytes", child_life_bytes), ("retransmit_timeout", retransmit_timeout),
                            ("retransmit_tries", retransmit_tries), ("fragmentation", fragmentation), ("role", role),
                            ("auto_start", auto_start), ("updown", updown), ("log_keys", log_keys)):
            set_(self, attr, value)
        self._validate()

    # --- conversions --------------------------------------------------------------------------

    def error(self, setting: str, problem: str) -> ConfigError:
        """A ConfigError naming this peer and the setting, in the form every check here uses."""
        return ConfigError(f"peer {self.name!r}: {setting}: {problem}")

    def _address(self, setting: str, value: object) -> IPAddress:
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return value
        try:
            return ipaddress.ip_address(str(value))
        except ValueError:
            raise self.error(setting, f"{value!r} is not an IPv4 or IPv6 address") from None

    def _networks(self, setting: str, value: object) -> tuple[IPNetwork, ...]:
        if isinstance(value, str | ipaddress.IPv4Network | ipaddress.IPv6Network):
            value = (value,)
        if not isinstance(value, Sequence):
            raise self.error(setting, f"must be a list of networks, not {value!r}")
        nets: list[IPNetwork] = []
        for item in value:
            if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
                nets.append(item)
                continue
            try:
                nets.append(ipaddress.ip_network(str(item)))
            except ValueError as exc:
                raise self.error(setting, f"{item!r} is not a network ({exc}); write e.g. 203.0.113.0/24") from None
        return tuple(nets)

    def _children(self, value: object) -> tuple[tuple[IPNetwork, IPNetwork], ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error("extra_children", f"must be a list of (local, remote) subnets, not {value!r}")
        out = []
        for i, pair in enumerate(value):
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise self.error(f"extra_children[{i}]", f"must be a (local, remote) pair of subnets, not {pair!r}")
            local, remote = (self._networks(f"extra_children[{i}]", net) for net in pair)
            out.append((local[0], remote[0]))
        return tuple(out)

    def _identity(self, setting: str, value: object) -> Identity | None:
        if value is None or isinstance(value, Identity):
            return value
        if not isinstance(value, str):
            raise self.error(setting, f"must be an Identity or a string, not {value!r}")
        try:
            return Identity.parse(value)
        except ConfigError as exc:
            raise self.error(setting, str(exc)) from None

    def _proposals(self, setting: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(setting, f"must be a list of proposal strings, not {value!r}")
        return tuple(value)

    # --- checks that hold for every implementation --------------------------------------------

    def _validate(self) -> None:
        if isinstance(self.psk, bytes | str):
            if not self.psk:
                raise self.error("psk", "the pre-shared key is empty")
        else:
            raise self.error("psk", f"must be bytes or str, not {type(self.psk).__name__}")
        self._validate_auth()
        if self.protocol not in ("esp", "ah"):
            raise self.error("protocol", f"must be 'esp' or 'ah', not {self.protocol!r}")
        if self.mode not in ("tunnel", "transport"):
            raise self.error("mode", f"must be 'tunnel' or 'transport', not {self.mode!r}")
        if self.role not in ("initiator", "responder"):
            raise self.error("role", f"must be 'initiator' or 'responder', not {self.role!r}")
        if self.fragmentation not in ("yes", "no", "force"):
            raise self.error("fragmentation", f"must be 'yes', 'no' or 'force', not {self.fragmentation!r}")
        if self.remote_address is None:
            if self.role == "initiator":
                raise self.error("remote_address", "an initiator needs the address to send IKE_SA_INIT to")
            if self.remote_id is None:
                raise self.error("remote_id", "required when remote_address is None (any address)")
        elif self.local_address.version != self.remote_address.version:
            raise self.error("remote_address", f"{self.remote_address} is IPv{self.remote_address.version} but "
                             f"local_address {self.local_address} is IPv{self.local_address.version}")
        if self.auto_start and self.role != "initiator":
            raise self.error("auto_start", "only an initiator can start the connection on load")
        self._validate_selectors()
        self._validate_proposals()
        if self.protocol == "ah" and self.encap:
            raise self.error("encap", "AH cannot be UDP-encapsulated (RFC 3948 defines NAT-T for ESP only)")
        if self.encap and not self.nat_t:
            raise self.error("encap", "forcing UDP encapsulation contradicts nat_t=False")
        if not 0 <= self.replay_window <= 2**32 - 1:
            raise self.error("replay_window", f"must be 0 (disabled) or a positive window, not {self.replay_window}")
        if not 0 <= self.tfc_padding <= 65535:
            raise self.error("tfc_padding", f"must be 0 (off) or a payload size in bytes, not {self.tfc_padding}")
        if self.tfc_padding and (self.protocol != "esp" or self.mode != "tunnel"):
            raise self.error("tfc_padding", "TFC padding needs ESP in tunnel mode (RFC 4303 2.7)")
        for life, margin in (("ike_lifetime", "ike_rekey_margin"), ("child_lifetime", "child_rekey_margin")):
            lv, mv = getattr(self, life), getattr(self, margin)
            if lv <= 0:
                raise self.error(life, f"must be a positive number of seconds, not {lv}")
            if not 0 < mv < lv:
                raise self.error(margin, f"must be positive and less than {life} ({lv} s), not {mv}")
        if self.dpd_delay < 0:
            raise self.error("dpd_delay", f"must be 0 (off) or a number of seconds, not {self.dpd_delay}")
        self._validate_lifecycle()

    def _validate_lifecycle(self) -> None:
        if self.dpd_action not in ("clear", "hold", "restart"):
            raise self.error("dpd_action", f"must be 'clear', 'hold' or 'restart', not {self.dpd_action!r}")
        if not 0 <= self.rekey_jitter < min(self.ike_rekey_margin, self.child_rekey_margin):
            raise self.error("rekey_jitter", f"must be 0 or more and less than the rekey margins "
                             f"({self.ike_rekey_margin} s, {self.child_rekey_margin} s), not {self.rekey_jitter}")
        for setting in ("child_rekey_bytes", "child_life_bytes"):
            if getattr(self, setting) < 0:
                raise self.error(setting, f"must be 0 (no limit) or a number of bytes, not {getattr(self, setting)}")
        if self.child_rekey_bytes and self.child_life_bytes and self.child_rekey_bytes >= self.child_life_bytes:
            raise self.error("child_rekey_bytes", f"must be less than child_life_bytes ({self.child_life_bytes}), "
                             f"not {self.child_rekey_bytes}")
        if self.retransmit_timeout is not None and not self.retransmit_timeout > 0:
            raise self.error("retransmit_timeout",
                             f"must be a positive number of seconds, not {self.retransmit_timeout}")
        if self.retransmit_tries is not None and self.retransmit_tries < 0:
            raise self.error("retransmit_tries", f"must be 0 or more, not {self.retransmit_tries}")
        if self.extra_children and self.mode != "tunnel":
            raise self.error("extra_children", "additional Child SAs with their own subnets need tunnel mode")

    def _validate_auth(self) -> None:
        for setting in ("auth", "remote_auth"):
            if getattr(self, setting) not in AUTH_KINDS:
                raise self.error(setting, f"must be one of {', '.join(AUTH_KINDS)}, not {getattr(self, setting)!r}")
        creds = self.credentials or PeerCredentials()
        if self.auth == "pubkey" and not (creds.certificate and creds.private_key):
            raise self.error("credentials", "auth='pubkey' needs a certificate and its private key")
        if self.remote_auth == "pubkey" and not creds.cas:
            raise self.error("credentials", "remote_auth='pubkey' needs the CA certificates to check the peer with")
        if self.auth.startswith("eap-") and (self.role != "initiator" or not creds.eap_password):
            raise self.error("auth", "EAP authentication is the initiator's (RFC 7296 2.16), with an eap_password")
        if self.remote_auth.startswith("eap-") and (self.role != "responder" or not creds.eap_password):
            raise self.error("remote_auth", "an EAP server is the responder, with the user's eap_password")

    def _validate_selectors(self) -> None:
        for setting, nets in (("local_ts", self.local_ts), ("remote_ts", self.remote_ts)):
            if self.mode == "transport" and nets:
                host = self.local_address if setting == "local_ts" else self.remote_address
                # a responder that takes any peer (remote_address None) may name the peer's own address, which a
                # NAT hides (Libreswan needs it as rightsubnet); it must still be one host
                one_host = len(nets) == 1 and nets[0].prefixlen == nets[0].max_prefixlen
                if not one_host or (host is None and setting == "local_ts") or (
                        host is not None and nets[0] != ipaddress.ip_network(host)):
                    raise self.error(setting, f"transport mode protects only the host's own traffic; leave it "
                                     f"empty or give {host or 'one host address'} alone, not "
                                     f"{', '.join(map(str, nets))}")

    def _validate_proposals(self) -> None:
        if not self.ike_proposals:
            raise self.error("ike_proposals", "at least one IKE proposal is needed")
        for i, text in enumerate(self.ike_proposals):
            specs = self._parse(f"ike_proposals[{i}]", text, "ike")
            for t in specs:
                if t.type == TransformType.ENCR and t.id in (EncrId.NULL, EncrId.NULL_AUTH_AES_GMAC):
                    raise self.error(f"ike_proposals[{i}]", f"{text!r}: {EncrId(t.id).name} is for ESP only, "
                                     "not IKE (IANA IKEv2 transform type 1)")
        child_attr = f"{self.protocol}_proposals"
        child = self.esp_proposals if self.protocol == "esp" else self.ah_proposals
        if not child:
            raise self.error(child_attr, f"at least one {self.protocol.upper()} proposal is needed")
        for i, text in enumerate(child):
            setting = f"{child_attr}[{i}]"
            words = {w.strip().lower() for w in text.split("-")}
            if words & {"esn", "noesn"}:
                raise self.error(setting, f"{text!r}: give ESN with the esn setting, not in the proposal "
                                 "(Libreswan negotiates it per connection)")
            specs = self._parse(setting, text, self.protocol)
            encrs = [t for t in specs if t.type == TransformType.ENCR]
            integs = [t for t in specs if t.type == TransformType.INTEG]
            aead = [t for t in encrs if t.id in AEAD_ENCR]
            if aead and len(aead) != len(encrs):
                raise self.error(setting, f"{text!r} mixes AEAD and non-AEAD ciphers; split it into two proposals")
            if aead and integs:
                raise self.error(setting, f"{text!r}: an AEAD cipher takes no integrity algorithm")

    def _parse(self, setting: str, text: str, protocol: str) -> list[TransformSpec]:
        if not isinstance(text, str):
            raise self.error(setting, f"must be a proposal string, not {text!r}")
        try:
            return parse_proposal(text, protocol)
        except ConfigError as exc:
            raise self.error(setting, str(exc)) from None

    # --- derived values the renderers and the harness share -----------------------------------

    @property
    def child_proposals(self) -> tuple[str, ...]:
        """The ESP or AH proposals, whichever ``protocol`` selects."""
        return self.esp_proposals if self.protocol == "esp" else self.ah_proposals

    def parsed_ike_proposals(self) -> list[list[TransformSpec]]:
        return [parse_proposal(p, "ike") for p in self.ike_proposals]

    def parsed_child_proposals(self) -> list[list[TransformSpec]]:
        """Child proposals as transforms, without the ESN transform (that is the ``esn`` setting)."""
        return [[t for t in parse_proposal(p, self.protocol) if t.type != TransformType.ESN]
                for p in self.child_proposals]

    @property
    def effective_local_id(self) -> Identity:
        return self.local_id if self.local_id is not None else Identity.ip(self.local_address)

    @property
    def effective_remote_id(self) -> Identity:
        if self.remote_id is not None:
            return self.remote_id
        assert self.remote_address is not None  # __post_init__ requires remote_id otherwise
        return Identity.ip(self.remote_address)

    @property
    def local_selectors(self) -> tuple[IPNetwork, ...]:
        """What this peer protects: ``local_ts``, or this host alone (the harness routes these)."""
        return self.local_ts or (ipaddress.ip_network(self.local_address),)

    @property
    def remote_selectors(self) -> tuple[IPNetwork, ...]:
        """What the other peer protects: ``remote_ts``, or that host alone (empty if its address is unknown)."""
        if self.remote_ts:
            return self.remote_ts
        return (ipaddress.ip_network(self.remote_address),) if self.remote_address is not None else ()

    def lifecycle_settings(self) -> list[str]:
        """The SA-lifecycle settings this configuration sets away from their defaults, by name: what a
        renderer that does not write them must refuse (rather than run a case the peer ignores)."""
        out = [name for name, default in _LIFECYCLE_DEFAULTS.items() if getattr(self, name) != default]
        if self.dpd_delay:
            out.append("dpd_delay")
        return out

    def retransmit_total(self) -> float | None:
        """Seconds from an IKE request to giving the peer up, with the delay doubling after each try."""
        if self.retransmit_timeout is None or self.retransmit_tries is None:
            return None
        return float(self.retransmit_timeout * (2 ** (self.retransmit_tries + 1) - 1))

    @property
    def psk_bytes(self) -> bytes:
        return self.psk.encode() if isinstance(self.psk, str) else self.psk

    def mirrored(self, name: str | None = None) -> PeerConfig:
        """The other peer's configuration: local and remote swapped, the role reversed.

        The usual way to build a pair: configure the initiator, mirror it for the responder.
        """
        if self.remote_address is None:
            raise self.error("remote_address", "cannot mirror a configuration that accepts any remote address")
        if self.credentials is not None:
            raise self.error("credentials", "cannot mirror certificates or EAP secrets: configure each peer with "
                             "its own (lab/pki.py issues both)")
        return dataclasses.replace(
            self,
            name=name or self.name,
            local_address=self.remote_address,
            remote_address=self.local_address,
            local_id=self.effective_remote_id,
            remote_id=self.effective_local_id,
            local_ts=self.remote_ts,
            remote_ts=self.local_ts,
            extra_children=tuple((remote, local) for local, remote in self.extra_children),
            role="responder" if self.role == "initiator" else "initiator",
            auto_start=False,
            auth=self.remote_auth,
            remote_auth=self.auth,
        )


_LIFECYCLE_DEFAULTS: dict[str, object] = {
    "dpd_action": "clear", "rekey_jitter": 0, "rekey": True, "reauth": False, "child_rekey_bytes": 0,
    "child_life_bytes": 0, "retransmit_timeout": None, "retransmit_tries": None, "extra_children": (),
}


def psk_text(psk: bytes) -> str | None:
    """The PSK as a string both daemons read literally inside double quotes, or None (write hex).

    Quoted values that start with 0x/0s are decoded as hex/base64 by strongSwan (and by Libreswan
    when unquoted), so such keys go out as hex too.
    """
    try:
        text = psk.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.isprintable() or any(c in text for c in '"\\') or text[:2].lower() in ("0x", "0s"):
        return None
    return text



def load_peer_config(path: Path) -> PeerConfig:
    """A PeerConfig from a TOML (``.toml``) or JSON file whose keys are the constructor's arguments.

    ::

        name = "home"
        local_address = "198.51.100.10"
        remote_address = "198.51.100.20"
        psk = "a secret"
        local_ts = ["203.0.113.0/26"]
        remote_ts = ["203.0.113.64/26"]

    ConfigError (one line, naming the file) for a file that cannot be read or parsed, a key PeerConfig does
    not have, a missing one, or a value it refuses.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of PeerConfig settings, got {type(raw).__name__}")
    params = inspect.signature(PeerConfig.__init__).parameters
    unknown = sorted(set(raw) - set(params) - {"self"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; PeerConfig takes "
                          f"{', '.join(p for p in params if p != 'self')}")
    missing = [p for p, v in params.items() if p != "self" and v.default is inspect.Parameter.empty and p not in raw]
    if missing:
        raise ConfigError(f"{path}: missing setting(s) {', '.join(missing)}")
    try:
        return PeerConfig(**raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None

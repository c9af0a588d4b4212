"""The peer configuration model and its strongSwan and Libreswan renderers.

The rendered files are parsed back by small structural readers (one setting per line, balanced
sections) so the assertions look at settings, not at substrings of the text.
"""

from __future__ import annotations

import ipaddress
import re
import stat

import pytest

from ipseclab.errors import ConfigError
from ipseclab.lab.impls import libreswan as lsw
from ipseclab.lab.impls import strongswan as ssw
from ipseclab.lab.peerconfig import Identity, PeerConfig

LEFT, RIGHT = "198.51.100.1", "198.51.100.2"
LEFT_NET, RIGHT_NET = "203.0.113.0/26", "203.0.113.64/26"


def make(**kw) -> PeerConfig:
    args = dict(name="lab", local_address=LEFT, remote_address=RIGHT, psk="lab-psk-not-secret",
                local_id=Identity.fqdn("left.ipseclab.test"), remote_id=Identity.fqdn("right.ipseclab.test"),
                local_ts=[LEFT_NET], remote_ts=[RIGHT_NET])
    args.update(kw)
    return PeerConfig(**args)


# --- structural readers ----------------------------------------------------------------------

_SETTING = re.compile(r"^[A-Za-z0-9_.-]+ = \S.*$")
_SECTION = re.compile(r"^([A-Za-z0-9_.-]+) \{$")


def swan_tree(text: str) -> dict:
    """Parse strongswan.conf/swanctl.conf; fails on anything but one setting or section per line."""
    root: dict = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := _SECTION.match(line):
            assert m.group(1) not in stack[-1], f"duplicate section {line!r}"
            stack[-1][m.group(1)] = {}
            stack.append(stack[-1][m.group(1)])
        elif line == "}":
            stack.pop()
            assert stack, "unbalanced '}'"
        else:
            assert _SETTING.match(line), f"not one setting per line: {raw!r}"
            key, value = line.split(" = ", 1)
            assert key not in stack[-1], f"duplicate setting {key!r}"
            stack[-1][key] = value
    assert len(stack) == 1, "unclosed section"
    return root


def ipsec_conf(text: str) -> dict[str, dict[str, str]]:
    """Parse ipsec.conf into {section header: {key: value}}; settings must be indented key=value."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not raw[0].isspace():
            assert raw in ("config setup",) or raw.startswith("conn "), raw
            current = sections.setdefault(raw, {})
            continue
        assert current is not None
        key, sep, value = raw.strip().partition("=")
        assert sep and key and value and " " not in key, raw
        assert key not in current, f"duplicate {key}"
        current[key] = value
    return sections


def conn(cfg: PeerConfig) -> dict[str, str]:
    return ipsec_conf(lsw.render_ipsec_conf(cfg, log_path="/ipl/pluto.log"))[f"conn {cfg.name}"]


def swanctl(cfg: PeerConfig) -> dict:
    return swan_tree(ssw.render_swanctl_conf(cfg))


def child(cfg: PeerConfig) -> dict:
    return swanctl(cfg)["connections"][cfg.name]["children"][cfg.name]


# --- rendering: the four lab cases and IPv6 ----------------------------------------------------


def test_esp_tunnel_strongswan():
    cfg = make(dpd_delay=10)
    tree = swanctl(cfg)
    c = tree["connections"]["lab"]
    assert c["version"] == "2"
    assert (c["local_addrs"], c["remote_addrs"]) == (LEFT, RIGHT)
    assert c["proposals"] == "aes256-sha256-prfsha256-ecp256"
    assert c["local"] == {"auth": "psk", "id": "left.ipseclab.test"}
    assert c["remote"] == {"auth": "psk", "id": "right.ipseclab.test"}
    assert (c["encap"], c["mobike"], c["fragmentation"], c["dpd_delay"]) == ("no", "no", "yes", "10s")
    assert (c["rekey_time"], c["over_time"]) == ("13860s", "540s")
    ch = c["children"]["lab"]
    assert ch["mode"] == "tunnel"
    assert ch["esp_proposals"] == "aes128-sha256-noesn"
    assert "ah_proposals" not in ch
    assert (ch["local_ts"], ch["remote_ts"]) == (LEFT_NET, RIGHT_NET)
    assert (ch["replay_window"], ch["rekey_time"], ch["life_time"]) == ("32", "3060s", "3600s")
    assert ch["start_action"] == "none"
    assert "updown" not in ch
    assert tree["secrets"]["ike-lab"] == {"id-local": "left.ipseclab.test", "id-remote": "right.ipseclab.test",
                                          "secret": '"lab-psk-not-secret"'}


def test_esp_tunnel_libreswan():
    c = conn(make(dpd_delay=10))
    assert c["ikev2"] == "yes" and c["authby"] == "secret"
    assert (c["left"], c["leftid"], c["leftsubnet"]) == (LEFT, "@left.ipseclab.test", LEFT_NET)
    assert (c["right"], c["rightid"], c["rightsubnet"]) == (RIGHT, "@right.ipseclab.test", RIGHT_NET)
    assert c["leftupdown"] == "%disabled"
    assert c["ike"] == "aes256-sha2_256;dh19"
    assert (c["phase2"], c["esp"], c["pfs"], c["type"]) == ("esp", "aes128-sha2_256", "no", "tunnel")
    assert (c["encapsulation"], c["replay-window"], c["esn"]) == ("auto", "32", "no")
    assert (c["ikelifetime"], c["salifetime"], c["rekeymargin"], c["rekeyfuzz"]) == ("14400s", "3600s", "540s", "0%")
    assert (c["fragmentation"], c["mobike"], c["dpddelay"], c["auto"]) == ("yes", "no", "10s", "add")
    assert "dpdtimeout" not in c and "dpddelay" not in conn(make())
    assert "ah" not in c


def test_libreswan_secrets_and_setup():
    cfg = make()
    assert lsw.render_ipsec_secrets(cfg).splitlines()[-1] == \
        '@left.ipseclab.test @right.ipseclab.test : PSK "lab-psk-not-secret"'
    setup = ipsec_conf(lsw.render_ipsec_conf(cfg, log_path="/ipl/pluto.log", secrets_path="/ipl/ipsec.secrets"))
    assert setup["config setup"] == {"logfile": "/ipl/pluto.log", "logtime": "yes", "logappend": "no",
                                     "plutodebug": '"crypt private"', "secretsfile": "/ipl/ipsec.secrets"}


def test_esp_transport_defaults_to_the_hosts():
    cfg = make(mode="transport", local_ts=(), remote_ts=())
    assert cfg.local_selectors == (ipaddress.ip_network(LEFT),)
    assert cfg.remote_selectors == (ipaddress.ip_network(RIGHT),)
    ch = child(cfg)
    assert ch["mode"] == "transport"
    assert "local_ts" not in ch and "remote_ts" not in ch  # dynamic: the IKE addresses, also behind a NAT
    c = conn(cfg)
    assert c["type"] == "transport"
    assert "leftsubnet" not in c and "rightsubnet" not in c


def test_transport_accepts_the_hosts_spelled_out():
    cfg = make(mode="transport", local_ts=[f"{LEFT}/32"], remote_ts=[RIGHT])
    assert "local_ts" not in child(cfg)
    assert "leftsubnet" not in conn(cfg)


def test_ah_transport():
    cfg = make(protocol="ah", mode="transport", local_ts=(), remote_ts=(), ah_proposals=["sha256"])
    ch = child(cfg)
    assert ch["ah_proposals"] == "sha256-noesn"
    assert "esp_proposals" not in ch
    c = conn(cfg)
    assert (c["phase2"], c["ah"], c["type"]) == ("ah", "sha2_256", "transport")
    assert "esp" not in c


def test_tunnel_with_forced_encapsulation():
    cfg = make(encap=True)
    assert swanctl(cfg)["connections"]["lab"]["encap"] == "yes"
    assert conn(cfg)["encapsulation"] == "yes"


def test_nat_t_off_is_libreswan_encapsulation_no():
    assert conn(make(nat_t=False))["encapsulation"] == "no"


def test_ipv6_transit():
    cfg = make(local_address="2001:db8::1", remote_address="2001:db8:0::2", local_id=None, remote_id=None,
               local_ts=["2001:db8:1::/64"], remote_ts=["2001:db8:2::/64"])
    c = swanctl(cfg)["connections"]["lab"]
    assert (c["local_addrs"], c["remote_addrs"]) == ("2001:db8::1", "2001:db8::2")
    assert (c["local"]["id"], c["remote"]["id"]) == ("2001:db8::1", "2001:db8::2")
    assert (c["children"]["lab"]["local_ts"], c["children"]["lab"]["remote_ts"]) == ("2001:db8:1::/64",
                                                                                     "2001:db8:2::/64")
    lc = conn(cfg)
    assert (lc["left"], lc["leftid"], lc["leftsubnet"]) == ("2001:db8::1", "2001:db8::1", "2001:db8:1::/64")
    assert (lc["right"], lc["rightid"], lc["rightsubnet"]) == ("2001:db8::2", "2001:db8::2", "2001:db8:2::/64")
    assert lsw.render_ipsec_secrets(cfg).splitlines()[-1] == '2001:db8::1 2001:db8::2 : PSK "lab-psk-not-secret"'


def test_ipv4_subnets_over_ipv6_transit_render():
    cfg = make(local_address="2001:db8::1", remote_address="2001:db8::2")
    assert child(cfg)["local_ts"] == LEFT_NET
    assert conn(cfg)["leftsubnet"] == LEFT_NET


def test_strongswan_conf():
    tree = swan_tree(ssw.render_strongswan_conf(make(), vici_socket="/run/ipl/charon.vici", log_path="/ipl/c.log"))
    charon = tree["charon"]
    assert charon["load_modular"] == "no"
    plugins = charon["load"].split()
    for needed in ("kdf", "kernel-netlink", "socket-default", "vici", "openssl", "random", "nonce"):
        assert needed in plugins
    assert "kernel-libipsec" not in plugins and "updown" not in plugins
    assert charon["threads"] == "8"
    assert charon["plugins"]["vici"]["socket"] == "unix:///run/ipl/charon.vici"
    log = charon["filelog"]["ipseclab"]
    assert log["path"] == "/ipl/c.log"
    assert {k: log[k] for k in ("default", "ike", "chd", "cfg", "knl", "net")} == \
        {"default": "1", "ike": "4", "chd": "4", "cfg": "2", "knl": "2", "net": "2"}
    assert tree["swanctl"]["load"] == "pem pkcs1 x509 pubkey openssl random nonce"


def test_log_keys_off():
    cfg = make(log_keys=False)
    log = swan_tree(ssw.render_strongswan_conf(cfg, vici_socket="/v", log_path="/l"))["charon"]["filelog"]["ipseclab"]
    assert (log["ike"], log["chd"]) == ("2", "2")
    assert "plutodebug" not in ipsec_conf(lsw.render_ipsec_conf(cfg, log_path="/l"))["config setup"]


def test_updown_and_auto_start():
    cfg = make(updown="/usr/lib/ipsec/_updown", auto_start=True)
    assert "updown" in swan_tree(ssw.render_strongswan_conf(cfg, vici_socket="/v", log_path="/l"))["charon"]["load"]
    assert child(cfg)["updown"] == "/usr/lib/ipsec/_updown"
    assert child(cfg)["start_action"] == "start"
    c = conn(cfg)
    assert (c["leftupdown"], c["auto"]) == ("/usr/lib/ipsec/_updown", "start")


def test_responder_accepting_any_address():
    cfg = make(role="responder", remote_address=None)
    assert swanctl(cfg)["connections"]["lab"]["remote_addrs"] == "%any"
    assert conn(cfg)["right"] == "%any"


def test_identities_of_each_kind():
    cfg = make(local_id=Identity.email("alice@ipseclab.test"), remote_id=Identity.ip(RIGHT))
    c = swanctl(cfg)["connections"]["lab"]
    assert (c["local"]["id"], c["remote"]["id"]) == ("alice@ipseclab.test", RIGHT)
    lc = conn(cfg)
    assert (lc["leftid"], lc["rightid"]) == ("alice@ipseclab.test", RIGHT)
    assert make(local_id="@left.example", remote_id="bob@x.test").local_id == Identity.fqdn("left.example")
    assert make(remote_id="bob@x.test").remote_id == Identity.email("bob@x.test")


def test_mirrored_is_the_other_peer():
    left = make(role="initiator", auto_start=True)
    right = left.mirrored()
    assert (right.local_address, right.remote_address) == (left.remote_address, left.local_address)
    assert (right.local_id, right.remote_id) == (left.remote_id, left.local_id)
    assert (right.local_ts, right.remote_ts) == (left.remote_ts, left.local_ts)
    assert (right.role, right.auto_start) == ("responder", False)
    assert right.mirrored(name="lab") == left.__class__(**{**_fields(left), "auto_start": False})
    assert conn(right)["leftid"] == "@right.ipseclab.test"


def _fields(cfg: PeerConfig) -> dict:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


@pytest.mark.parametrize(("psk", "strongswan", "libreswan"), [
    ("plain text", '"plain text"', '"plain text"'),
    ('has"quote', "0x" + b'has"quote'.hex(), "0x" + b'has"quote'.hex()),
    ("0xdeadbeef", "0x" + b"0xdeadbeef".hex(), "0x" + b"0xdeadbeef".hex()),  # would be read as hex if quoted
    (b"\x00\xffbinary", "0x00ff62696e617279", "0x00ff62696e617279"),
    ("gr\u00fc\u00df", "0x" + "gr\u00fc\u00df".encode().hex(), "0x" + "gr\u00fc\u00df".encode().hex()),
])
def test_psk_encoding(psk, strongswan, libreswan):
    cfg = make(psk=psk)
    assert swanctl(cfg)["secrets"]["ike-lab"]["secret"] == strongswan
    assert lsw.render_ipsec_secrets(cfg).rstrip().endswith(f": PSK {libreswan}")


# --- proposal translation --------------------------------------------------------------------

IKE_SUITES = [
    ("aes256-sha256-ecp256", "aes256-sha256-prfsha256-ecp256", "aes256-sha2_256;dh19"),
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16-prfsha256-ecp256", "aes_gcm_16_256-sha2_256;dh19"),
    ("aes128gcm8-prfsha512-curve25519", "aes128gcm8-prfsha512-curve25519", "aes_gcm_8_128-sha2_512;dh31"),
    ("aes192gcm12-prfsha384-ecp521", "aes192gcm12-prfsha384-ecp521", "aes_gcm_12_192-sha2_384;dh21"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305-prfsha256-curve25519", "chacha20_poly1305-sha2_256;dh31"),
    ("aes256-sha384-modp3072", "aes256-sha384-prfsha384-modp3072", "aes256-sha2_384;dh15"),
    ("aes128-sha1-modp2048", "aes128-sha1-prfsha1-modp2048", "aes128-sha1;dh14"),
    ("aes-sha512-modp8192", "aes128-sha512-prfsha512-modp8192", "aes128-sha2_512;dh18"),
    ("aes128-aes256-sha256-sha384-ecp256-modp2048", "aes128-aes256-sha256-sha384-prfsha256-prfsha384-ecp256-modp2048",
     "aes128+aes256-sha2_256+sha2_384;dh19+dh14"),
    ("aes256-sha256-prfsha256-ecp384", "aes256-sha256-prfsha256-ecp384", "aes256-sha2_256;dh20"),
]


@pytest.mark.parametrize(("given", "strongswan", "libreswan"), IKE_SUITES)
def test_ike_proposal_translation(given, strongswan, libreswan):
    cfg = make(ike_proposals=[given])
    assert swanctl(cfg)["connections"]["lab"]["proposals"] == strongswan
    assert conn(cfg)["ike"] == libreswan


ESP_SUITES = [
    ("aes128-sha256", "aes128-sha256-noesn", "aes128-sha2_256"),
    ("aes256gcm16", "aes256gcm16-noesn", "aes_gcm_16_256"),
    ("aes128gcm128", "aes128gcm16-noesn", "aes_gcm_16_128"),
    ("chacha20poly1305", "chacha20poly1305-noesn", "chacha20_poly1305"),
    ("null-sha256", "null-sha256-noesn", "null-sha2_256"),
    ("aes256gmac", "aes256gmac-noesn", "aes_gmac_256"),
    ("aes128-aesxcbc", "aes128-aesxcbc-noesn", "aes128-aes_xcbc"),
    ("aes256-sha512", "aes256-sha512-noesn", "aes256-sha2_512"),
]


@pytest.mark.parametrize(("given", "strongswan", "libreswan"), ESP_SUITES)
def test_esp_proposal_translation(given, strongswan, libreswan):
    cfg = make(esp_proposals=[given])
    assert child(cfg)["esp_proposals"] == strongswan
    assert conn(cfg)["esp"] == libreswan
    assert conn(cfg)["pfs"] == "no"


def test_several_proposals_and_pfs():
    cfg = make(ike_proposals=["aes256gcm16-prfsha384-ecp384", "aes256-sha256-modp2048"],
               esp_proposals=["aes256gcm16-ecp384", "aes128-sha256-modp2048"], esn=True)
    assert swanctl(cfg)["connections"]["lab"]["proposals"] == \
        "aes256gcm16-prfsha384-ecp384, aes256-sha256-prfsha256-modp2048"
    assert child(cfg)["esp_proposals"] == "aes256gcm16-ecp384-esn, aes128-sha256-modp2048-esn"
    c = conn(cfg)
    assert c["ike"] == "aes_gcm_16_256-sha2_384;dh20,aes256-sha2_256;dh14"
    assert (c["esp"], c["pfs"], c["esn"]) == ("aes_gcm_16_256;dh20,aes128-sha2_256;dh14", "yes", "yes")


@pytest.mark.parametrize(("given", "strongswan", "libreswan"), [
    ("sha256", "sha256-noesn", "sha2_256"),
    ("sha1", "sha1-noesn", "sha1"),
    ("sha512-ecp384", "sha512-ecp384-noesn", "sha2_512;dh20"),
    ("aescmac", "aescmac-noesn", "aes_cmac"),
])
def test_ah_proposal_translation(given, strongswan, libreswan):
    cfg = make(protocol="ah", mode="transport", local_ts=(), remote_ts=(), ah_proposals=[given])
    assert child(cfg)["ah_proposals"] == strongswan
    assert conn(cfg)["ah"] == libreswan


def test_ah_with_esn_renders_for_both():
    cfg = make(protocol="ah", mode="transport", local_ts=(), remote_ts=(), esn=True)
    assert child(cfg)["ah_proposals"] == "sha256-esn"
    assert conn(cfg)["esn"] == "yes"


# --- refusals --------------------------------------------------------------------------------


def refused(render, cfg, *patterns):
    with pytest.raises(ConfigError) as info:
        render(cfg)
    for p in patterns:
        assert re.search(p, str(info.value)), f"{p!r} not in {info.value}"
    return str(info.value)


def libreswan(cfg):
    return lsw.render_ipsec_conf(cfg, log_path="/l")


@pytest.mark.parametrize(("ke", "why"), [
    ("curve448", "Curve448"), ("modp1024", "not compiled"), ("modp768", "removed"),
    ("ecp256bp", "brainpool"), ("ecp224", "not implemented"),
])
def test_libreswan_refuses_key_exchanges_it_lacks(ke, why):
    cfg = make(ike_proposals=[f"aes256-sha256-{ke}"])
    refused(libreswan, cfg, r"^libreswan: peer 'lab': ike_proposals\[0\]: ", why)
    assert swanctl(cfg)["connections"]["lab"]["proposals"].endswith(ke)  # strongSwan does them


def test_libreswan_refuses_ike_integrity_other_than_the_prf():
    cfg = make(ike_proposals=["aes256-sha256-ecp256", "aes256-sha256-prfsha384-ecp256"])
    refused(libreswan, cfg, r"libreswan: peer 'lab': ike_proposals\[1\]: .*derives IKE integrity from the PRF")
    assert "prfsha384" in swanctl(cfg)["connections"]["lab"]["proposals"]


def test_libreswan_refuses_xcbc_in_ike_and_pfs_ke_in_child():
    refused(libreswan, make(ike_proposals=["aes128-aesxcbc-modp2048"]), r"ike_proposals\[0\].*ESP/AH only")
    refused(libreswan, make(ike_proposals=["aes128gcm16-prfaesxcbc-ecp256"]), r"ike_proposals\[0\].*PRF AES128_XCBC")
    refused(libreswan, make(esp_proposals=["aes128-sha256-curve448"]), r"esp_proposals\[0\].*CURVE448")


def test_libreswan_refuses_mixed_pfs():
    refused(libreswan, make(esp_proposals=["aes128-sha256-modp2048", "aes128-sha256"]),
            r"libreswan: peer 'lab': esp_proposals: .*one pfs=")


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"fragmentation": "force"}, r"libreswan: peer 'lab': fragmentation: 'force' .*IKEv1"),
    ({"esn": True, "replay_window": 0}, r"libreswan: peer 'lab': esn: .*replay-window=0"),
    ({"child_lifetime": 90000}, r"libreswan: peer 'lab': child_lifetime: 90000 s is over .*24h"),
    ({"ike_lifetime": 100000, "ike_rekey_margin": 540}, r"ike_lifetime: .*24h"),
    ({"child_rekey_margin": 60}, r"libreswan: peer 'lab': child_rekey_margin: .*one rekeymargin"),
    ({"local_ts": [LEFT_NET, "203.0.113.128/26"]}, r"libreswan: peer 'lab': local_ts: .*one subnet"),
])
def test_libreswan_refusals(kw, pattern):
    refused(libreswan, make(**kw), pattern)


def test_strongswan_expresses_what_libreswan_refuses():
    cfg = make(fragmentation="force", child_rekey_margin=60, child_lifetime=90000,
               local_ts=[LEFT_NET, "203.0.113.128/26"])
    c = swanctl(cfg)["connections"]["lab"]
    assert c["fragmentation"] == "force"
    assert c["children"]["lab"]["local_ts"] == f"{LEFT_NET}, 203.0.113.128/26"


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"nat_t": False}, r"^strongswan: peer 'lab': nat_t: .*NAT"),
    ({"esn": True, "replay_window": 0}, r"^strongswan: peer 'lab': esn: .*kernel"),
])
def test_strongswan_refusals(kw, pattern):
    cfg = make(**kw)
    refused(ssw.render_swanctl_conf, cfg, pattern)
    refused(lambda c: ssw.render_strongswan_conf(c, vici_socket="/v", log_path="/l"), cfg, pattern)


def test_write_helpers(tmp_path):
    cfg = make()
    files = ssw.write_strongswan_config(cfg, tmp_path / "ss", vici_socket="/run/v", log_path="/ipl/c.log")
    assert swan_tree(files.swanctl_conf.read_text())["connections"]["lab"]["version"] == "2"
    assert stat.S_IMODE(files.swanctl_conf.stat().st_mode) == 0o600
    assert "kdf" in files.strongswan_conf.read_text()
    lfiles = lsw.write_libreswan_config(cfg, tmp_path / "ls", log_path="/ipl/p.log", secrets_path="/etc/ipsec.secrets")
    assert "conn lab" in ipsec_conf(lfiles.ipsec_conf.read_text())
    assert stat.S_IMODE(lfiles.ipsec_secrets.stat().st_mode) == 0o600
    assert "PSK" in lfiles.ipsec_secrets.read_text()


def test_write_helpers_write_nothing_when_refused(tmp_path):
    with pytest.raises(ConfigError):
        ssw.write_strongswan_config(make(nat_t=False), tmp_path / "ss", vici_socket="/v", log_path="/l")
    with pytest.raises(ConfigError):
        lsw.write_libreswan_config(make(fragmentation="force"), tmp_path / "ls", log_path="/l")
    assert not (tmp_path / "ss").exists() and not (tmp_path / "ls").exists()


# --- the model's own checks ------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"protocol": "ah", "mode": "transport", "local_ts": (), "remote_ts": (), "encap": True},
     r"^peer 'lab': encap: AH cannot be UDP-encapsulated"),
    ({"encap": True, "nat_t": False}, r"peer 'lab': encap: .*nat_t=False"),
    ({"mode": "transport"}, r"peer 'lab': local_ts: transport mode protects only the host"),
    ({"mode": "transport", "local_ts": (), "remote_ts": ("198.51.100.0/24",), "remote_address": None,
      "role": "responder"}, r"remote_ts: transport mode protects only the host's own traffic; leave it empty or "
                            r"give one host address alone"),
    ({"ike_proposals": ["null-sha256-ecp256"]}, r"ike_proposals\[0\]: .*NULL is for ESP only"),
    ({"ike_proposals": ["aes256-sha256-ecp256", "aes256-sha999-ecp256"]},
     r"peer 'lab': ike_proposals\[1\]: unknown ike proposal keyword 'sha999'"),
    ({"ike_proposals": []}, r"ike_proposals: at least one"),
    ({"esp_proposals": ["aes128-sha256-esn"]}, r"esp_proposals\[0\]: .*esn setting"),
    ({"esp_proposals": ["aes128gcm16-aes128-sha256"]}, r"esp_proposals\[0\]: .*mixes AEAD and non-AEAD"),
    ({"esp_proposals": ["aes128gcm16-sha256"]}, r"esp_proposals\[0\]: .*AEAD cipher takes no integrity"),
    ({"protocol": "ah", "ah_proposals": ["aes128-sha256"]}, r"ah_proposals\[0\]: unknown ah proposal keyword"),
    ({"esp_proposals": "aes128-sha256"}, r"esp_proposals: must be a list"),
    ({"remote_address": "2001:db8::2"}, r"remote_address: 2001:db8::2 is IPv6 but local_address"),
    ({"remote_address": None}, r"remote_address: an initiator needs"),
    ({"remote_address": None, "role": "responder", "remote_id": None}, r"remote_id: required"),
    ({"role": "responder", "auto_start": True}, r"auto_start: only an initiator"),
    ({"child_rekey_margin": 3600}, r"child_rekey_margin: must be positive and less than child_lifetime"),
    ({"ike_lifetime": 0}, r"ike_lifetime: must be a positive"),
    ({"replay_window": -1}, r"replay_window: must be 0"),
    ({"dpd_delay": -5}, r"dpd_delay:"),
    ({"psk": ""}, r"psk: the pre-shared key is empty"),
    ({"local_address": "198.51.100.300"}, r"local_address: '198.51.100.300' is not an IPv4 or IPv6 address"),
    ({"local_ts": ["203.0.113.1/24"]}, r"local_ts: '203.0.113.1/24' is not a network .*host bits"),
    ({"local_id": "bad name!"}, r"local_id: identity 'bad name!' is not a host name"),
    ({"name": "has.dot"}, r"peer name 'has.dot'"),
    ({"mode": "tunel"}, r"mode: must be 'tunnel' or 'transport'"),
    ({"protocol": "esp+ah"}, r"protocol: must be 'esp' or 'ah'"),
    ({"fragmentation": "maybe"}, r"fragmentation: must be"),
])
def test_model_refusals(kw, pattern):
    with pytest.raises(ConfigError) as info:
        make(**kw)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_identity_checks():
    assert Identity.ip("2001:db8:0::1").value == "2001:db8::1"
    assert Identity.parse("198.51.100.9") == Identity.ip("198.51.100.9")
    with pytest.raises(ConfigError, match="not an IPv4 or IPv6"):
        Identity.ip("left.example")
    with pytest.raises(ConfigError, match="not a host name"):
        Identity.fqdn("198.51.100.9")
    with pytest.raises(ConfigError, match="not an e-mail"):
        Identity.email("nobody")


def test_config_is_frozen_and_normalised():
    cfg = make(esp_proposals=["aes128-sha256"], local_ts=LEFT_NET)
    assert cfg.esp_proposals == ("aes128-sha256",)
    assert cfg.local_ts == (ipaddress.ip_network(LEFT_NET),)
    assert isinstance(cfg.local_address, ipaddress.IPv4Address)
    assert hash(cfg) == hash(make(esp_proposals=("aes128-sha256",), local_ts=[LEFT_NET]))
    with pytest.raises(AttributeError):
        cfg.mode = "transport"  # type: ignore[misc]

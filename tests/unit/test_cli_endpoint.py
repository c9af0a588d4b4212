"""``ipseclab endpoint --config FILE``: the PeerConfig file it reads (TOML or JSON) and its one-line errors.

The endpoint itself needs root and a namespace (tests/interop/test_matrix.py runs it against real peers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ipseclab.cli import main
from ipseclab.errors import ConfigError
from ipseclab.lab.impls.ipseclab import endpoint_spec
from ipseclab.lab.peerconfig import PeerConfig, load_peer_config

TOML = """
name = "home"
local_address = "198.51.100.10"
remote_address = "198.51.100.20"
psk = "a secret"
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
esp_proposals = ["aes128gcm16"]
"""


def test_a_toml_file_and_its_json_twin_give_the_same_peer_config_and_spec(tmp_path: Path):
    toml = tmp_path / "home.toml"
    toml.write_text(TOML)
    cfg = load_peer_config(toml)
    assert cfg == PeerConfig("home", "198.51.100.10", "198.51.100.20", "a secret", local_ts=("203.0.113.0/26",),
                             remote_ts=("203.0.113.64/26",), esp_proposals=("aes128gcm16",))
    twin = tmp_path / "home.json"
    twin.write_text(json.dumps({"name": "home", "local_address": "198.51.100.10", "remote_address": "198.51.100.20",
                                "psk": "a secret", "local_ts": ["203.0.113.0/26"], "remote_ts": ["203.0.113.64/26"],
                                "esp_proposals": ["aes128gcm16"]}))
    assert load_peer_config(twin) == cfg
    assert endpoint_spec(cfg, tmp_path)["ike"]["esp_proposals"] == ["aes128gcm16"]


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("name = ", ".toml", "not valid TOML"),
    ("{", ".json", "not valid JSON"),
    ("[1, 2]", ".json", "expected a table of PeerConfig settings"),
    (TOML + 'colour = "blue"\n', ".toml", "unknown setting(s) colour"),
    ('name = "home"\n', ".toml", "missing setting(s) local_address, remote_address, psk"),
    (TOML.replace('"198.51.100.10"', '"not-an-address"'), ".toml", "local_address"),
    (TOML + 'mode = "sideways"\n', ".toml", "mode"),
])
def test_a_bad_file_is_one_line_naming_it_and_what_is_wrong(tmp_path: Path, text, suffix, message):
    path = tmp_path / f"peer{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_peer_config(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_the_command_gives_one_line_and_status_2_for_a_missing_file(tmp_path: Path, capsys):
    assert main(["endpoint", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ipseclab endpoint: error:") and "nope.toml: cannot read it" in err and "\n" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="checks the refusal of a user without root; this runs as root")
def test_the_command_refuses_without_root_in_one_line(tmp_path: Path, capsys):
    (tmp_path / "home.toml").write_text(TOML)
    assert main(["endpoint", "--config", str(tmp_path / "home.toml")]) == 2
    assert "needs root" in capsys.readouterr().err


def test_a_setting_the_endpoint_cannot_do_is_one_line_before_anything_starts(tmp_path: Path, capsys):
    (tmp_path / "home.toml").write_text(TOML + "reauth = true\n")
    assert main(["endpoint", "--config", str(tmp_path / "home.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "reauthentication (reauth)" in err and "\n" not in err

"""The CLI on bad input: one line naming what is wrong, exit status 2, never a traceback; and the README's
REPL lines run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipseclab.cli import main
from tests.fuzz.dataplane import pcap_frames, pcapng_bytes

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "pcaps" / "strongswan-aes256-sha256-modp2048.pcap"
TABLE = ROOT / "pcaps" / "strongswan-aes256-sha256-modp2048.ikev2_decryption_table"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipseclab.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: d / "missing.pcap", "no such file"),
    (lambda d: (d / "x.pcap", (d / "x.pcap").write_text("this is not a capture"))[0], "not a pcap or pcapng"),
])
def test_decrypt_rejects_files_that_are_not_captures(tmp_path, make, needle):
    proc = _run("decrypt", str(make(tmp_path)), "--keys", str(TABLE))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


@pytest.mark.parametrize(("row", "needle"), [
    ("abc,def\n", "expected 8 fields"),
    ('zz,00,00,00,"AES-CBC-256 [RFC3602]",00,00,"HMAC_SHA2_256_128 [RFC4868]"\n', "ISPI is not hex"),
    ('0000000000000001,0000000000000002,00,00,"ROT13 [RFC0]",00,00,"NONE [RFC4306]"\n',
     "unknown encryption algorithm 'ROT13 [RFC0]'"),
])
def test_decrypt_rejects_malformed_key_tables_naming_the_line(tmp_path, row, needle):
    table = tmp_path / "keys"
    table.write_text(row)
    proc = _run("decrypt", str(CAPTURE), "--keys", str(table))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and needle in proc.stderr and "line 1" in proc.stderr


def test_truncated_capture_still_reports_every_packet_it_could_read(tmp_path, capsys):
    data = CAPTURE.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 40])  # the last record loses its tail
    rc = main(["decrypt", str(cut), "--keys", str(TABLE)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = out.splitlines()
    assert sum(1 for ln in lines if ln.startswith("#") and "ERROR" not in ln) == 7  # all complete messages
    assert lines[-2] == ("#8 ?:0 -> ?:0 ERROR capture truncated: record 8 at byte 2154 needs 142 bytes, 102 present; "
                         "the capture ends here")


def test_readme_repl_lines_run(tmp_path: Path):
    """Every ``python`` block of the README runs, in order in one interpreter, and prints what the README shows.

    In a child interpreter: the blocks import ``scapy.all``, whose layer bindings would leak into other tests.
    """
    # the sessions against live peers (root, a lab) are tests/interop/test_readme_sessions.py's
    text = re.sub(r"<!-- session: [\w-]+ -->\n```python\n.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3, "README has its python REPL blocks"
    script, expected = [], []
    for n, block in enumerate(blocks):
        script.append(f"print('--- block {n + 1}', flush=True)")
        for line in block.splitlines():
            if line.startswith(">>> ") or line.startswith("... "):
                script.append(line[4:])
            elif line.strip() and not line.startswith("'"):  # an expression's value: exec() does not show it
                expected.append((n + 1, line))
    (tmp_path / "readme.py").write_text("\n".join(script) + "\n")
    # this checkout's ipseclab first (an installed or editable one elsewhere must not answer for it)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(tmp_path / "readme.py")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IKE_AUTH request #1" in proc.stdout
    for n, line in expected:
        assert line in proc.stdout, f"README block {n} shows {line!r}; it printed:\n{proc.stdout[-3000:]}"


# --- issue 9, items 11-17: hostile key files and captures, closed pipes, unknown cases ----------------


def _one_line_error(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _rows() -> list[str]:
    return [ln for ln in TABLE.read_text().splitlines() if ln and not ln.startswith("#")]


def test_a_key_file_that_is_not_text_names_the_file(capsys):
    """Item 11: the capture given as the key file (a common slip) is not UTF-8."""
    rc = main(["decrypt", str(CAPTURE), "--keys", str(CAPTURE)])
    _one_line_error(capsys, rc, str(CAPTURE), "UTF-8")


def test_a_key_file_with_a_utf8_bom_is_read(tmp_path, capsys):
    """Item 11: editors on Windows save a BOM; it is not part of the first SPI."""
    table = tmp_path / "bom"
    table.write_bytes(b"\xef\xbb\xbf" + TABLE.read_bytes())
    assert main(["decrypt", str(CAPTURE), "--keys", str(table)]) == 0, capsys.readouterr().err
    assert "6 decrypted, 0 with errors" in capsys.readouterr().out


def test_a_cbc_row_without_integrity_names_the_file_and_line(tmp_path, capsys):
    """Item 12: AES-CBC needs an integrity algorithm; ``NONE [RFC4306]`` is only for AEAD rows."""
    f = _rows()[0].split(",")
    table = tmp_path / "keys"
    table.write_text("# a comment\n" + ",".join([*f[:5], "", "", '"NONE [RFC4306]"']) + "\n")
    rc = main(["decrypt", str(CAPTURE), "--keys", str(table)])
    _one_line_error(capsys, rc, f"{table} line 2", "integrity")


def test_a_huge_key_field_names_the_file_and_line(tmp_path, capsys):
    """Item 13: a field over the csv module's 131,072-character limit."""
    table = tmp_path / "keys"
    table.write_text(_rows()[0] + "\n" + "0" * 140_000 + ",1\n")
    rc = main(["decrypt", str(CAPTURE), "--keys", str(table)])
    _one_line_error(capsys, rc, f"{table} line 2")


def test_an_ike_row_with_a_wrong_key_length_names_the_file_and_line(tmp_path, capsys):
    """Item 17: SK_ei two bytes short for AES-256."""
    f = _rows()[0].split(",")
    table = tmp_path / "keys"
    table.write_text("\n" + ",".join([*f[:2], f[2][4:], *f[3:]]) + "\n")
    rc = main(["decrypt", str(CAPTURE), "--keys", str(table)])
    _one_line_error(capsys, rc, f"{table} line 2", "SK_ei", "32")


def test_an_esp_row_with_a_wrong_key_length_names_the_file_and_line(tmp_path, capsys):
    rows = tmp_path / "esp_sa"
    rows.write_text('"IPv4","*","*","0x00001234","AES-CBC [RFC3602]","0x0011","HMAC-SHA-256-128 [RFC4868]",'
                    '"0x' + "00" * 32 + '"\n')
    rc = main(["decrypt", str(CAPTURE), "--keys", str(TABLE), "--esp-keys", str(rows)])
    _one_line_error(capsys, rc, f"{rows} line 1")


def test_pcapng_reads_like_the_pcap_it_was_made_from(tmp_path, capsys):
    data = CAPTURE.read_bytes()
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(pcapng_bytes(pcap_frames(data), int.from_bytes(data[20:24], "little")))
    assert main(["decrypt", str(ng), "--keys", str(TABLE)]) == 0
    assert "8 IKE datagrams, 6 decrypted, 0 with errors" in capsys.readouterr().out


@pytest.mark.parametrize("cut", [40, 2, 200])
def test_a_truncated_pcapng_says_so_and_fails(tmp_path, capsys, cut):
    """Item 14: a pcapng that ends inside a block."""
    data = CAPTURE.read_bytes()
    ng = pcapng_bytes(pcap_frames(data), int.from_bytes(data[20:24], "little"))
    path = tmp_path / "cut.pcapng"
    path.write_bytes(ng[: len(ng) - cut])
    rc = main(["decrypt", str(path), "--keys", str(TABLE)])
    out = capsys.readouterr().out
    assert rc == 1 and "truncated" in out, out


def test_a_pcap_header_followed_by_random_bytes_says_so_and_fails(tmp_path, capsys):
    """Item 14: nothing of the body is a record; the reader must say it could not read it."""
    import random

    path = tmp_path / "junk.pcap"
    path.write_bytes(CAPTURE.read_bytes()[:24] + random.Random(9).randbytes(2_000_000))
    rc = main(["decrypt", str(path), "--keys", str(TABLE)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "undecodable" in out or "truncated" in out, out


def test_output_into_a_closed_pipe_exits_quietly():
    """Item 15: ``ipseclab decrypt ... | head -1``: the reader went away; no traceback."""
    import os

    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE, deterministically
    try:
        proc = subprocess.run([sys.executable, "-m", "ipseclab.cli", "decrypt", str(CAPTURE), "--keys", str(TABLE),
                               "--json"], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 1


def test_lab_up_with_an_unknown_case_is_one_line(capsys):
    """Item 16: as ``interop --case bogus`` already was."""
    rc = main(["lab", "up", "--case", "bogus", "--no-wait"])
    _one_line_error(capsys, rc, "no test case 'bogus'", "esp-tunnel")

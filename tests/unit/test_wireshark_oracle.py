"""Wireshark (tshark 4.0, through pyshark) decrypts strongSwan's captures with the key tables ipseclab writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipseclab.pcap.keyfiles import IkeSaKeyRow, read_ikev2_decryption_table, write_ikev2_decryption_table
from ipseclab.pcap.wireshark import ike_records
from tests.unit.test_strongswan_fixtures import ROOT, _row
from tests.vectors import cases

pytestmark = pytest.mark.tshark


@pytest.mark.parametrize("v", [c for c in cases("strongswan_kdf") if int(c.values[0]["encr_id"]) != 28])
def test_tshark_decrypts_every_sk_payload_with_ipseclab_key_table(v, tmp_path: Path):
    table = tmp_path / "ikev2_decryption_table"
    write_ikev2_decryption_table(table, [_row(v)])
    records = ike_records(ROOT / v["capture"], read_ikev2_decryption_table(table))
    encrypted = [r for r in records if r.encrypted]
    assert len(records) >= 8 and len(encrypted) >= 6
    bad = [(r.frame, r.icv_text) for r in encrypted if not (r.decrypted and r.icv_ok)]
    assert not bad, f"frames Wireshark did not decrypt with a correct ICV: {bad}"


def test_tshark_reports_a_wrong_key_so_the_check_can_fail(tmp_path: Path):
    v = cases("strongswan_kdf")[1].values[0]
    row = _row(v)
    wrong = IkeSaKeyRow(row.spi_i, row.spi_r, row.sk_ei, row.sk_er, row.encr_id, row.encr_key_bits,
                        bytes(len(row.sk_ai)), bytes(len(row.sk_ar)), row.integ_id)
    records = ike_records(ROOT / v["capture"], [wrong])
    encrypted = [r for r in records if r.encrypted]
    assert encrypted and all(r.icv_ok is False for r in encrypted)


def test_a_tshark_that_ends_a_pass_with_status_255_is_run_once_more_then_reported(monkeypatch, tmp_path: Path):
    """The pass is repeated from scratch (no record twice) after one crash at close; two crashes are an error."""
    import pyshark
    from pyshark.capture.capture import TSharkCrashException

    from ipseclab.errors import IpsecLabError

    v = cases("strongswan_kdf")[1].values[0]
    rows = [_row(v)]
    expected = ike_records(ROOT / v["capture"], rows)
    real = pyshark.FileCapture
    crashes = {"left": 1}

    made: list[CrashingOnce] = []

    class CrashingOnce(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)
            made.append(self)

        def close(self) -> None:
            if crashes["left"] > 0:
                crashes["left"] -= 1
                # as pyshark's close: tshark waited for, then the raise, before it forgets the process
                for process in list(self._running_processes):
                    self.eventloop.run_until_complete(process.wait())
                raise TSharkCrashException("TShark (pid 1) seems to have crashed (retcode: 255).")
            super().close()

    monkeypatch.setattr(pyshark, "FileCapture", CrashingOnce)
    assert ike_records(ROOT / v["capture"], rows) == expected and crashes["left"] == 0
    # nothing left for pyshark's __del__ to close (and raise about again, as an ignored exception later)
    assert made and not any(cap._running_processes for cap in made)
    crashes["left"] = 2
    with pytest.raises(IpsecLabError, match="tshark failed twice"):
        ike_records(ROOT / v["capture"], rows)


def test_pdml_cleaning_deletes_what_pysharks_own_does_and_parses_the_same():
    """tshark_pass has pyshark delete XML's forbidden characters with one regular expression (pyshark's dict
    translate takes a lookup per character once the PDML is not ASCII: 2.9 s per capture of a TCP download).
    The text must be pyshark's exactly: the same deletion on every code point, the same packet parsed."""
    from pyshark.tshark.output_parser import tshark_xml

    from ipseclab.pcap import wireshark

    every = "".join(chr(c) for c in range(0x110000))
    assert wireshark._BAD_XML_CHARS.sub("", every) == every.translate(tshark_xml.DEL_BAD_XML_CHARS)
    pdml = ('<packet><proto name="geninfo"><field name="num" show="7"/></proto><proto name="frame"/>'
            '<proto name="data"><field name="data.text" show="a\x01b\u00e9c\x1f\ufffe"/></proto></packet>').encode()
    wireshark._fast_xml_cleaning()
    ours_fn = tshark_xml.packet_from_xml_packet
    assert getattr(ours_fn, "ipseclab_fast", False), "tshark_pass's cleaning is not what pyshark calls"
    theirs, ours = ours_fn.original(pdml), ours_fn(pdml)
    assert ours.number == theirs.number == "7"
    assert ours.data.get_field_value("text") == theirs.data.get_field_value("text") == "ab\u00e9c"

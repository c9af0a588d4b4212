"""Captures analysed with Wireshark key tables: IKE decrypted with the codec, ESP/AH with the data plane.

The engine behind ``ipseclab decrypt`` and the interop check that ipseclab decrypts what the
peers sent.  It sits above ``pcap/`` (reading captures and key tables), ``packets/`` (the IKE
codec and its SK payload) and ``esp/`` (EspSA, AhSA), and below the command line, ``lab/`` and
``endpoint/``; it never imports ``ike/``, the engine whose output it checks.

- ``keyrows``: rows from SAs and engine events, SAs and SK crypto from rows (the one place);
- ``ike``, ``esp``: one decryptor each, a packet at a time;
- ``stream``: one pass over a capture yielding both kinds of record in frame order (``Dispatcher``: which
  decryptor a packet goes to);
- ``render``: records as lines or JSON, written as they come;
- ``fast``: what ``ipseclab decrypt`` calls: ``render``'s output straight from a classic pcap, the common
  ESP packet read, verified and written inline, every other packet through ``stream.Dispatcher``.
- ``workers``: ``fast``'s chunks scanned by forked processes (a large regular file, more than one CPU), the
  output still applied and written in record order by the calling process.
"""

from .esp import EspDecryptor, EspRecord, decrypt_esp_capture
from .ike import IkeDecryptor, IkeRecord, decrypt_capture, ike_datagrams
from .keyrows import check_esp_row, crypto_from_row, esp_sa_row, ike_sa_row, read_key_tables
from .stream import records

__all__ = [
    "EspDecryptor", "EspRecord", "IkeDecryptor", "IkeRecord", "check_esp_row", "crypto_from_row",
    "decrypt_capture", "decrypt_esp_capture", "esp_sa_row", "ike_datagrams", "ike_sa_row", "read_key_tables",
    "records",
]

"""The ``ipseclab`` command line.

Errors the user can act on (a file that is not a capture, a malformed key
table, an unknown algorithm) end the command with a one-line message and exit
status 2, never a traceback.  ``decrypt`` exits 1 when some packets could not
be decoded or decrypted (they are still listed), 0 when all were.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import IpsecLabError


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from .decrypt import decrypt_capture
    from .packets.describe import message_dict
    from .pcap.keyfiles import read_ikev2_decryption_table

    rows = []
    for path in args.keys or []:
        rows.extend(read_ikev2_decryption_table(path))
    records = decrypt_capture(args.pcap, rows)
    failures = sum(1 for r in records if r.error)
    if args.json:
        doc = []
        for r in records:
            item = {
                "frame": r.frame, "time": r.time, "src": f"{r.src}:{r.sport}", "dst": f"{r.dst}:{r.dport}",
                "decrypted": r.decrypted, "error": r.error,
                "message": message_dict(r.message) if r.message else None,
            }
            if r.reassembled is not None:
                item["reassembled"] = message_dict(r.reassembled)
            doc.append(item)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in records:
            print(r.line())
        print(f"{len(records)} IKE datagrams, {sum(r.decrypted for r in records)} decrypted, {failures} with errors")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipseclab", description="IPsec packet lab and interoperability tester")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("decrypt", help="print the IKE messages of a capture, decrypted with Wireshark key files")
    p.add_argument("pcap", help="a pcap or pcapng file")
    p.add_argument("--keys", action="append", metavar="FILE",
                   help="an ikev2_decryption_table file (Wireshark's format); may be repeated")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_decrypt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except IpsecLabError as exc:
        print(f"ipseclab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ipseclab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

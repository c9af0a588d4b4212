"""The ``ipseclab`` command line.

Errors the user can act on (a file that is not a capture, a malformed key
table, an unknown algorithm) end the command with a one-line message and exit
status 2, never a traceback.  ``decrypt`` exits 1 when some packets could not
be decoded or decrypted (they are still listed), 0 when all were.  Output into a
closed pipe (``| head -1``) ends the command quietly with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from .errors import ConfigError, IpsecLabError


def _cmd_decrypt(args: argparse.Namespace) -> int:
    """A thin layer over ``analysis``: read the tables, stream the records out, exit 1 if any failed."""
    from .analysis import read_key_tables
    from .analysis.fast import write_decrypted

    if not args.keys and not args.esp_keys:
        raise ConfigError("give --keys (ikev2_decryption_table) and/or --esp-keys (esp_sa)")
    rows, esp_rows, skipped = read_key_tables(args.keys or [], args.esp_keys or [])
    for note in skipped:  # once per row, before any packet: the rest of the table is used
        print(f"warning: {note}; row skipped", file=sys.stderr)
    sys.stdout.flush()  # the warnings' order kept: records go to the binary stream underneath
    out = sys.stdout.buffer
    # an unreadable capture fails before anything is written
    tally = write_decrypted(args.pcap, rows, esp_rows if args.esp_keys else None, out, as_json=args.json,
                            scapy=args.verbose)
    if not args.json:
        out.write((tally.summary(bool(args.esp_keys)) + "\n").encode())
    out.flush()
    return 1 if tally.errors else 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .lab import cleanup
    from .lab.runtimes import KERNEL_IPSEC_ENV

    if args.action == "cleanup":
        found = cleanup.sweep(dry_run=args.dry_run)
        print(("would remove: " if args.dry_run else "removed: ") + found.describe())
        return 0
    if args.action == "status":
        found = cleanup.sweep(dry_run=True)
        print("lab resources: " + found.describe())
        return 0
    if args.action == "down":
        found = cleanup.sweep(args.run_id)
        print("removed: " + found.describe())
        return 0
    # up: boot a pair, negotiate, ping, and keep it running until Enter/SIGINT (then tear down)
    from .interop import case_configs
    from .lab.lab import Lab, LabSpec
    from .lab.topology import make_topology
    from .testcases import by_name

    if args.kernel_ipsec:  # read by every Lab of this process (lab.runtimes.choose_runtime)
        os.environ[KERNEL_IPSEC_ENV] = args.kernel_ipsec
    case = by_name(args.case)
    left, right = case_configs(case, make_topology(case.topology, "probe"))
    spec = LabSpec(left, right, case.topology, args.initiator, args.responder, args.runtime or "")
    with Lab(spec, run_dir=Path(args.out).resolve() if args.out else None) as lab:
        if lab.runtime:
            print(f"runtime: {lab.runtime.name}: {lab.runtime.reason}")
        if lab.kernel and lab.probe:
            print(f"kernel: {lab.kernel.describe()}: {lab.probe.summary()}")
        print(f"lab {lab.run_id} up in {lab.run_dir}: {args.initiator} (left) -> {args.responder} (right), "
              f"{case.topology} topology; guests ready in {max(lab.timings.boot.values()):.1f} s")
        print(lab.initiate("left").strip().splitlines()[-1])
        ping = lab.ping("left", count=case.pings).strip().splitlines()
        print(next((line for line in ping if "transmitted" in line), ping[-1] if ping else "no ping output"))
        if not args.no_wait:
            with contextlib.suppress(EOFError):
                input("lab is up; press Enter (or Ctrl-C) to tear it down ")
    print(f"lab {lab.run_id} down; pcaps, keys (ikev2_decryption_table, esp_sa) and logs in {lab.run_dir}")
    for p in sorted(lab.run_dir.glob("*.pcap")):
        print(f"  {p}")
    return 0


def _cmd_kernel(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .lab.runtimes.uml_kernel import install_kernel, select_kernel
    from .lab.runtimes.uml_probe import MARK, KernelCannotRun, check_kernel, diagnose, host_cpu

    if args.action == "install":
        kernel = install_kernel(args.suite, force=args.force)
        print(f"kernel: {kernel.describe()}")
        args.again = True  # a new kernel gets a fresh verdict
    elif args.console_log:
        # diagnose a console log kept from a failed boot (this host's CPU; the log names the kernel)
        try:
            text = Path(args.console_log).read_text(errors="replace")
        except OSError as exc:
            raise ConfigError(f"cannot read {args.console_log}: {exc.strerror}") from None
        if MARK in text:
            print(f"probe: the kernel in {args.console_log} ran the probe's init")
            return 0
        line, evidence = diagnose(text, "", host_cpu())
        raise KernelCannotRun(line, evidence)
    kernel = select_kernel()
    if args.action == "show":
        print(f"kernel: {kernel.describe()}")
        print(f"  binary: {kernel.binary}\n  modules: {kernel.modules}")
    verdict = check_kernel(kernel, again=args.again)
    if not verdict.ok:
        raise verdict.error()
    print(f"probe: {verdict.summary()}")
    return 0


def _cmd_images(args: argparse.Namespace) -> int:
    from .lab.runtimes import docker_images

    client = docker_images.engine()
    if args.action == "build":
        for impl in args.impl or docker_images.image_names():
            image = docker_images.build(impl, client=client)
            how = f"built in {image.built_in:.1f} s" if image.built_in else "cached: nothing to build"
            print(f"{image.tag}  {how}")
    elif args.action == "list":
        for row in docker_images.listed(client):
            print(f"{row['tag']:<44} {row['role']:<5} {row['size_mb']:>5} MB  {row['created'][:19]}  "
                  f"{'current' if row['current'] else 'stale (inputs changed)'}")
    else:
        removed, kept = docker_images.prune(everything=args.all, client=client)
        print("removed: " + (" ".join(removed) or "nothing"))
        if kept:
            print("kept (a container uses them): " + " ".join(kept))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``command="decrypt"`` only that command's parser: ``decrypt`` then
    imports none of the lab's modules (tens of milliseconds on every run)."""
    parser = argparse.ArgumentParser(prog="ipseclab", description="IPsec packet lab and interoperability tester")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("decrypt", help="print the IKE, ESP and AH packets of a capture, decrypted with "
                                       "Wireshark key files")
    p.add_argument("pcap", help="a pcap or pcapng file")
    p.add_argument("--keys", action="append", metavar="FILE",
                   help="an ikev2_decryption_table file (Wireshark's format); may be repeated")
    p.add_argument("--esp-keys", action="append", metavar="FILE",
                   help="an esp_sa file (Wireshark's format) for the ESP/AH packets; may be repeated")
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON array, one record a line)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="describe each decrypted inner packet with Scapy's summary (slower; text output)")
    p.set_defaults(func=_cmd_decrypt)
    if command == "decrypt":
        return parser

    from .cli_endpoint import add_endpoint_parser
    from .cli_interop import RUNTIME_HELP, add_parsers
    from .lab.runtimes import KERNEL_IPSEC_HELP, KERNEL_IPSEC_MODES, RUNTIMES
    from .lab.runtimes.uml_kernel import DEFAULT_SUITE

    add_parsers(sub)
    add_endpoint_parser(sub)

    p = sub.add_parser("lab", help="boot, inspect and clean up labs (root)")
    p.add_argument("action", choices=["up", "status", "down", "cleanup"])
    p.add_argument("--case", default="esp-tunnel", help="the test case whose setup 'up' boots")
    p.add_argument("--initiator", default="strongswan", help="an implementation (see --pair of interop)")
    p.add_argument("--responder", default="libreswan", help="an implementation (see --pair of interop)")
    p.add_argument("--out", help="run directory for 'up'")
    p.add_argument("--run-id", help="the run whose resources 'down' removes (default: every lab's)")
    p.add_argument("--no-wait", action="store_true", help="'up' tears down right after the ping")
    p.add_argument("--runtime", choices=RUNTIMES, help=RUNTIME_HELP)
    p.add_argument("--kernel-ipsec", choices=KERNEL_IPSEC_MODES, help=KERNEL_IPSEC_HELP)
    p.add_argument("--dry-run", action="store_true", help="'cleanup' only lists what it would remove")
    p.set_defaults(func=_cmd_lab)

    p = sub.add_parser("kernel", help="the User-Mode Linux kernel the lab boots: show it, install it, probe it")
    p.add_argument("action", nargs="?", default="show", choices=["show", "install", "probe"])
    p.add_argument("--suite", default=DEFAULT_SUITE, help="'install': the Debian suite to take user-mode-linux from")
    p.add_argument("--force", action="store_true", help="'install': install even if a kernel is in the cache")
    p.add_argument("--again", action="store_true", help="boot the probe again instead of using its cached verdict")
    p.add_argument("--console-log", metavar="FILE",
                   help="'probe': diagnose a kept UML console log instead of booting the kernel")
    p.set_defaults(func=_cmd_kernel)

    p = sub.add_parser("images", help="the peers' docker images (the docker runtime): build, list, prune")
    p.add_argument("action", choices=["build", "list", "prune"])
    p.add_argument("impl", nargs="*", help="'build': implementations (default: all)")
    p.add_argument("--all", action="store_true", help="'prune': remove every ipseclab image, not only stale ones")
    p.set_defaults(func=_cmd_images)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] == "decrypt" else None).parse_args(argv)
    try:
        rc: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return rc
    except BrokenPipeError:
        # the reader went away (``| head -1``): stop quietly, as the Python docs' SIGPIPE note does, pointing
        # stdout at /dev/null so the interpreter's last flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGINT/SIGTERM while a lab was up (LabInterrupted)
        print(f"ipseclab {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except IpsecLabError as exc:
        print(f"ipseclab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``ipseclab decrypt`` against ``tshark`` on the same capture and keys, in one run.

Run: ``python -m tests.bench.bench_decrypt`` (default sizes 100,000 and 1,000,000 packets, 111 MB and 1.1 GB;
``--packets N ...`` to choose, ``--runs R`` for the median of R runs, ``--keep DIR`` to keep the files,
``--before CHECKOUT`` to time another checkout's ipseclab, a worktree of main say, in the same run,
``--one-process`` to time ipseclab without its worker processes too).

For each size it writes a capture into a temporary directory: an IKE_SA_INIT/IKE_AUTH
exchange between two ipseclab engines wired in memory (``ike.loopback``; AES-GCM-256 IKE SA),
then ``N`` ICMP echo requests of 1,000 bytes of data (1,028-byte inner packets) protected by one
tunnel-mode AES-GCM-128 ``EspSA`` (the ESP SA's keys and every packet come from a seeded
generator, so the ESP stream is the same every run; the IKE exchange's DH keys are fresh each
run), 1,114 bytes a frame on Ethernet: 111 MB for 100,000 packets.  Beside it the two Wireshark
key files, made by ``analysis.keyrows`` from the engine's ``IkeSaEstablished`` and the EspSA.

Then, each in its own process with its output to /dev/null, timed by wall clock, its CPU time
(its worker processes' included) and its peak memory, RSS and PSS summed over its processes (sampled
every 10 ms; RSS counts a page shared by a parent and its forked workers once per process, PSS splits it):

* ``ipseclab decrypt CAPTURE --keys ... --esp-keys ... --json`` (with two worker processes on 2 CPUs);
* the same in text mode;
* ``tshark -r CAPTURE`` with the same rows as ``uat:`` options, ESP decryption and its ICV check on
  (``esp.enable_encryption_decode``, ``esp.enable_authentication_check``), its default one-line output;
* with ``--one-process``, ipseclab again without workers (``IPSECLAB_DECRYPT_WORKERS=0``); with
  ``--before CHECKOUT``, another checkout's ipseclab.

Before timing, both are checked to have decrypted the capture: ipseclab's exit status is 0 (every
IKE message decrypted, every ESP packet verified) and tshark shows the inner ICMP of the first
1,000 frames with a good ICV.  The goal (issue 10): ipseclab at least 2x faster than tshark in
both output modes, and under 100 MB whatever the capture's size.  No assertion on time:
the table is the result.

The timed checkouts are byte-compiled first (``compileall``), as an installed package is: this
environment sets PYTHONDONTWRITEBYTECODE, under which every module was compiled again on every run
(about 0.4 G instructions, as much as 10,000 packets, before this was done).  ``--varied`` gives every
ping random data, so JSON's memo of a repeated payload's hex (``analysis.fast.HEX_SPLIT``) never hits.

Measured 2026-12-01 03:27 UTC on a quiet machine (Intel Xeon, 2 CPUs, no AMX, load average 0.0 at the start, no
other lab running; median of 3 runs for 100,000 packets, one run for 1,000,000):

| packets | command | wall s | CPU s | peak RSS (sum) | peak PSS (sum) | tshark's wall / this | tshark's CPU / this |
|---:|---|---:|---:|---:|---:|---:|---:|
| 100,000 | ipseclab decrypt --json | 0.66 | 0.97 | 84 MB | 42 MB | 2.35 | 1.52 |
| 100,000 | ipseclab decrypt (text) | 0.57 | 0.83 | 71 MB | 29 MB | 2.75 | 1.78 |
| 100,000 | tshark | 1.56 | 1.48 | 192 MB | 190 MB | | |
| 100,000 ``--varied`` | ipseclab decrypt --json | 0.78 | 1.19 | 84 MB | 42 MB | 2.34 | 1.44 |
| 100,000 ``--varied`` | ipseclab decrypt (text) | 0.53 | 0.74 | 71 MB | 29 MB | 3.44 | 2.31 |
| 100,000 ``--varied`` | tshark | 1.82 | 1.72 | 198 MB | 195 MB | | |
| 1,000,000 | ipseclab decrypt --json | 5.81 | 8.65 | 84 MB | 42 MB | 2.88 | 1.59 |
| 1,000,000 | ipseclab decrypt (text) | 4.58 | 6.84 | 71 MB | 29 MB | 3.65 | 2.01 |
| 1,000,000 | tshark | 16.74 | 13.74 | 302 MB | 299 MB | | |

By the clock, what a user waits for, ipseclab is 2.3-3.7x faster than tshark in both modes, random payloads
included, in 84 MB whatever the capture's size (tshark: 192-302 MB); it gets there with two worker processes on
the two CPUs, so by CPU time JSON is 1.4-1.6x and text 1.8-2.3x tshark's single process.

Measured 2026-11-30 21:07 UTC (AMD EPYC, 2 CPUs, no AMX, shared with other sessions' interop labs: load
average 5.0 at the start, 7.0 at the end; median of 3 runs, taking turns; "before" is main at 9ae100a,
byte-compiled too):

| packets | command | wall s | CPU s | peak RSS (sum) | peak PSS (sum) | tshark's wall / this | tshark's CPU / this |
|---:|---|---:|---:|---:|---:|---:|---:|
| 100,000 | ipseclab decrypt --json | 2.40 | 0.95 | 84 MB | 37 MB | 2.89 | 1.77 |
| 100,000 | ipseclab decrypt (text) | 2.39 | 0.82 | 71 MB | 24 MB | 2.90 | 2.06 |
| 100,000 | tshark | 6.92 | 1.68 | 193 MB | 186 MB | | |
| 100,000 | before: --json | 3.96 | 1.21 | 89 MB | 41 MB | 1.75 | 1.39 |
| 100,000 | before: (text) | 1.75 | 0.82 | 76 MB | 27 MB | 3.95 | 2.05 |

Right after, with ``--varied`` (load 7.0 to 8.4): JSON 4.81 s / 1.49 s CPU (1.59x / 1.55x tshark's 7.64 s /
2.30 s), text 2.87 s / 0.91 s (2.66x / 2.52x).  Twenty minutes earlier (load 9.9 to 11): JSON 5.12 s / 1.04 s
(2.40x / 2.14x tshark's 12.30 s / 2.24 s), text 3.20 s / 0.91 s (3.84x / 2.46x), before's JSON 1.72x by CPU.
The machine ran two to three times slower than at the 18:18 measurement below (tshark 1.7-2.3 s of CPU
against 0.70 s), and the wall figures swing with the other sessions' load; CPU time is steadier, and
instruction counts (callgrind, one process, byte-compiled; start-up from a capture of one ping, per packet
from 10,000) do not move at all:

| command | start-up | per packet | 100,000 packets | tshark / this |
|---|---:|---:|---:|---:|
| tshark | 870 M | 74.3 k | 8.30 G | |
| ipseclab decrypt --json | 419 M | 37.4 k | 4.16 G | 2.00 |
| ipseclab decrypt (text) | 417 M | 34.1 k | 3.83 G | 2.17 |
| before: --json | 478 M | 52.7 k | 5.75 G | 1.44 |
| before: (text) | 468 M | 36.0 k | 4.07 G | 2.04 |

JSON's per-packet count fell by 15 k: the inner packet's hex was 14.4 k of it (``_Py_strhex_impl``; no
standard-library call hexes faster), now only its first 64 bytes unless the payload changes; the rest is
the AES-GCM call (about 9.4 k with ``cryptography``'s wrapper, 2.5 k of it the cipher) and the interpreter.
With workers, CPU time adds the kernel's copies and the pipes: this process is about a quarter of it.

Earlier (18:18 UTC, load 4.3-6.7, median of 3, modules compiled on every run; "before" main at ea8ca71):
100,000 packets 0.63 s / 0.54 s CPU with JSON (1.48x / 1.30x tshark's 0.93 s / 0.70 s), 0.41 s / 0.40 s in
text mode (2.28x / 1.74x); 1,000,000 packets 5.76 s / 4.06 s with JSON (2.73x / 1.38x tshark's 15.71 s /
5.61 s) and 7.48 s / 2.86 s in text mode (2.10x / 1.97x), 91 MB RSS summed, 41 MB PSS, against tshark's
192-302 MB.  Memory is flat: the parent's pages are counted again in each forked worker's RSS, PSS
splits them; 45 MB RSS in one process.  Before issue 10's rework the same 100,000 packets took 8.5 s and
441 MB with ``--json`` and 28.5 s in text mode (two reads, every record kept, Scapy per inner packet).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ipseclab.analysis.keyrows import esp_sa_row, ike_sa_row
from ipseclab.analysis.workers import ENV
from ipseclab.crypto import EncrId
from ipseclab.esp import EspSA
from ipseclab.esp.iphdr import checksum
from ipseclab.ike import IkeConfig
from ipseclab.ike.connection import IkeConnection
from ipseclab.ike.events import IkeSaEstablished
from ipseclab.pcap.esp_keyfiles import tshark_esp_options, write_esp_sa
from ipseclab.pcap.keyfiles import tshark_ikev2_options, write_ikev2_decryption_table

LEFT, RIGHT = "198.51.100.10", "198.51.100.20"
INNER_SRC, INNER_DST = bytes([10, 0, 1, 1]), bytes([10, 0, 2, 1])
DATA = 1000  # ICMP data bytes per ping
ROOT = Path(__file__).resolve().parents[2]
_REC = struct.Struct("<IIII")
_ETH = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"


def _frame(out: list[bytes], n: int, ip: bytes) -> None:
    frame = _ETH + ip
    out.append(_REC.pack(1_700_000_000 + n // 1000, (n % 1000) * 1000, len(frame), len(frame)) + frame)


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    ulen = 8 + len(payload)
    a, b = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, a, b)
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + struct.pack("!HHHH", sport, dport, ulen, 0) + payload


def _ping(seq: int, data: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, seq & 0xFFFF) + data
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq & 0xFFFF, 0, 64, 1, 0, INNER_SRC, INNER_DST)
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + icmp


def make_capture(directory: Path, packets: int, seed: int = 10, varied: bool = False) -> tuple[Path, Path, Path]:
    """(capture, ikev2_decryption_table, esp_sa) of an IKE exchange and ``packets`` pings in one ESP SA; their
    data is the same in every ping, as ping sends it, or with ``varied`` random in each."""
    rng = random.Random(seed)

    def rand(n: int) -> bytes:
        return rng.randbytes(n)

    init = IkeConnection(IkeConfig("left", "right", b"bench-psk", ike_proposals=("aes256gcm16-prfsha256-ecp256",),
                                   esp_proposals=("aes128gcm16-noesn",)), initiator=True)
    resp = IkeConnection(IkeConfig("right", "left", b"bench-psk", ike_proposals=("aes256gcm16-prfsha256-ecp256",),
                                   esp_proposals=("aes128gcm16-noesn",)), initiator=False)
    init.rng = resp.rng = rand
    init.initiate(0.0)
    frames: list[bytes] = []
    n = 0
    for _ in range(10):
        moved = False
        for conn, peer, src, dst in ((init, resp, LEFT, RIGHT), (resp, init, RIGHT, LEFT)):
            for d in conn.datagrams_to_send(0.0):
                moved = True
                _frame(frames, n, _udp(src, dst, 500, 500, d.data))
                n += 1
                peer.receive_datagram(d.data, 0.0)
        if not moved:
            break
    established = [e for e in iter(init.next_event, None) if isinstance(e, IkeSaEstablished)]
    if not established:
        raise SystemExit("bench_decrypt: the in-memory IKE exchange did not establish an IKE SA")
    sa = EspSA(0xC0FFEE01, EncrId.AES_GCM_16, rand(20), tunnel=(LEFT, RIGHT), rng=rand)
    pcap = directory / "bench.pcap"
    with pcap.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(frames))
        data = rand(DATA)
        batch: list[bytes] = []
        for seq in range(1, packets + 1):
            _frame(batch, n, sa.protect(_ping(seq, rand(DATA) if varied else data)))
            n += 1
            if len(batch) == 4096:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
    ike_table, esp_table = directory / "ikev2_decryption_table", directory / "esp_sa"
    write_ikev2_decryption_table(ike_table, [ike_sa_row(established[0])])
    write_esp_sa(esp_table, [esp_sa_row(sa, src=LEFT, dst=RIGHT)])
    return pcap, ike_table, esp_table


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB summed over ``pid``'s process tree (a process that just ended counts 0)."""
    rss = pss = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss, pss


class _Sampler(threading.Thread):
    """The peak of ``_memory`` of a running process tree, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.rss, self.pss = pid, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            rss, pss = _memory(self.pid)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)


def measure(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None
            ) -> tuple[float, float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds, peak PSS in MB) of one command run in ``cwd``, its output to
    /dev/null.  RSS and PSS are summed over the command's processes (ipseclab's decrypt workers too), sampled
    every 10 ms; the RSS is at least ``wait4``'s (the largest single process's peak).  CPU includes the workers'.
    """
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, cwd=cwd, env=env)
        sampler = _Sampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"bench_decrypt: {' '.join(cmd[:4])} ... exited {proc.returncode}: {err[-500:]}")
    return seconds, max(usage.ru_maxrss, sampler.rss) / 1024, usage.ru_utime + usage.ru_stime, sampler.pss / 1024


def tshark_args(ike_table: Path, esp_table: Path) -> list[str]:
    from ipseclab.pcap.esp_keyfiles import read_esp_sa
    from ipseclab.pcap.keyfiles import read_ikev2_decryption_table

    return tshark_esp_options(read_esp_sa(esp_table)) + tshark_ikev2_options(read_ikev2_decryption_table(ike_table))


def check_tshark_decrypts(pcap: Path, opts: list[str]) -> None:
    out = subprocess.run(["tshark", "-r", str(pcap), "-c", "1000", *opts, "-T", "fields", "-e", "esp.icv_good",
                          "-e", "icmp.type", "-Y", "esp"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    if len(rows) < 900 or not all(r[0] in ("1", "True") and r[1] == "8" for r in rows):
        raise SystemExit(f"bench_decrypt: tshark did not decrypt and verify the ESP packets: {rows[:3]}")


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} CPUs, {'AMX' if ' amx_tile' in info else 'no AMX'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=1, help="the median of this many runs of each command")
    ap.add_argument("--keep", type=Path, help="write the captures and key files here and keep them")
    ap.add_argument("--before", type=Path, metavar="CHECKOUT",
                    help="also time the ipseclab of another checkout (e.g. a worktree of main), in the same run")
    ap.add_argument("--varied", action="store_true",
                    help="random data in every ping (JSON's memo of a repeated payload's hex never hits)")
    ap.add_argument("--one-process", action="store_true",
                    help=f"also time ipseclab without decrypt workers ({ENV}=0), in the same run")
    args = ap.parse_args(argv)
    if shutil.which("tshark") is None:
        raise SystemExit("bench_decrypt: tshark is not installed (apt-get install tshark)")
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f} at the start")
    print("| packets | capture | command | wall s | CPU s | peak RSS | peak PSS | tshark's wall / this "
          "| tshark's CPU / this |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for packets in args.packets:
        with tempfile.TemporaryDirectory(prefix="bench-decrypt-") as tmp:
            where = args.keep / str(packets) if args.keep else Path(tmp)
            where.mkdir(parents=True, exist_ok=True)
            pcap, ike_table, esp_table = make_capture(where, packets, varied=args.varied)
            size = f"{pcap.stat().st_size / 1e6:.0f} MB"
            base = [sys.executable, "-m", "ipseclab.cli", "decrypt", str(pcap), "--keys", str(ike_table),
                    "--esp-keys", str(esp_table)]
            opts = tshark_args(ike_table, esp_table)
            check_tshark_decrypts(pcap, opts)
            for checkout in {ROOT, *([args.before.resolve()] if args.before else [])}:  # as an installed package is
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "ipseclab")], check=True)
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV)}  # the cwd's ipseclab
            one = {**env, ENV: "0"}
            commands = {
                "ipseclab decrypt --json": ([*base, "--json"], ROOT, env),
                "ipseclab decrypt (text)": (base, ROOT, env),
                "tshark": (["tshark", "-r", str(pcap), *opts], ROOT, env),
            }
            if args.one_process:
                commands["one process: ipseclab decrypt --json"] = ([*base, "--json"], ROOT, one)
                commands["one process: ipseclab decrypt (text)"] = (base, ROOT, one)
            if args.before:  # python -m ipseclab.cli from that checkout imports that checkout's ipseclab
                commands["before: ipseclab decrypt --json"] = ([*base, "--json"], args.before.resolve(), env)
                commands["before: ipseclab decrypt (text)"] = (base, args.before.resolve(), env)
            results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in commands}
            for _ in range(args.runs):  # the commands take turns, so a slow spell of the machine hits all of them
                for name, (cmd, cwd, cmd_env) in commands.items():
                    results[name].append(measure(cmd, cwd, cmd_env))
            med = {name: (statistics.median(w for w, _, _, _ in r), max(m for _, m, _, _ in r),
                          statistics.median(c for _, _, c, _ in r), max(p for _, _, _, p in r))
                   for name, r in results.items()}
            ref, ref_cpu = med["tshark"][0], med["tshark"][2]
            for name, (seconds, rss, cpu, pss) in med.items():
                ratio = "|" if name == "tshark" else f"{ref / seconds:.2f} | {ref_cpu / cpu:.2f}"
                print(f"| {packets:,} | {size} | {name} | {seconds:.2f} | {cpu:.2f} | {rss:.0f} MB | {pss:.0f} MB "
                      f"| {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

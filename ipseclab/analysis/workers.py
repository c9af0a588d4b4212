"""``analysis.fast``'s scans spread over forked worker processes, the output still in record order.

A scan (decrypting and formatting the common ESP packet) is nearly all of the work and needs no state
but the learned SAs' keys; the window, the counters and the general path (IKE, AH, replays, SAs not yet
learned) must follow record order.  So this process reads the capture once, cuts it into chunks of whole
records (``fast.ranges``: headers only), and sends each chunk's place in the file to a worker, in turn;
each worker reads those bytes itself (``os.pread`` on the inherited descriptor) and leaves the chunk's
output and items (``fast.scan``) in shared memory, which this process applies in order
(``fast.Reconciler``) and writes while the workers scan the next chunks.  An SA learned here is sent
to every worker before the next chunk, so a chunk scanned before a worker knew an SA takes the general
path for its packets: same text, slower.
At most three chunks per worker are in flight, so memory does not grow with the capture.

Only for a regular file of a classic pcap (a FIFO or gzip can be read once only, by one process), on a
machine with more than one CPU for this process, and large enough to pay for the processes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import stat
import struct
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..errors import PcapError
from ..pcap.reader import BadFrame
from .fast import Keys, Link, Range, Reconciler, SlotSpec, scan, scan_here

MIN_SIZE = 16 << 20  # bytes: below this a capture is scanned in one process (a fork costs a few ms)
IN_FLIGHT = 3  # chunks sent to each worker and not yet applied
SLOT = 8 << 20  # bytes of shared memory per chunk in flight for its items and output; larger: the parent rescans
DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # Linux: a shared page unmapped here is not counted in RSS twice
ENV = "IPSECLAB_DECRYPT_WORKERS"  # a number of workers, overriding the choice (0: one process)


def auto_workers(f: BinaryIO) -> int:
    """How many worker processes scan this capture: one per CPU (at most 4) for a large regular file, none on
    one CPU.  This process runs beside them: it only walks record headers, applies and writes, a quarter of the
    work, so a worker on every CPU keeps them busy while it waits."""
    env = os.environ.get(ENV, "")
    if env.isdigit():
        return int(env)
    try:
        st = os.fstat(f.fileno())
    except (OSError, AttributeError, ValueError):  # an in-memory stream
        return 0
    if not stat.S_ISREG(st.st_mode) or st.st_size < MIN_SIZE or not hasattr(os, "fork"):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 4) if cpus > 1 else 0


class Connection:
    """Pickled messages over one end of a pipe, each prefixed with its length (multiprocessing.connection's
    wire format without its import, tens of milliseconds on every run)."""

    __slots__ = ("fd",)
    _LEN = struct.Struct("!I")

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, obj: object) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        view = memoryview(self._LEN.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            data = os.read(self.fd, n)
            if not data:
                raise EOFError
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def recv(self) -> Any:
        (n,) = self._LEN.unpack(self._read(4))
        return pickle.loads(self._read(n))

    def close(self) -> None:
        os.close(self.fd)


class _Worker:
    __slots__ = ("pid", "results", "shm", "tasks")

    def __init__(self, pid: int, tasks: Connection, results: Connection, shm: mmap.mmap) -> None:
        self.pid, self.tasks, self.results, self.shm = pid, tasks, results, shm


def _serve(fd: int, tasks: Connection, results: Connection, link: Link, keys: Keys, shm: mmap.mmap) -> None:
    """A worker's loop: learn the SAs it is sent, scan the chunks it is sent, until told to stop."""
    while True:
        msg = tasks.recv()
        if msg[0] == "slot":
            keys.add(msg[1], msg[2], msg[3], link.as_json)
        elif msg[0] == "scan":
            _, base, end, n0, tops, slot = msg
            buf = os.pread(fd, end, base)
            if len(buf) != end:
                results.send(f"the capture changed while it was read: {end} bytes at {base}, {len(buf)} read")
                return
            keys.set_tops(tops)
            blob, items, _, _ = scan(buf, 0, end, n0, keys, link)
            data = pickle.dumps(items, pickle.HIGHEST_PROTOCOL)
            if len(data) + len(blob) > SLOT:  # the parent scans this chunk itself
                results.send(("big",))
                continue
            # the items and output stay in shared memory, so every answer on the pipe is small: a worker never
            # waits on the parent to read it, and the parent's writes to the worker's task pipe always drain
            at = slot * SLOT
            shm[at : at + len(data)] = data
            shm[at + len(data) : at + len(data) + len(blob)] = blob
            results.send(("shm", slot, len(data), len(blob)))
        else:
            return


def _start(fd: int, link: Link, keys: Keys, count: int) -> list[_Worker]:
    workers: list[_Worker] = []
    try:
        for _ in range(count):
            shm = mmap.mmap(-1, SLOT * IN_FLIGHT)  # shared with the worker forked next
            task_r, task_w = os.pipe()
            res_r, res_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: it never returns into the caller's code
                code = 0
                try:
                    for w in workers:  # the other workers' pipes are not its own
                        w.tasks.close()
                        w.results.close()
                    os.close(task_w)
                    os.close(res_r)
                    results = Connection(res_w)
                    try:
                        _serve(fd, Connection(task_r), results, link, keys, shm)
                    except Exception as exc:  # a bug: the parent says so, in one line
                        results.send(f"a decrypt worker failed: {exc!r}")
                        raise
                except BaseException:  # the parent sees the pipe close and reports it
                    code = 1
                os._exit(code)
            os.close(task_r)
            os.close(res_w)
            workers.append(_Worker(pid, Connection(task_w), Connection(res_r), shm))
    except BaseException:
        _stop(workers, kill=True)
        raise
    return workers


def _stop(workers: list[_Worker], kill: bool) -> None:
    for w in workers:
        if not kill:
            try:
                w.tasks.send(("end",))
            except OSError:
                kill = True
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, 9)
        w.tasks.close()
        w.results.close()
        os.waitpid(w.pid, 0)
        with contextlib.suppress(BufferError):  # a view still held (an exception on its way) frees it later
            w.shm.close()


def scan_in_workers(f: BinaryIO, chunks: Iterator[Range | BadFrame], link: Link, rec: Reconciler, keys: Keys,
                    count: int) -> BadFrame | None:
    """Every record of ``chunks`` through ``rec``, scanned by ``count`` workers; the stop, if any.

    The first chunk is scanned here, so the workers, forked after it, start knowing its SAs.
    """
    first = next(chunks, None)
    if first is None or isinstance(first, BadFrame):
        return first
    scan_here(first, keys, rec)
    workers = _start(f.fileno(), link, keys, count)
    ok = False

    def announce(udp: bool, key: bytes, spec: SlotSpec | None) -> None:
        keys.add(udp, key, spec, link.as_json)  # for a chunk scanned here
        for w in workers:
            w.tasks.send(("slot", udp, key, spec))

    rec.on_learn = announce
    inflight: deque[tuple[_Worker, Range]] = deque()

    def apply_oldest() -> None:
        w, r = inflight.popleft()
        try:
            msg = w.results.recv()
        except EOFError:
            raise PcapError("a decrypt worker process ended unexpectedly") from None
        if isinstance(msg, str):
            raise PcapError(msg)
        if msg[0] == "big":
            scan_here(r, keys, rec)
            return
        _, slot, items_size, size = msg
        view = memoryview(w.shm)[slot * SLOT : slot * SLOT + items_size + size]
        rec.apply(r[0], 0, view[items_size:], pickle.loads(view[:items_size]))
        del view
        if DONTNEED is not None:  # the slot is written: this process's mapping of its pages goes (the worker's stays)
            start = -(-slot * SLOT // mmap.PAGESIZE) * mmap.PAGESIZE  # madvise wants a page boundary
            if slot * SLOT + items_size + size > start:  # shared memory: a page dropped here is read again on use
                w.shm.madvise(DONTNEED, start, slot * SLOT + items_size + size - start)

    try:
        stop: BadFrame | None = None
        for turn, r in enumerate(chunks):
            if isinstance(r, BadFrame):
                stop = r
                break
            _, base, end, n0 = r
            w = workers[turn % count]
            w.tasks.send(("scan", base, end, n0, rec.esn_tops(), turn // count % IN_FLIGHT))
            inflight.append((w, r))
            if len(inflight) >= IN_FLIGHT * count:
                apply_oldest()
        while inflight:
            apply_oldest()
        ok = True
        return stop
    finally:
        _stop(workers, kill=not ok)

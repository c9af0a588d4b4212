"""``python -m ipseclab.endpoint.zygote FD``: the endpoint's modules imported once, one endpoint forked per cell.

An endpoint process (``python -m ipseclab.endpoint SPEC``) spends some 0.3 CPU-s importing the engine, the
data plane and ``cryptography`` before it reads its spec; the lab runs one per cell on the ipseclab side of a
pair, and booted labs run dozens of cells each.  This process imports them once, in the side's network
namespace, and forks a ready endpoint for each cell (a fork of an interpreter with everything imported costs
milliseconds).  ``runtimes/process.py`` (``EndpointHost``) drives it over the unix socket ``FD`` (SOCK_SEQPACKET),
one request a datagram: ``{"spec": PATH}`` with three descriptors (the endpoint's stdin, stdout and stderr) as
``SCM_RIGHTS``; the answer is ``{"pid": N}``.  The child is the endpoint exactly as ``python -m ipseclab.endpoint
PATH`` would be, in a session of its own (the lab stops its process group) with the default signal handlers.

The zygote reaps an ended endpoint only when the next request comes, so an endpoint's pid stays its own (a
zombie at worst) until the lab has opened a pidfd on it; it exits when the lab's end of the socket closes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback

from . import runner


def _child(spec: str, fds: list[int], ctl: socket.socket, started: int) -> int:
    """In the forked child: become the endpoint on ``fds`` (stdin, stdout, stderr), in a session of its own before
    the zygote answers (it waits for ``started``, the write end of a pipe, to close)."""
    ctl.close()
    os.setsid()
    os.close(started)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    try:
        return runner.main([spec])
    except BaseException:  # the endpoint's stderr gets what ended it, as the interpreter would print it
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve(ctl: socket.socket) -> None:
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctl, 65536, 3)
        except OSError:
            return
        if not msg:  # the lab closed its end
            return
        while True:  # the endpoints that ended since the last request (their pids were the lab's to watch)
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        try:
            spec = json.loads(msg)["spec"]
            if len(fds) != 3:
                raise ValueError(f"{len(fds)} descriptors, not 3 (stdin, stdout, stderr)")
        except (ValueError, KeyError, TypeError) as exc:
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"error": f"bad request: {exc}"}).encode())
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        wait, started = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(wait)
            os._exit(_child(spec, fds, ctl, started))
        os.close(started)
        os.read(wait, 1)  # end of file once the child is its session's leader: the lab may stop its group at once
        os.close(wait)
        for fd in fds:
            os.close(fd)
        ctl.send(json.dumps({"pid": pid}).encode())


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m ipseclab.endpoint.zygote FD   (the lab starts it: runtimes/process.py)",
              file=sys.stderr)
        return 2
    serve(socket.socket(fileno=int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A TCP listener that forwards to the local Docker socket: a "remote" engine for the remote-runtime tests.

With ``DOCKER_HOST=tcp://127.0.0.1:PORT`` ipseclab sees an engine it can reach only through the API: it
can neither name that engine's containers' namespaces nor share its files, as with an engine on
another machine.  (The engine's machine is this one, which is what lets the test see what the
runner left behind.)  Run by hand: ``python -m tests.interop.engine_proxy 23750``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

DOCKER_SOCKET = "/var/run/docker.sock"


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve_one(client: socket.socket) -> None:
    engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        engine.connect(DOCKER_SOCKET)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pipe, args=(engine, client), daemon=True)
    back.start()
    _pipe(client, engine)
    back.join()
    client.close()
    engine.close()


class EngineProxy:
    """``with EngineProxy() as url:`` a tcp:// URL of the local engine, for as long as the block runs."""

    def __init__(self, port: int = 0) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


if __name__ == "__main__":
    with EngineProxy(int(sys.argv[1]) if len(sys.argv) > 1 else 23750) as url:
        print(f"export DOCKER_HOST={url}", flush=True)
        threading.Event().wait()

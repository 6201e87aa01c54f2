"""A TCP relay between one gateway and its PostgreSQL: `cut()` drops every connection through it and refuses new
ones (a gateway cut off from the database while it still serves its clients: a network partition, a firewall),
`mend()` lets it through again on the same port. Threads, stopped by `stop()`."""

from __future__ import annotations

import contextlib
import socket
import threading

from helpers.procs import free_port


class Relay:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target = host, target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def url(self, url: str) -> str:
        """`url` (a pg_url) through this relay."""
        return url.replace(f":{self.target}/", f":{self.port}/")

    def start(self) -> Relay:
        self.mend()
        return self

    def mend(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        for s in ([listener] if listener else []) + list(conns):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection((self.host, self.target), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close(), server.close()
                    return
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.difference_update((src, dst))

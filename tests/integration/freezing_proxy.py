"""A TCP relay whose open connections can be frozen silently, as when a network path dies.

Frozen connections stop carrying bytes both ways but are never closed (no FIN, no RST), so
the peers learn nothing until their own timeouts fire. Connections opened afterwards relay
normally: the apiserver is still there, only the old paths to it are gone.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class _Link:
    def __init__(self, downstream: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (downstream, upstream)
        self.frozen = threading.Event()

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


class FreezingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> int:
        """Freeze every connection open now; returns how many there were."""
        with self._lock:
            for link in self._links:
                link.frozen.set()
            return len(self._links)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for link in self._links:
                link.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                continue
            link = _Link(downstream, upstream)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._relay, args=(link,), daemon=True).start()

    def _relay(self, link: _Link) -> None:
        downstream, upstream = link.sockets
        peer = {downstream: upstream, upstream: downstream}
        try:
            while not self._closed.is_set():
                if link.frozen.is_set():
                    # Read nothing, send nothing, close nothing: the path is simply gone.
                    self._closed.wait(1)
                    continue
                readable, _, _ = select.select(list(peer), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        link.close()
                        return
                    peer[sock].sendall(data)
        except OSError:
            link.close()

"""A TCP relay on 127.0.0.1 in front of a server (the registry): caps each connection's download rate, as a CDN edge
does, and counts the bytes it delivered, so a test can tell how many bytes a client fetched in all."""

from __future__ import annotations

import socket
import threading
import time

CHUNK = 64 * 1024


class ThrottledRelay:
    def __init__(self, target_port: int, bytes_per_second: float):
        self.target = ("127.0.0.1", target_port)
        self.bytes_per_second = bytes_per_second
        self.delivered = 0  # bytes relayed from the server to clients
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = threading.Event()

    def start(self) -> "ThrottledRelay":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
                if downstream:
                    with self.lock:
                        self.delivered += len(data)
                    time.sleep(len(data) / self.bytes_per_second)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

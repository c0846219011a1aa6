"""A file server that behaves like a CDN edge over a real link: each connection capped (a token bucket, default
40 MB/s) and all of them together capped (default 480 MB/s), Range honoured, bytes sent with sendfile so the
server itself is never the bottleneck.

It serves `/__storage/<name>` from one directory: point the fake hub's storage URL at it and every downloader,
ours included, meets the same link.
"""

from __future__ import annotations

import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 256 * 1024  # bytes per sendfile call: the pacing's granularity
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Pacer:
    """A shared clock that hands out send slots at `rate` bytes per second (the link's total cap)."""

    def __init__(self, rate: float):
        self.rate = rate
        self.next_free = time.monotonic()
        self.lock = threading.Lock()

    def reserve(self, size: int, not_before: float) -> float:
        """When `size` bytes may go, by this cap, at `not_before` at the earliest."""
        with self.lock:
            start = max(not_before, time.monotonic(), self.next_free)
            self.next_free = start + size / self.rate
            return start


class CappedFileServer:
    def __init__(self, directory: Path, per_connection: float = 40e6, total: float = 480e6):
        self.directory = directory
        self.per_connection = per_connection
        self.link = Pacer(total)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "CappedFileServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                name = self.path.split("?")[0].removeprefix("/__storage/")
                path = owner.directory / name
                if "/" in name or not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                start, end = 0, size - 1
                status = 200
                match = RANGE.match(self.headers.get("Range", ""))
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                    else:
                        start = max(0, size - int(match.group(2)))
                    if start > end:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{name}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if body:
                    self.wfile.flush()
                    self._send_paced(path, start, end + 1)

            def _send_paced(self, path: Path, offset: int, stop: int):
                connection_next = time.monotonic()
                with open(path, "rb") as file:
                    while offset < stop:
                        size = min(CHUNK, stop - offset)
                        when = owner.link.reserve(size, connection_next)
                        connection_next = when + size / owner.per_connection
                        delay = when - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        try:
                            sent = os.sendfile(self.connection.fileno(), file.fileno(), offset, size)
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        if sent == 0:
                            return
                        offset += sent

        return Handler

"""Stand-ins for the outside world, served on 127.0.0.1 in threads of the test process."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_in_thread(handler: type[BaseHTTPRequestHandler], port: int = 0,
                    tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """Serve `handler` on 127.0.0.1:`port` (0: any free port), over TLS with `tls`, until `shut_down`."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # clients that hang up are expected here
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def shut_down(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()

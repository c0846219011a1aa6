"""A plain-HTTP forward proxy (requests that name the whole URL), the kind HTTP_PROXY points at.

It relays requests as they come (Range included, redirects not followed) and records each one,
so a test can see that the service's traffic went through it.
"""

from __future__ import annotations

import http.client
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.fakes import serve_in_thread, shut_down

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade"}


class ForwardProxy:
    def __init__(self):
        self.requests: list[dict] = []  # {"method", "url", "headers"} in arrival order
        self._server = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ForwardProxy":
        class Handler(ProxyHandler):
            proxy = self

        self._server = serve_in_thread(Handler)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shut_down(self._server)


class ProxyHandler(BaseHTTPRequestHandler):
    proxy: ForwardProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "a forward proxy needs the whole URL")
            return
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        self.proxy.requests.append({"method": self.command, "url": self.path,
                                    "headers": {name.lower(): value for name, value in self.headers.items()}})
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            upstream.request(self.command, target.path + (f"?{target.query}" if target.query else ""), headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if response.getheader("Content-Length") is None:
                self.send_header("Connection", "close")  # the body ends when the connection does
                self.close_connection = True
            self.end_headers()
            while self.command != "HEAD" and (chunk := response.read(1024 * 1024)):
                self.wfile.write(chunk)
        finally:
            upstream.close()

    do_HEAD = do_GET

"""The places where the product reaches into a library's internals for speed. Each test fails loudly when the
upstream code it relies on changes shape, rather than letting the speed-up silently stop working."""

from __future__ import annotations

import inspect
import socket
import threading
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

from tests.fakes import serve_in_thread, shut_down


def test_daphne_requests_skip_twisteds_form_parsing():
    """llm_manager/asgi.py passes Twisted's own `parsePOSTFormSubmission=False` to every daphne request."""
    from daphne.http_protocol import WebRequest
    from twisted.web.http import Request
    from twisted.web.test.requesthelper import DummyChannel

    import llm_manager.asgi  # noqa: F401  (applies the switch)

    assert "parsePOSTFormSubmission" in inspect.signature(Request.__init__).parameters, (
        "Twisted no longer takes parsePOSTFormSubmission: llm_manager/asgi.py's switch does nothing")
    channel = DummyChannel()
    channel.factory = SimpleNamespace(server=SimpleNamespace(protocol_connected=lambda request: None))
    request = WebRequest(channel)
    assert request._parsePOSTFormSubmission is False, "daphne's WebRequest no longer passes the switch on"


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_downloads_set_the_receive_buffer_through_http_clients_connection_hook():
    """downloads/transfer.py replaces `HTTPConnection._create_connection` to size the socket's receive buffer before
    the handshake; http.client must still open its sockets through that attribute."""
    import http.client

    from downloads.transfer import TransferSettings, _Connections

    assert "self._create_connection(" in inspect.getsource(http.client.HTTPConnection.connect), (
        "http.client no longer opens sockets through _create_connection: the receive buffer setting is ignored")
    server = serve_in_thread(_Quiet)
    try:
        wanted = 192 * 1024
        connections = _Connections(TransferSettings(receive_buffer_bytes=wanted), set(), threading.Lock())
        response = connections.get(f"http://127.0.0.1:{server.server_address[1]}/file", {})
        assert response.read() == b"ok"
        (connection, _, _), = connections.open.values()
        # Linux doubles what is asked for (its bookkeeping overhead); the default would be far from it.
        assert connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * wanted
        connection.close()
    finally:
        shut_down(server)


def test_the_proxys_asgi_handler_does_what_djangos_does_but_the_thread_hops():
    """core.lean.ProxyASGIHandler serves a request with ASGIHandler's own steps, in the order its `handle` takes
    them, but sends the request signals on the event loop; a Django that changes those steps fails here, to be
    looked at, rather than leaving the proxy without one of them."""
    from django.core.handlers.asgi import ASGIHandler

    from core.lean import ProxyASGIHandler

    django_steps = inspect.getsource(ASGIHandler.handle)
    ours = inspect.getsource(ProxyASGIHandler)
    steps = ["self.read_body(", "set_script_prefix(get_script_prefix(scope))", "request_started.",
             "self.create_request(scope, body_file)", "self.run_get_response(request)",
             "self.send_response(response, send)", "self.listen_for_disconnect(receive)"]
    positions = [django_steps.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), (
        "Django's ASGIHandler.handle takes other steps now: compare core.lean.ProxyASGIHandler with it")
    assert all(step in ours for step in steps) and "response.close()" in ours
    # What the proxy saves: Django still hops to a thread for the signals (else ProxyASGIHandler can go).
    assert "await signals.request_started.asend(" in django_steps
    assert "await sync_to_async(response.close)()" in django_steps

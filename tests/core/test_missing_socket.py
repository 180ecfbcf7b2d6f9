"""A socket route behind a server that provides no socket explains the fix."""

from __future__ import annotations

import http.client
import logging
import threading
import wsgiref.simple_server

import pytest
from flask import Flask

from flask_sockets import Sockets


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def wsgiref_server():
    """Serve an app on the standard library's wsgiref server (no WebSocket support)."""
    servers = []

    def start(app):
        server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_upgrade_without_a_socket_is_a_500_that_names_the_fix(wsgiref_server, caplog):
    """No wsgi.websocket in the environ: a logged error and a 500 naming the servers to use."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws):  # pragma: no cover - must not run
        raise AssertionError("handler ran without a socket")

    port = wsgiref_server(app)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with caplog.at_level(logging.ERROR):
        conn.request(
            "GET",
            "/echo",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        response = conn.getresponse()
        body = response.read().decode()
    assert response.status == 500
    for text in (body, caplog.text):
        assert "flask_sockets_gevent.run(app)" in text
        assert "gunicorn -k flask_sockets_gunicorn.worker" in text
    assert "KeyError" not in caplog.text

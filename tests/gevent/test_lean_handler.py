"""What an open WebSocket costs the gevent handler."""

from __future__ import annotations

import json
import socket
import sys

from flask import Flask
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets_gevent import WebSocketHandler


def _handler_state() -> dict[str, object]:
    """From inside a socket route: the handler serving it and the functions of
    the handler's module on the stack under the route."""
    frame = sys._getframe()
    ours = []
    handler = None
    while frame is not None:
        if frame.f_code.co_filename.endswith("flask_sockets_gevent/handler.py"):
            ours.append(frame.f_code.co_name)
            handler = frame.f_locals.get("self", handler)
        frame = frame.f_back
    assert isinstance(handler, WebSocketHandler)
    return {"dict_size": sys.getsizeof(handler.__dict__), "frames": ours}


def _http_get(port: int, requests: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


def test_an_open_websocket_keeps_a_small_handler(serve):
    # CPython 3.11 shares the keys of an instance's __dict__ with its class
    # up to 29 attributes; past that each instance has a 1.5 KiB dict of its
    # own. And every frame between the server and the app stays on the saved
    # stack of each parked handler greenlet.
    app = Flask(__name__)
    sockets = Sockets(app)

    @app.route("/")
    def index():
        return "ok"

    @sockets.route("/inspect")
    def inspect(ws):
        ws.send(json.dumps(_handler_state()))
        ws.receive()

    server = serve(app)
    # Keep-alive requests, a 404 and a refused request first: whatever
    # attributes those set, the socket's handler must still share the keys.
    assert _http_get(server.port, 3).count(b"HTTP/1.1 200") == 3
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET bad\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 404")
    with connect(f"{server.ws_url}/inspect") as ws:
        state = json.loads(ws.recv(timeout=5))
    assert state["frames"] == ["run_application", "handle"]
    assert state["dict_size"] < 1000, state

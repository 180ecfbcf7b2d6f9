"""What an open WebSocket costs the gevent handler."""

from __future__ import annotations

import json
import socket
import sys

import gevent
from flask import Flask
from gevent.pool import Pool
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
    if sys.version_info >= (3, 11):  # (3.9 and 3.10 size shared-key dicts otherwise)
        assert state["dict_size"] < 1000, state


def _stack_under_route() -> list[str]:
    """From inside a socket route: the functions on the stack, outermost first."""
    frame = sys._getframe(1)
    names = []
    while frame is not None:
        names.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        frame = frame.f_back
    return names[::-1]


def test_the_stack_under_a_socket_route_has_no_extra_c_level_calls(serve):
    # Each call that re-enters the interpreter's C loop (calling an instance,
    # a ``*args`` call) stays on the saved C stack of every parked handler
    # greenlet: ~750 bytes for Flask.__call__, ~370 for gevent's
    # ``handle(*args)`` helper, per open connection.
    app = Flask(__name__)
    sockets = Sockets(app)
    seen: dict[str, object] = {}

    @sockets.route("/stack")
    def stack(ws):
        handler = _handler_state()
        seen["stack"] = _stack_under_route()
        seen["headers"] = len(ws.handler.headers.items())
        seen["response_headers"] = ws.handler.response_headers
        seen["handler"] = handler
        ws.send("ok")
        ws.receive()

    server = serve(app)
    with connect(f"{server.ws_url}/stack") as ws:
        assert ws.recv(timeout=5) == "ok"
    names = seen["stack"]
    assert "app.py:__call__" not in names, names  # Flask's wsgi_app is called directly
    assert "baseserver.py:_handle_and_close_when_done" not in names, names
    assert "app.py:wsgi_app" in names and "server.py:_serve_connection" in names, names
    # The parsed request head and the 101's headers are dropped once the 101 is out.
    assert seen["headers"] == 0
    assert seen["response_headers"] is None


def test_wsgi_middleware_and_an_overridden_call_still_run_for_socket_routes(serve):
    class App(Flask):
        calls = 0

        def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
            type(self).calls += 1
            return super().__call__(environ, start_response)

    def middleware(wsgi_app):  # type: ignore[no-untyped-def]
        def wrapped(environ, start_response):  # type: ignore[no-untyped-def]
            environ["test.middleware"] = "ran"
            return wsgi_app(environ, start_response)

        return wrapped

    for app in (Flask(__name__), App(__name__)):
        app.wsgi_app = middleware(app.wsgi_app)  # type: ignore[method-assign]
        sockets = Sockets(app)

        @sockets.route("/mw")
        def mw(ws):
            from flask import request

            ws.send(request.environ.get("test.middleware", "missing"))

        server = serve(app)
        with connect(f"{server.ws_url}/mw") as ws:
            assert ws.recv(timeout=5) == "ran"
    assert App.calls == 1


def test_an_idle_websocket_waits_on_its_greenlet_with_no_spawning_stack(serve):
    # Idle memory per socket (issue 20): the reader waits on the socket's
    # own watcher with its greenlet's switch (no Waiter and no gevent wait
    # frames on the saved C stack), and the connection's greenlet keeps no
    # spawning stack (one object per frame of the accept loop).
    app = Flask(__name__)
    sockets = Sockets(app)
    idle: dict[str, object] = {}

    @sockets.route("/idle")
    def wait(ws):
        idle["ws"], idle["greenlet"] = ws, gevent.getcurrent()
        ws.send("waiting")
        ws.receive()
        ws.send("woke")

    @sockets.route("/look")
    def look(ws):
        reader, greenlet = idle["ws"], idle["greenlet"]
        callback = reader._sock._read_event.callback
        ws.send(
            json.dumps(
                {
                    "switch": getattr(callback, "__self__", None) is greenlet,
                    "class": type(greenlet).__name__,
                    "spawning_stack": greenlet.spawning_stack is None,
                }
            )
        )

    server = serve(app)
    with connect(f"{server.ws_url}/idle") as waiting:
        assert waiting.recv(timeout=5) == "waiting"
        with connect(f"{server.ws_url}/look") as ws:
            seen = json.loads(ws.recv(timeout=5))
        assert seen == {"switch": True, "class": "_ConnectionGreenlet", "spawning_stack": True}
        waiting.send("go")
        assert waiting.recv(timeout=5) == "woke"


def test_a_pool_with_a_greenlet_class_of_its_own_keeps_it(serve):
    class Tracked(gevent.Greenlet):
        pass

    class TrackedPool(Pool):
        greenlet_class = Tracked

    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/which")
    def which(ws):
        ws.send(type(gevent.getcurrent()).__name__)

    server = serve(app, spawn=TrackedPool(10))
    with connect(f"{server.ws_url}/which") as ws:
        assert ws.recv(timeout=5) == "Tracked"

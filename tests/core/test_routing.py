"""Socket routes live in the app's own url_map and behave like Flask views."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from flask import Flask
from flask import url_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets import UpgradeRequired
from flask_sockets import is_websocket_upgrade


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo_socket(ws):
        while not ws.closed:
            message = ws.receive()
            if message is not None:
                ws.send(message)

    @sockets.route("/chat/<room>/<int:n>")
    def chat(ws, room, n):
        ws.send(f"{room}:{n}:{type(n).__name__}")

    @app.route("/")
    def hello():
        return "Hello World!"

    return app


def test_echo_text_and_binary(app, serve):
    """Text comes back as str and binary as bytes."""
    server = serve(app)
    with connect(f"{server.ws_url}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=5) == b"\x00\xff"


def test_url_variables_and_converters(app, serve):
    """URL variables reach the handler, converted."""
    server = serve(app)
    with connect(f"{server.ws_url}/chat/lobby/7") as ws:
        assert ws.recv(timeout=5) == "lobby:7:int"


def test_rules_are_websocket_rules_in_app_url_map(app):
    """The routes are Werkzeug websocket rules in app.url_map, named ws:<function name>."""
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    assert rules["ws:echo_socket"].websocket is True
    assert rules["ws:chat"].websocket is True
    assert rules["hello"].websocket is False


def test_url_for_builds_ws_urls(app):
    """url_for builds ws:// URLs, and wss:// behind TLS."""
    with app.test_request_context("/"):
        assert url_for("ws:echo_socket", _external=True) == "ws://localhost/echo"
        assert url_for("ws:chat", room="a", n=1) == "ws://localhost/chat/a/1"
    with app.test_request_context("/", base_url="https://example.com"):
        assert url_for("ws:echo_socket", _external=True) == "wss://example.com/echo"


def test_plain_http_to_socket_only_url_gets_426(app, serve):
    """A plain GET on a socket-only URL is answered 426 with Upgrade: websocket."""
    server = serve(app)
    status, headers, body = http_get(f"{server.http_url}/echo")
    assert status == 426
    assert headers["Upgrade"] == "websocket"
    assert b"WebSocket" in body


def test_426_can_be_customised_with_an_error_handler(app, serve):
    """UpgradeRequired goes through Flask's error handlers."""

    @app.errorhandler(UpgradeRequired)
    def upgrade_required(e):
        return "use a websocket", 426

    server = serve(app)
    status, _, body = http_get(f"{server.http_url}/echo")
    assert (status, body) == (426, b"use a websocket")


def test_websocket_to_http_only_url_is_400(app, serve):
    """A WebSocket upgrade to a URL with only an HTTP view is refused before the handshake."""
    server = serve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/", open_timeout=5)
    assert e.value.response.status_code == 400


def test_unknown_url_is_404_before_the_handshake(app, serve):
    """An upgrade to an unknown URL gets a real 404."""
    server = serve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/nowhere", open_timeout=5)
    assert e.value.response.status_code == 404


def test_same_url_serves_http_view_and_socket_handler(serve):
    """The seed's fallback: an upgrade goes to the handler, a plain GET to the view."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @app.route("/feed")
    def feed_page():
        return "the page"

    @sockets.route("/feed")
    def feed_socket(ws):
        ws.send("the socket")

    server = serve(app)
    assert http_get(f"{server.http_url}/feed")[2] == b"the page"
    with connect(f"{server.ws_url}/feed") as ws:
        assert ws.recv(timeout=5) == "the socket"


def test_socket_rules_accept_only_get():
    """A socket route cannot claim POST: Werkzeug refuses the rule."""
    app = Flask(__name__)
    sockets = Sockets(app)
    with pytest.raises(ValueError, match="WebSocket"):
        sockets.add_url_rule("/x", view_func=lambda ws: None, methods=["POST"])


def test_add_url_rule_needs_a_handler():
    """add_url_rule without a handler is a clear TypeError."""
    with pytest.raises(TypeError, match="view_func"):
        Sockets().add_url_rule("/x")


def test_custom_endpoint_name(serve):
    """endpoint= names the route for url_for."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/e", endpoint="the_echo")
    def handler(ws):
        ws.send("ok")

    with app.test_request_context():
        assert url_for("the_echo") == "ws://localhost/e"
    server = serve(app)
    with connect(f"{server.ws_url}/e") as ws:
        assert ws.recv(timeout=5) == "ok"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade"}, True),
        ({"HTTP_UPGRADE": "WebSocket", "HTTP_CONNECTION": "keep-alive, Upgrade"}, True),
        ({"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "keep-alive"}, False),
        ({"HTTP_UPGRADE": "h2c", "HTTP_CONNECTION": "Upgrade"}, False),
        ({"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "notupgrade"}, False),
        ({}, False),
    ],
)
def test_is_websocket_upgrade(headers, expected):
    """An upgrade is recognised exactly as Werkzeug's router recognises it."""
    assert is_websocket_upgrade(headers) is expected
    app = Flask(__name__)
    environ = {"SERVER_NAME": "x", "SERVER_PORT": "80", "REQUEST_METHOD": "GET", "wsgi.url_scheme": "http"}
    adapter = app.url_map.bind_to_environ({**environ, "PATH_INFO": "/", **headers})
    assert adapter.websocket is expected

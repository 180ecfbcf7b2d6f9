"""Socket routes have endpoints of their own: they never clash with each other
or with HTTP views over a function's name, in any order of declaration
(issue 19, item 3), and ``url_for`` builds them by a documented name."""

from __future__ import annotations

import urllib.request

import pytest
from flask import Blueprint
from flask import Flask
from flask import request
from flask import url_for
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.testing import SocketTestClient


def two_handlers_named_alike(sockets: Sockets) -> None:
    @sockets.route("/echo")
    def echo_socket(ws):
        ws.send(f"echo:{ws.receive()}")

    @sockets.route("/ws")
    def echo_socket(ws):  # noqa: F811 - the 0.2 app declares it twice
        ws.send(f"ws:{ws.receive()}")


def test_two_socket_handlers_with_one_name():
    """Two handlers named echo_socket, on /echo and /ws, each serve their URL;
    they share the endpoint ws:echo_socket, which builds the first one's URL."""
    app = Flask(__name__)
    sockets = Sockets(app)
    two_handlers_named_alike(sockets)
    client = SocketTestClient(app)
    for path in ("echo", "ws"):
        with client.connect(f"/{path}") as ws:
            ws.send("hi")
            assert ws.receive() == f"{path}:hi"
    with app.test_request_context():
        assert url_for("ws:echo_socket") == "ws://localhost/echo"
    assert [r.rule for r in app.url_map.iter_rules("ws:echo_socket")] == ["/echo", "/ws"]


def test_two_socket_handlers_with_one_name_on_a_real_server(serve):
    app = Flask(__name__)
    sockets = Sockets(app)
    two_handlers_named_alike(sockets)
    server = serve(app)
    for path in ("echo", "ws", "echo"):
        with connect(f"{server.ws_url}/{path}", open_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == f"{path}:hi"


def chat_app(socket_first: bool) -> Flask:
    """``def chat()`` for /chat and ``def chat(ws)`` for /chat/socket, declared in either order."""
    app = Flask(__name__)
    sockets = Sockets(app)

    def declare_view():
        @app.route("/chat")
        def chat():
            return "the page"

    def declare_socket():
        @sockets.route("/chat/socket")
        def chat(ws):
            ws.send(f"the socket, {request.endpoint}")

    for declare in (declare_socket, declare_view) if socket_first else (declare_view, declare_socket):
        declare()
    return app


@pytest.mark.parametrize("socket_first", [False, True], ids=["view-then-socket", "socket-then-view"])
def test_socket_handler_named_like_an_http_view(socket_first):
    """Either order: the view keeps the endpoint 'chat', the socket gets 'ws:chat'."""
    app = chat_app(socket_first)
    client = SocketTestClient(app)
    assert client.http.get("/chat").text == "the page"
    with client.connect("/chat/socket") as ws:
        assert ws.receive() == "the socket, ws:chat"
    with app.test_request_context():
        assert url_for("chat") == "/chat"
        assert url_for("ws:chat") == "ws://localhost/chat/socket"


@pytest.mark.parametrize("socket_first", [False, True], ids=["view-then-socket", "socket-then-view"])
def test_socket_handler_named_like_an_http_view_on_a_real_server(serve, socket_first):
    server = serve(chat_app(socket_first))
    with urllib.request.urlopen(f"{server.http_url}/chat", timeout=5) as r:
        assert r.read() == b"the page"
    with connect(f"{server.ws_url}/chat/socket", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "the socket, ws:chat"


def test_one_handler_decorated_twice(serve):
    """@sockets.route('/echo') and @sockets.route('/ws') on one function: both URLs
    serve it, under one endpoint (url_for builds the first declared, as in Flask)."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    @sockets.route("/ws")
    def echo_socket(ws):
        ws.send(request.path)

    with app.test_request_context():
        assert url_for("ws:echo_socket") == "ws://localhost/ws"  # the inner decorator runs first
    client = SocketTestClient(app)
    with client.connect("/echo") as ws:
        assert ws.receive() == "/echo"
    server = serve(app)
    for path in ("/echo", "/ws"):
        with connect(f"{server.ws_url}{path}", open_timeout=5) as ws:
            assert ws.recv(timeout=5) == path


def test_rules_sharing_an_endpoint_keep_their_own_options():
    """Each rule of a shared endpoint runs with its own subprotocols (the view
    dispatches on the rule that matched)."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/v2", subprotocols=["v2"])
    @sockets.route("/any")
    def speak(ws):
        ws.send(f"{request.path}:{ws.subprotocol}")

    client = SocketTestClient(app)
    with client.connect("/v2", subprotocols=["v1", "v2"]) as ws:
        assert ws.receive() == "/v2:v2"
    with client.connect("/any", subprotocols=["v1", "v2"]) as ws:
        assert ws.receive() == "/any:None"


def test_an_explicit_endpoint_is_honoured_and_may_be_shared():
    """endpoint= names the route as given; two socket routes may share it."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/a", endpoint="feed")
    def feed_a(ws):
        ws.send("a")

    @sockets.route("/b", endpoint="feed")
    def feed_b(ws):
        ws.send("b")

    with app.test_request_context():
        assert url_for("feed") == "ws://localhost/a"
    client = SocketTestClient(app)
    for path in ("a", "b"):
        with client.connect(f"/{path}") as ws:
            assert ws.receive() == path


def test_an_explicit_endpoint_of_an_http_view_is_a_clear_error():
    """A real clash, an explicit endpoint that an HTTP view has, fails where it is declared."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @app.route("/chat")
    def chat():
        return "the page"

    with pytest.raises(ValueError, match=r"endpoint 'chat' is an HTTP view's .*another endpoint="):

        @sockets.route("/chat/socket", endpoint="chat")
        def chat_socket(ws):
            ws.send("never")

    assert SocketTestClient(app).http.get("/chat").text == "the page"


def test_blueprint_socket_route_named_like_its_http_view(serve):
    """On a mixed blueprint, def page() and a socket def page(ws) are 'room.page'
    and 'room.ws:page'; before_request of the blueprint runs for both."""
    room = Blueprint("room", __name__, url_prefix="/room")
    sockets = Sockets()
    seen = []

    @room.before_request
    def note():
        seen.append(request.endpoint)

    @room.route("/")
    def page():
        return url_for(".ws:page", _external=True)

    @sockets.route("/socket", blueprint=room)
    def page(ws):  # noqa: F811
        ws.send(request.endpoint)

    app = Flask(__name__)
    sockets.init_app(app)
    app.register_blueprint(room)
    server = serve(app)
    with urllib.request.urlopen(f"{server.http_url}/room/", timeout=5) as r:
        assert r.read().decode() == f"{server.ws_url}/room/socket"
    with connect(f"{server.ws_url}/room/socket", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "room.ws:page"
    assert seen == ["room.page", "room.ws:page"]


def test_blueprint_socket_route_explicit_endpoint():
    bp = Blueprint("bp", __name__)
    sockets = Sockets()

    @sockets.route("/s", blueprint=bp, endpoint="stream")
    def handler(ws):
        ws.send("ok")

    with pytest.raises(ValueError, match="dot"):
        sockets.route("/t", blueprint=bp, endpoint="a.b")(handler)
    app = Flask(__name__)
    sockets.init_app(app)
    app.register_blueprint(bp)
    with app.test_request_context():
        assert url_for("bp.stream") == "ws://localhost/s"

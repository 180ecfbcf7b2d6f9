"""Flask-Sockets 0.2's routing surface (issue 19, item 5): ``sockets.url_map``,
``Rule``/``Map``/``SocketMiddleware``/``Worker`` imported from ``flask_sockets``,
route options 0.2 ignored, ``sockets.blueprints``, and one blueprint registered
on both the app and the extension."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from flask import Blueprint
from flask import Flask
from flask import g
from flask import request
from flask import url_for
from websockets.sync.client import connect
from werkzeug.routing import BaseConverter
from werkzeug.routing import Submount

import flask_sockets
from flask_sockets import Rule
from flask_sockets import SocketMiddleware
from flask_sockets import Sockets
from flask_sockets.testing import SocketTestClient


class RegexConverter(BaseConverter):
    """The converter 0.2 apps registered on both url maps."""

    def __init__(self, url_map, *items):
        super().__init__(url_map)
        self.regex = items[0]


def echo_socket(ws, **variables):
    ws.send(f"{request.path}:{ws.receive()}")


def test_url_map_add_rule_with_the_handler_as_endpoint(serve):
    """The Werkzeug-2 workaround: sockets.url_map.add(Rule(..., endpoint=handler, websocket=True)),
    next to an @sockets.route for the same handler and URL."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def transcribe(ws):
        ws.send(f"{request.endpoint}:{ws.receive()}")

    sockets.url_map.add(Rule("/echo", endpoint=transcribe, websocket=True))
    sockets.url_map.add(Rule("/media/<int:n>", endpoint=echo_socket, websocket=True))
    sockets.url_map.add(Rule("/plain", endpoint=echo_socket))  # 0.2's own rules had no websocket=True
    client = SocketTestClient(app)
    with client.connect("/media/3") as ws:
        ws.send("hi")
        assert ws.receive() == "/media/3:hi"
    assert client.http.get("/plain").status_code == 426  # a socket route: plain HTTP is refused
    server = serve(app)
    for path, expected in (("/echo", "ws:transcribe:x"), ("/media/3", "/media/3:x"), ("/plain", "/plain:x")):
        with connect(f"{server.ws_url}{path}", open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == expected


def test_url_map_add_before_and_after_init_app():
    """Rules added to sockets.url_map reach every app, initialised before or after."""
    sockets = Sockets()
    sockets.url_map.add(Rule("/before", endpoint=echo_socket, websocket=True))
    first = Flask(__name__)
    sockets.init_app(first)
    sockets.url_map.add(Submount("/sub", [Rule("/after", endpoint=echo_socket, websocket=True)]))
    second = Flask(__name__)
    sockets.init_app(second)
    for app in (first, second):
        client = SocketTestClient(app)
        for path in ("/before", "/sub/after"):
            with client.connect(path) as ws:
                ws.send("hi")
                assert ws.receive() == f"{path}:hi"
        with app.test_request_context():
            assert url_for("ws:echo_socket") == "ws://localhost/before"


def test_url_map_add_needs_the_handler_as_endpoint():
    sockets = Sockets(Flask(__name__))
    with pytest.raises(TypeError, match=r"endpoint must be the socket handler.*@sockets.route\('/x'\)"):
        sockets.url_map.add(Rule("/x", endpoint="echo"))


@pytest.mark.parametrize("when", ["before-init_app", "after-init_app"])
def test_url_map_converters(serve, when):
    """sockets.url_map.converters['regex'] = RegexConverter reaches the app's url_map,
    set before or after init_app, for routes declared before or after it."""
    sockets = Sockets()
    app = Flask(__name__)
    if when == "after-init_app":
        sockets.init_app(app)
    sockets.url_map.converters["regex"] = RegexConverter

    @sockets.route('/re/<regex("[a-z]+"):word>')
    def word(ws, word):
        ws.send(word)

    if when == "before-init_app":
        sockets.init_app(app)
    assert app.url_map.converters["regex"] is RegexConverter
    assert sockets.url_map.converters["regex"] is RegexConverter
    assert sockets.url_map.converters["int"] is app.url_map.converters["int"]  # Werkzeug's own
    assert "regex" in set(sockets.url_map.converters) and "path" in set(sockets.url_map.converters)
    with SocketTestClient(app).connect("/re/abc") as ws:
        assert ws.receive() == "abc"
    server = serve(app)
    with connect(f"{server.ws_url}/re/xyz", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "xyz"


def test_url_map_converter_removed():
    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.url_map.converters["regex"] = RegexConverter
    del sockets.url_map.converters["regex"]
    assert "regex" not in app.url_map.converters
    assert "regex" not in sockets.url_map.converters


def test_url_map_iter_rules_and_other_attributes():
    """iter_rules() gives the socket rules (0.2 code sets rule.websocket = True on
    them: a no-op now); the rest of a Map is an AttributeError naming app.url_map."""
    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.add_url_rule("/echo", view_func=echo_socket)

    @app.route("/")
    def index():
        return "hi"

    assert [(r.rule, r.websocket) for r in sockets.url_map.iter_rules()] == [("/echo", True)]
    assert [r.rule for r in sockets.url_map.iter_rules("ws:echo_socket")] == ["/echo"]
    assert [r.rule for r in sockets.url_map.iter_rules(echo_socket)] == ["/echo"]  # 0.2's endpoints
    assert list(sockets.url_map.iter_rules("index")) == []
    with pytest.raises(AttributeError, match=r"use app.url_map.bind_to_environ"):
        sockets.url_map.bind_to_environ  # noqa: B018


def test_0_2_names_import():
    """from flask_sockets import Rule, Map, SocketMiddleware, Worker, worker."""
    from werkzeug import routing

    from flask_sockets import Map
    from flask_sockets import Worker
    from flask_sockets import worker
    from flask_sockets_gunicorn import GeventWebSocketWorker

    assert (Rule, Map) == (routing.Rule, routing.Map)
    assert Worker is worker is GeventWebSocketWorker


def test_worker_is_loaded_only_when_asked_for():
    """Importing Rule, Map and SocketMiddleware imports no server; Worker does."""
    code = (
        "import sys; from flask_sockets import Rule, Map, SocketMiddleware; "
        "assert 'gunicorn' not in sys.modules; "
        "from flask_sockets import Worker; assert 'gunicorn' in sys.modules; print(Worker.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "GeventWebSocketWorker"


@pytest.mark.parametrize("initialised", [True, False])
def test_socket_middleware_passes_requests_through(serve, initialised):
    """app.wsgi_app = SocketMiddleware(app.wsgi_app, app, sockets) still serves the
    app, and initialises the extension if the app was not."""
    app = Flask(__name__)
    sockets = Sockets(app) if initialised else Sockets()
    sockets.add_url_rule("/echo", view_func=echo_socket)

    @app.route("/")
    def index():
        return "hello"

    app.wsgi_app = SocketMiddleware(app.wsgi_app, app, sockets)  # type: ignore[method-assign]
    assert app.extensions["sockets"] is sockets
    assert (app.wsgi_app.app, app.wsgi_app.ws) == (app, sockets)
    server = serve(app)
    with urllib.request.urlopen(f"{server.http_url}/", timeout=5) as r:
        assert r.read() == b"hello"
    with connect(f"{server.ws_url}/echo", open_timeout=5) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "/echo:hi"


def test_socket_middleware_with_another_extension_is_an_error():
    app = Flask(__name__)
    Sockets(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        SocketMiddleware(app.wsgi_app, app, Sockets())


def test_websocket_true_is_accepted(serve):
    """@sockets.route('/echo', websocket=True), on the app or a socket blueprint."""
    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.route("/echo", websocket=True)(echo_socket)
    bp = Blueprint("live", __name__)
    bp.route("/feed", websocket=True)(echo_socket)
    sockets.register_blueprint(bp)
    server = serve(app)
    for path in ("/echo", "/feed"):
        with connect(f"{server.ws_url}{path}", open_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == f"{path}:hi"


def test_websocket_false_is_a_clear_error():
    sockets = Sockets(Flask(__name__))
    with pytest.raises(ValueError, match="always a WebSocket rule"):
        sockets.route("/echo", websocket=False)(echo_socket)


def test_unknown_route_options_are_dropped_with_a_warning():
    """0.2 ignored route options; an option nothing takes is dropped, and a warning names it."""
    app = Flask(__name__)
    sockets = Sockets(app)
    with pytest.warns(UserWarning, match=r"'/echo': ignored the unknown option\(s\) colour, subprotocol\."):
        sockets.route("/echo", subprotocol="chat", colour="blue", strict_slashes=False)(echo_socket)
    with SocketTestClient(app).connect("/echo") as ws:
        ws.send("hi")
        assert ws.receive() == "/echo:hi"


def test_sockets_blueprints():
    ws = Blueprint("ws", __name__)
    sockets = Sockets()
    sockets.register_blueprint(ws)
    sockets.register_blueprint(ws, name="ws2")
    assert sockets.blueprints == {"ws": ws, "ws2": ws}


def both_ways_app(sockets_first: bool) -> tuple[Flask, list[str]]:
    """One blueprint with an HTTP page and a socket, registered with both
    app.register_blueprint and sockets.register_blueprint, as 0.2 apps do."""
    calls: list[str] = []
    bp = Blueprint("chat", __name__)

    @bp.before_request
    def hook():
        calls.append(request.path)
        g.hooked = True

    @bp.route("/")
    def index():
        return "the page"

    @bp.route("/socket")
    def socket(ws):
        ws.send(f"the socket {g.hooked} {request.endpoint}")

    app = Flask(__name__)
    sockets = Sockets(app)
    if sockets_first:
        sockets.register_blueprint(bp, url_prefix="/chat")
        app.register_blueprint(bp, url_prefix="/chat")
    else:
        app.register_blueprint(bp, url_prefix="/chat")
        sockets.register_blueprint(bp, url_prefix="/chat")
    return app, calls


@pytest.mark.parametrize("sockets_first", [False, True], ids=["app-first", "sockets-first"])
def test_one_blueprint_registered_on_both(serve, sockets_first):
    """Its HTTP routes stay HTTP, its routes also serve WebSocket; its
    before_request runs once per request."""
    app, calls = both_ways_app(sockets_first)
    with app.test_request_context():
        assert url_for("chat.index") == "/chat/"
        assert url_for("ws:chat.socket") == "ws://localhost/chat/socket"
    client = SocketTestClient(app)
    assert client.http.get("/chat/").text == "the page"
    with client.connect("/chat/socket") as ws:
        assert ws.receive() == "the socket True ws:chat.socket"
    assert calls == ["/chat/", "/chat/socket"]
    server = serve(app)
    with urllib.request.urlopen(f"{server.http_url}/chat/", timeout=5) as r:
        assert r.read() == b"the page"
    with connect(f"{server.ws_url}/chat/socket", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "the socket True ws:chat.socket"
    assert calls == ["/chat/", "/chat/socket"] * 2


def test_socket_blueprint_named_like_an_http_blueprint():
    """A socket blueprint and another HTTP blueprint with the same name, as 0.2 allowed."""
    html, ws = Blueprint("site", __name__), Blueprint("site", __name__)
    html.add_url_rule("/", "index", lambda: "the page")
    ws.add_url_rule("/echo", view_func=echo_socket)
    app = Flask(__name__)
    sockets = Sockets(app)
    app.register_blueprint(html)
    sockets.register_blueprint(ws)
    client = SocketTestClient(app)
    assert client.http.get("/").text == "the page"
    with client.connect("/echo") as socket:
        socket.send("hi")
        assert socket.receive() == "/echo:hi"


def test_flask_sockets_module_has_no_other_names():
    with pytest.raises(AttributeError):
        flask_sockets.Workers  # noqa: B018

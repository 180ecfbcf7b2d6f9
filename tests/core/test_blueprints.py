"""Socket routes on blueprints: the classic register_blueprint form and mixed blueprints."""

from __future__ import annotations

import urllib.request

import pytest
from flask import Blueprint
from flask import Flask
from flask import g
from flask import url_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets


def echo_once(ws):
    ws.send(ws.receive())


def test_seed_blueprint_form_with_slash_prefix(serve):
    """sockets.register_blueprint(ws, url_prefix='/') serves /echo (no double slash)."""
    html = Blueprint(r"html", __name__)
    ws = Blueprint(r"ws", __name__)

    @html.route("/")
    def hello():
        return "Hello World!"

    @ws.route("/echo")
    def echo_socket(socket):
        while not socket.closed:
            message = socket.receive()
            if message is not None:
                socket.send(message)

    app = Flask(__name__)
    sockets = Sockets(app)
    app.register_blueprint(html, url_prefix=r"/")
    sockets.register_blueprint(ws, url_prefix=r"/")

    assert {r.rule for r in app.url_map.iter_rules() if r.websocket} == {"/echo"}
    with app.test_request_context():
        assert url_for("ws:ws.echo_socket") == "ws://localhost/echo"
        assert url_for("html.hello") == "/"
    server = serve(app)
    with connect(f"{server.ws_url}/echo") as c:
        c.send("hi")
        assert c.recv(timeout=5) == "hi"
    with urllib.request.urlopen(f"{server.http_url}/", timeout=5) as r:
        assert r.read() == b"Hello World!"


def test_nested_blueprints_and_scoped_before_request(serve):
    """Nested blueprints become socket blueprints; each one's before_request applies."""
    api = Blueprint("api", __name__)
    live = Blueprint("live", __name__)
    calls = []

    @api.before_request
    def api_before():
        calls.append("api")
        g.who = "api"

    @live.before_request
    def live_before():
        calls.append("live")

    @live.route("/feed/<name>")
    def feed(ws, name):
        ws.send(f"{g.who}:{name}")

    api.register_blueprint(live, url_prefix="/live")
    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.register_blueprint(api, url_prefix="/api")

    with app.test_request_context():
        assert url_for("ws:api.live.feed", name="x") == "ws://localhost/api/live/feed/x"
    server = serve(app)
    with connect(f"{server.ws_url}/api/live/feed/x") as c:
        assert c.recv(timeout=5) == "api:x"
    assert calls == ["api", "live"]


def test_blueprint_before_request_can_refuse(serve):
    """A blueprint-scoped before_request refuses only that blueprint's sockets."""
    guarded = Blueprint("guarded", __name__)
    open_bp = Blueprint("open", __name__)

    @guarded.before_request
    def refuse():
        return "no", 403

    @guarded.route("/g")
    def g_sock(ws):
        ws.send("g")

    @open_bp.route("/o")
    def o_sock(ws):
        ws.send("o")

    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.register_blueprint(guarded)
    sockets.register_blueprint(open_bp)
    server = serve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/g", open_timeout=5)
    assert e.value.response.status_code == 403
    with connect(f"{server.ws_url}/o") as c:
        assert c.recv(timeout=5) == "o"


def test_mixed_blueprint_with_plain_register_blueprint(serve):
    """@sockets.route(rule, blueprint=bp) puts a socket route on a blueprint that
    app.register_blueprint registers, next to its HTTP views."""
    sockets = Sockets()
    chat = Blueprint("chat", __name__, url_prefix="/chat")

    @chat.route("/")
    def page():
        return url_for("chat.ws:stream", _external=True)

    @sockets.route("/stream", blueprint=chat)
    def stream(ws):
        ws.send("streaming")

    app = Flask(__name__)
    sockets.init_app(app)
    app.register_blueprint(chat)
    server = serve(app)
    with urllib.request.urlopen(f"{server.http_url}/chat/", timeout=5) as r:
        assert r.read().decode() == f"{server.ws_url}/chat/stream"
    with connect(f"{server.ws_url}/chat/stream") as c:
        assert c.recv(timeout=5) == "streaming"


def test_register_blueprint_name_option(serve):
    """The same socket blueprint can be registered twice under different names."""
    bp = Blueprint("bp", __name__)
    bp.add_url_rule("/e", view_func=echo_once)
    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.register_blueprint(bp, url_prefix="/one")
    sockets.register_blueprint(bp, url_prefix="/two", name="bp2")
    with app.test_request_context():
        assert url_for("ws:bp.echo_once") == "ws://localhost/one/e"
        assert url_for("ws:bp2.echo_once") == "ws://localhost/two/e"
    server = serve(app)
    for prefix in ("one", "two"):
        with connect(f"{server.ws_url}/{prefix}/e") as c:
            c.send(prefix)
            assert c.recv(timeout=5) == prefix

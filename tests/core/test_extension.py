"""The Sockets extension follows Flask's extension conventions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flask import Blueprint
from flask import Flask
from flask import url_for
from websockets.sync.client import connect

import flask_sockets
from flask_sockets import Sockets


def greeter(ws):
    ws.send("hello")


def test_init_app_stores_the_extension():
    """init_app stores the extension in app.extensions['sockets'] and never on itself."""
    app = Flask(__name__)
    sockets = Sockets()
    sockets.init_app(app)
    assert app.extensions["sockets"] is sockets
    assert not hasattr(sockets, "app")


def test_init_app_twice_is_an_error():
    """A second init_app on the same app raises a clear RuntimeError."""
    app = Flask(__name__)
    Sockets(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        Sockets(app)


def test_app_factory_with_two_apps(serve):
    """Routes and blueprints declared before or after init_app reach every app."""
    sockets = Sockets()
    sockets.add_url_rule("/before", view_func=greeter)
    bp = Blueprint("bp", __name__)
    bp.add_url_rule("/in-bp", view_func=greeter)
    sockets.register_blueprint(bp, url_prefix="/x")

    def create_app() -> Flask:
        app = Flask(__name__)
        sockets.init_app(app)
        return app

    first, second = create_app(), create_app()

    @sockets.route("/after")
    def after(ws):
        ws.send("after")

    for app in (first, second):
        with app.test_request_context():
            assert url_for("ws:greeter") == "ws://localhost/before"
            assert url_for("ws:bp.greeter") == "ws://localhost/x/in-bp"
            assert url_for("ws:after") == "ws://localhost/after"
    server = serve(second)
    for path, expected in (("/before", "hello"), ("/x/in-bp", "hello"), ("/after", "after")):
        with connect(f"{server.ws_url}{path}") as ws:
            assert ws.recv(timeout=5) == expected


def test_public_names():
    """The package exports what its __all__ says, and each name exists."""
    for name in flask_sockets.__all__:
        assert getattr(flask_sockets, name) is not None
    assert "Sockets" in flask_sockets.__all__
    with pytest.raises(AttributeError):
        flask_sockets.no_such_name  # noqa: B018


def test_core_import_pulls_in_no_server():
    """Importing flask_sockets imports neither gevent nor gunicorn."""
    code = (
        "import sys, flask_sockets; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('gevent', 'geventwebsocket', 'gunicorn')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

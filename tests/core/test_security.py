"""Origin checks and subprotocol negotiation, decided before the handshake."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask import request
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets import is_origin_allowed
from flask_sockets import requested_subprotocols


def origin_app(allowed=None) -> Flask:
    app = Flask(__name__)
    if allowed is not None:
        app.config["SOCKETS_ALLOWED_ORIGINS"] = allowed
    sockets = Sockets(app)

    @sockets.route("/s")
    def s(ws):
        ws.send("welcome")

    return app


def open_with_origin(server, origin):
    with connect(f"{server.ws_url}/s", origin=origin, open_timeout=5) as ws:
        return ws.recv(timeout=5)


def status_for_origin(server, origin) -> int:
    with pytest.raises(InvalidStatus) as e:
        open_with_origin(server, origin)
    return e.value.response.status_code


def test_default_allows_same_origin_and_non_browser_clients(serve):
    """By default a same-origin page and a client without Origin get in."""
    server = serve(origin_app())
    assert open_with_origin(server, f"http://127.0.0.1:{server.port}") == "welcome"
    assert open_with_origin(server, None) == "welcome"


def test_default_refuses_cross_origin_with_403(serve, caplog):
    """A page from another origin is refused with 403 before the handshake (cross-site hijacking)."""
    server = serve(origin_app())
    assert status_for_origin(server, "https://evil.example") == 403
    assert status_for_origin(server, "null") == 403
    assert "SOCKETS_ALLOWED_ORIGINS" in caplog.text


def test_allowed_origins_list(serve):
    """A list allows exactly the listed origins."""
    server = serve(origin_app(["https://app.example", "https://admin.example"]))
    assert open_with_origin(server, "https://app.example") == "welcome"
    assert status_for_origin(server, "https://other.example") == 403
    assert status_for_origin(server, f"http://127.0.0.1:{server.port}") == 403


def test_allowed_origins_star(serve):
    """'*' allows every origin."""
    server = serve(origin_app("*"))
    assert open_with_origin(server, "https://anywhere.example") == "welcome"


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://example.com", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("http://example.com:80", "example.com", True),
        ("http://EXAMPLE.com", "example.COM", True),
        ("http://example.com:8080", "example.com:8080", True),
        ("http://example.com:8080", "example.com", False),
        ("https://example.com.evil.net", "example.com", False),
        ("null", "example.com", False),
        ("", "example.com", False),
    ],
)
def test_same_origin_rule(origin, host, expected):
    """Same origin compares host and port, ignoring case and default ports."""
    assert is_origin_allowed(origin, host, None) is expected


def subprotocol_app() -> tuple[Flask, list]:
    app = Flask(__name__)
    sockets = Sockets(app)
    seen: list = []

    @sockets.route("/chat", subprotocols=["v2.chat", "v1.chat"])
    def chat(ws):
        seen.append((ws.subprotocol, requested_subprotocols(request.environ)))
        ws.send("hi")

    return app, seen


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["v1.chat", "v2.chat"], "v2.chat"),
        (["v1.chat"], "v1.chat"),
        (["v3.chat"], None),
        (None, None),
        (["v2.chatty"], None),
    ],
)
def test_subprotocol_negotiation_by_exact_token_in_server_order(serve, offered, chosen):
    """The server's first supported token that the client offered wins; no match sends no header."""
    app, seen = subprotocol_app()
    server = serve(app)
    with connect(f"{server.ws_url}/chat", subprotocols=offered) as ws:
        assert ws.recv(timeout=5) == "hi"
        assert ws.subprotocol == chosen
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == chosen
    assert seen == [(chosen, offered or [])]


def test_subprotocols_on_a_blueprint_route(serve):
    """subprotocols= works on blueprint socket routes too."""
    from flask import Blueprint

    bp = Blueprint("bp", __name__)

    @bp.route("/x", subprotocols=["json"])
    def x(ws):
        ws.send(ws.subprotocol)

    app = Flask(__name__)
    sockets = Sockets(app)
    sockets.register_blueprint(bp)
    server = serve(app)
    with connect(f"{server.ws_url}/x", subprotocols=["json"]) as ws:
        assert ws.recv(timeout=5) == "json"


def test_refused_origins_are_logged_once_each_and_bounded(caplog):
    """Each refused origin is named in one WARNING (with the expected origin
    and SOCKETS_ALLOWED_ORIGINS); past MAX_LOGGED_ORIGINS distinct ones,
    refusals are logged at DEBUG and no more origins are kept."""
    from flask_sockets.testing import SocketRejected
    from flask_sockets.testing import SocketTestClient
    from flask_sockets.views import MAX_LOGGED_ORIGINS

    app = origin_app(["https://app.example"])
    client = SocketTestClient(app)
    origins = [f"https://evil{i}.example" for i in range(MAX_LOGGED_ORIGINS + 5)]
    with caplog.at_level(logging.DEBUG, logger=app.logger.name):
        for origin in [*origins, *origins[:3]]:
            with pytest.raises(SocketRejected) as e:
                client.connect("/s", headers={"Origin": origin})
            assert e.value.status_code == 403
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == MAX_LOGGED_ORIGINS
    assert "'https://evil0.example'" in warnings[0]
    assert "SOCKETS_ALLOWED_ORIGINS = ['https://app.example']" in warnings[0]
    assert "later ones are logged at DEBUG" in warnings[-1]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "Refused" in r.getMessage()]
    assert len(debug) == 5
    assert len(app.extensions["sockets.refused_origins"]) == MAX_LOGGED_ORIGINS

"""Flask's request machinery runs for socket routes exactly as for HTTP views."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask import abort
from flask import current_app
from flask import g
from flask import got_request_exception
from flask import request
from flask import request_finished
from flask import request_started
from websockets.exceptions import ConnectionClosedError
from websockets.exceptions import ConnectionClosedOK
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from tests.conftest import wait_until


def recv_until_closed(ws):
    """Everything the server sends, then the close frame it sent."""
    messages = []
    with pytest.raises((ConnectionClosedOK, ConnectionClosedError)) as e:
        while True:
            messages.append(ws.recv(timeout=5))
    return messages, e.value.rcvd


def test_before_request_refusal_is_a_real_http_response(serve):
    """A before_request returning a response refuses the upgrade with that status."""
    app = Flask(__name__)
    sockets = Sockets(app)
    ran = []

    @app.before_request
    def only_with_token():
        if request.args.get("token") != "s3cret":
            return "go away", 401

    @sockets.route("/s")
    def s(ws):
        ran.append(True)
        ws.send("welcome")

    server = serve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/s", open_timeout=5)
    assert e.value.response.status_code == 401
    assert e.value.response.body == b"go away"
    assert ran == []
    with connect(f"{server.ws_url}/s?token=s3cret") as ws:
        assert ws.recv(timeout=5) == "welcome"


def test_abort_in_handler_before_using_the_socket_is_an_http_status(serve):
    """With defer_accept=True, abort(403) before the handler touches the socket reaches the client as HTTP 403."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/private", defer_accept=True)
    def private(ws):
        abort(403)

    server = serve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/private", open_timeout=5)
    assert e.value.response.status_code == 403


def test_abort_after_the_handshake_closes_with_1008(serve):
    """A 4xx abort once the socket is open closes it with 1008 and the status as reason."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/s")
    def s(ws):
        ws.send("hello")
        abort(403)

    server = serve(app)
    with connect(f"{server.ws_url}/s") as ws:
        messages, close = recv_until_closed(ws)
    assert messages == ["hello"]
    assert (close.code, close.reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")


def test_handler_exception_closes_1011_and_is_logged_through_flask(serve, caplog):
    """An exception in the handler: close 1011, app.logger error, got_request_exception."""
    app = Flask(__name__)
    sockets = Sockets(app)
    signalled = []

    def on_exception(sender, exception, **extra):
        signalled.append(exception)

    @sockets.route("/boom")
    def boom(ws):
        ws.send("about to fail")
        raise RuntimeError("kaboom")

    server = serve(app)
    with got_request_exception.connected_to(on_exception, app), caplog.at_level(logging.ERROR):
        with connect(f"{server.ws_url}/boom") as ws:
            messages, close = recv_until_closed(ws)
        wait_until(lambda: signalled)
    assert messages == ["about to fail"]
    assert close.code == CloseCode.INTERNAL_ERROR
    assert isinstance(signalled[0], RuntimeError)
    records = [r for r in caplog.records if r.name == app.logger.name]
    assert records and "Exception on /boom [GET]" in records[0].getMessage()
    assert records[0].exc_info[0] is RuntimeError


def test_errorhandler_runs_for_socket_routes(serve):
    """An app error handler sees the handler's exception; the socket still closes 1011."""
    app = Flask(__name__)
    sockets = Sockets(app)
    handled = []

    class RoomFull(Exception):
        pass

    @app.errorhandler(RoomFull)
    def room_full(e):
        handled.append(e)
        return "full", 503

    @sockets.route("/room")
    def room(ws):
        ws.send("checking")
        raise RoomFull()

    server = serve(app)
    with connect(f"{server.ws_url}/room") as ws:
        _, close = recv_until_closed(ws)
    wait_until(lambda: handled)
    assert close.code == CloseCode.INTERNAL_ERROR
    assert isinstance(handled[0], RoomFull)


def test_exception_before_the_handshake_is_an_http_500(serve):
    """An exception before the handler starts (a before_request hook), or in a
    defer_accept=True handler before it uses the socket, gives the client
    Flask's 500 response; in a handler by default, the socket opens and closes with 1011."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @app.before_request
    def hook():
        if request.path == "/hook":
            raise KeyError("missing")

    @sockets.route("/hook")
    def hooked(ws):
        ws.send("never")

    @sockets.route("/deferred", defer_accept=True)
    def deferred(ws):
        raise KeyError("missing")

    @sockets.route("/default")
    def default(ws):
        raise KeyError("missing")

    server = serve(app)
    for path in ("/hook", "/deferred"):
        with pytest.raises(InvalidStatus) as e:
            connect(f"{server.ws_url}{path}", open_timeout=5)
        assert e.value.response.status_code == 500
    with connect(f"{server.ws_url}/default", open_timeout=5) as ws:
        messages, close = recv_until_closed(ws)
    assert messages == []
    assert (close.code, close.reason) == (CloseCode.INTERNAL_ERROR, "Internal Server Error")


def test_handler_return_closes_1000(serve):
    """A handler that returns closes the socket normally."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/once")
    def once(ws):
        ws.send("bye")

    server = serve(app)
    with connect(f"{server.ws_url}/once") as ws:
        messages, close = recv_until_closed(ws)
    assert messages == ["bye"]
    assert close.code == CloseCode.NORMAL_CLOSURE


def test_hooks_signals_and_request_context(serve):
    """url_value_preprocessor, before/after/teardown_request and signals run; request, g,
    cookies and current_app work inside the handler."""
    app = Flask(__name__)
    sockets = Sockets(app)
    events = []

    @app.url_value_preprocessor
    def pull_room(endpoint, values):
        if values is not None and "room" in values:
            g.room = values.pop("room").upper()
            events.append("url_value_preprocessor")

    @app.before_request
    def before():
        events.append("before_request")

    @app.after_request
    def after(response):
        events.append("after_request")
        return response

    @app.teardown_request
    def teardown(exc):
        events.append(f"teardown:{exc!r}")

    def started(sender, **extra):
        events.append("request_started")

    def finished(sender, response, **extra):
        events.append("request_finished")

    @sockets.route("/room/<room>")
    def room(ws):
        events.append("handler")
        ws.send(
            f"{g.room}|{request.args['who']}|{request.cookies['theme']}|"
            f"{request.headers['X-Client']}|{current_app.name}|{request.endpoint}"
        )

    server = serve(app)
    with request_started.connected_to(started, app), request_finished.connected_to(finished, app):
        with connect(
            f"{server.ws_url}/room/lobby?who=ann",
            additional_headers={"Cookie": "theme=dark", "X-Client": "test"},
        ) as ws:
            assert ws.recv(timeout=5) == f"LOBBY|ann|dark|test|{app.name}|ws:room"
        wait_until(lambda: any(e.startswith("teardown") for e in events))
    assert events == [
        "request_started",
        "url_value_preprocessor",
        "before_request",
        "handler",
        "after_request",
        "request_finished",
        "teardown:None",
    ]

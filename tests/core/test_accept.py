"""When the handshake is answered: as the handler starts (the default, as
on 0.2), or, with ``defer_accept=True``, when the handler first uses the
socket, on every way of declaring a socket route."""

from __future__ import annotations

import pytest
from flask import Blueprint
from flask import Flask
from flask import abort

from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from flask_sockets.testing import SocketRejected
from flask_sockets.testing import SocketTestClient


def refuse(ws):
    abort(403)


def declare(how: str, app: Flask, sockets: Sockets, **options) -> None:
    """Declare ``refuse`` at /x in one of the ways a socket route is declared."""
    if how == "route":
        sockets.route("/x", **options)(refuse)
    elif how == "add_url_rule":
        sockets.add_url_rule("/x", "x", refuse, **options)
    elif how == "route on a mixed blueprint":
        bp = Blueprint("mixed", __name__)
        sockets.route("/x", blueprint=bp, **options)(refuse)
        app.register_blueprint(bp)
    elif how == "socket blueprint":
        bp = Blueprint("ws", __name__)
        bp.route("/x", **options)(refuse)
        sockets.register_blueprint(bp)
    else:  # pragma: no cover
        raise AssertionError(how)


HOWS = ["route", "add_url_rule", "route on a mixed blueprint", "socket blueprint"]


@pytest.mark.parametrize("how", HOWS)
def test_defer_accept_lets_the_handler_refuse_with_http(how: str) -> None:
    """defer_accept=True: abort(403) before the socket is used is an HTTP 403."""
    app = Flask(__name__)
    sockets = Sockets(app)
    declare(how, app, sockets, defer_accept=True)
    with pytest.raises(SocketRejected) as e:
        SocketTestClient(app).connect("/x")
    assert e.value.status_code == 403


@pytest.mark.parametrize("how", HOWS)
def test_by_default_the_handler_starts_accepted(how: str) -> None:
    """By default the 101 is out when the handler starts: abort(403) closes with 1008."""
    app = Flask(__name__)
    sockets = Sockets(app)
    declare(how, app, sockets)
    with SocketTestClient(app).connect("/x") as ws:
        assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")

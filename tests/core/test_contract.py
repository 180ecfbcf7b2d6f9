"""Every socket a handler gets from Flask-Sockets satisfies the documented
contract, :class:`flask_sockets.WebSocket` (mypy checks the classes in
``flask_sockets.typing``; these tests check the objects handlers really get),
and ``abort()`` ends a connection everywhere."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets import WebSocket
from flask_sockets.testing import SocketTestClient
from tests.conftest import TIMEOUT
from tests.conftest import wait_until

#: What the documentation tells handlers to use, besides the methods.
DOCUMENTED = ("closed", "accepted", "subprotocol", "compression", "close_code", "close_reason")


def contract_app() -> tuple[Flask, list]:
    app = Flask(__name__)
    sockets = Sockets(app)
    seen: list = []

    @sockets.route("/contract")
    def contract(ws):
        seen.append(("is a WebSocket", isinstance(ws, WebSocket)))
        seen.append(("documented", {name: getattr(ws, name) for name in DOCUMENTED}))
        ws.send("ok")
        # Cut the connection while this handler waits in receive().
        threading.Timer(0.1, ws.abort).start()
        seen.append(("after abort", ws.receive(timeout=TIMEOUT), ws.closed, ws.close_code))

    return app, seen


def check(seen: list) -> None:
    wait_until(lambda: len(seen) == 3)
    assert seen[0] == ("is a WebSocket", True)
    assert seen[1] == (
        "documented",
        {
            "closed": False,
            "accepted": True,
            "subprotocol": None,
            "compression": None,
            "close_code": None,
            "close_reason": None,
        },
    )
    assert seen[2] == ("after abort", None, True, 1006)


def test_test_client_socket() -> None:
    """The test client's socket: the contract, and ``abort()`` reaches both ends as 1006."""
    app, seen = contract_app()
    # No compression offered: the documented attributes are all at their defaults.
    with SocketTestClient(app).connect("/contract", compression=None) as ws:
        assert ws.receive() == "ok"
        assert ws.receive() is None
        assert ws.close_code == 1006
    check(seen)


def test_development_server_socket(devserve) -> None:
    """The threaded socket (the development server's): the contract, and
    ``abort()`` cuts the TCP connection."""
    app, seen = contract_app()
    server = devserve(app)
    # No compression offered: the documented attributes are all at their defaults.
    with connect(f"{server.ws_url}/contract", compression=None, open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "ok"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is None  # no close frame: the connection was cut
    check(seen)

"""Sending anything but text or bytes raises TypeError naming the type, on
every socket class, and nothing goes out (``ws.send(42)`` used to send 42
NUL bytes)."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.base import to_payload
from flask_sockets.testing import SocketTestClient

#: What a handler tries to send, and the type its TypeError must name.
WRONG = [(42, "int"), ({"a": 1}, "dict"), (None, "NoneType"), (1.5, "float"), (["x"], "list")]


def bad_sends_app() -> Flask:
    """``/bad``: tries ``send``, ``send_frame`` (and ``send_nowait`` where
    the socket has it) with each wrong type, then sends, as JSON, what
    each call did: the TypeError's message, or ``"sent"``."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/bad")
    def bad(ws):
        outcomes = []
        for value, _ in WRONG:
            calls = [ws.send, lambda m: ws.send(m, binary=True), lambda m: ws.send_frame(m, ws.OPCODE_BINARY)]
            if hasattr(ws, "send_nowait"):
                calls.append(ws.send_nowait)
            for call in calls:
                try:
                    call(value)
                    outcomes.append("sent")
                except TypeError as e:
                    outcomes.append(str(e))
        ws.send(json.dumps(outcomes))
        ws.send(bytearray(b"ba"))
        ws.send(memoryview(b"mv"))

    return app


def check_outcomes(outcomes: list[str], calls_per_value: int) -> None:
    expected = [name for _, name in WRONG for _ in range(calls_per_value)]
    assert len(outcomes) == len(expected), outcomes
    for outcome, name in zip(outcomes, expected):
        assert outcome.startswith("A message is str or bytes") and outcome.endswith(f"not {name}"), outcome


def receive_all(ws) -> list:
    """The three messages of /bad; anything before them (a frame the wrong
    types made) fails the test."""
    return [ws.recv(timeout=5) for _ in range(3)]


def test_development_server_socket(devserve):
    server = devserve(bad_sends_app())
    with connect(f"{server.ws_url}/bad", open_timeout=5) as ws:
        first, *rest = receive_all(ws)
    check_outcomes(json.loads(first), calls_per_value=4)  # send_nowait too (ThreadedWebSocket)
    assert rest == [b"ba", b"mv"]


def test_test_client_server_side_socket():
    client = SocketTestClient(bad_sends_app())
    with client.connect("/bad") as ws:
        first, *rest = [ws.receive() for _ in range(3)]
    check_outcomes(json.loads(first), calls_per_value=4)  # send_nowait too (every SocketBase)
    assert rest == [b"ba", b"mv"]


def test_test_client_client_side_socket():
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws):
        while (message := ws.receive()) is not None:
            ws.send(message)

    with SocketTestClient(app).connect("/echo") as ws:
        for value, name in WRONG:
            with pytest.raises(TypeError, match=f"not {name}$"):
                ws.send(value)  # type: ignore[arg-type]
        ws.send(memoryview(b"still open"))
        assert ws.receive() == b"still open"


@pytest.mark.parametrize("value", [42, {"a": 1}, None])
def test_publish_and_broadcast(value):
    app = Flask(__name__)
    sockets = Sockets(app)
    name = type(value).__name__
    with app.app_context():
        with pytest.raises(TypeError, match=f"^A message is str or bytes .*not {name}$"):
            sockets.publish("room", value)
        with pytest.raises(TypeError, match=f"^A message is str or bytes .*not {name}$"):
            sockets.broadcast(value)


def test_to_payload():
    assert to_payload("é") == "é".encode()
    assert to_payload(b"x") == b"x"
    assert to_payload(bytearray(b"x")) == b"x"
    assert to_payload(memoryview(b"xy")[1:]) == b"y"
    assert type(to_payload(bytearray(b"x"))) is bytes
    with pytest.raises(TypeError, match="not int$"):
        to_payload(3)

"""Testing a socket route with pytest, without a server.

:class:`flask_sockets.testing.SocketTestClient` runs the app in-process: no
gevent, no ports. Run these tests with::

    pytest examples/test_echo_app.py
"""

import pytest
from flask import Flask
from flask import abort
from flask import request

from flask_sockets import Sockets
from flask_sockets.testing import SocketRejected
from flask_sockets.testing import SocketTestClient

app = Flask(__name__)
sockets = Sockets(app)


# defer_accept=True: the handshake waits for the handler's first use of the
# socket, so the handler can still refuse with an HTTP status.
@sockets.route("/echo", defer_accept=True)
def echo_socket(ws):
    if request.args.get("token") != "s3cret":
        abort(403)  # before the socket is used: the client gets HTTP 403
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


@pytest.fixture
def client():
    app.testing = True  # exceptions in handlers are raised in the test
    return SocketTestClient(app)


def test_echo(client):
    with client.connect("/echo?token=s3cret") as ws:
        ws.send("Hello!")
        assert ws.receive() == "Hello!"
        ws.send(b"\x00\x01")
        assert ws.receive() == b"\x00\x01"


def test_client_closes(client):
    with client.connect("/echo?token=s3cret") as ws:
        ws.close(1001)
    assert ws.close_code == 1001  # the handler echoed our close


def test_refused_without_token(client):
    with pytest.raises(SocketRejected) as e:
        client.connect("/echo")
    assert e.value.status_code == 403

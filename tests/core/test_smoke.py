from flask import Flask
from websockets.sync.client import connect

from flask_sockets import Sockets


def test_echo(serve):
    """A socket route echoes over a real connection."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws):
        while not ws.closed:
            ws.send(ws.receive())

    server = serve(app)
    with connect(f"{server.ws_url}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"

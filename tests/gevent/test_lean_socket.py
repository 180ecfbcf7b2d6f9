"""The gevent socket keeps its state in slots; apps can still put their own
attributes on it and take weak references to it."""

from __future__ import annotations

import weakref

from flask import Flask
from websockets.sync.client import connect

from flask_sockets import Sockets


def test_apps_can_set_attributes_and_weakly_reference_the_socket(serve):
    app = Flask(__name__)
    sockets = Sockets(app)
    seen = weakref.WeakSet()

    @sockets.route("/mine")
    def mine(ws):
        ws.user = "ann"
        seen.add(ws)
        ws.send(f"{ws.user} {len(seen)} {weakref.ref(ws)() is ws}")

    server = serve(app)
    with connect(f"{server.ws_url}/mine") as ws:
        assert ws.recv(timeout=5) == "ann 1 True"

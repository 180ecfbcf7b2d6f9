"""flask-sock (simple-websocket) echo, served by
``gunicorn -k gevent -w 1 flask_sock_app:app`` (flask-sock's documented gevent setup)."""

from __future__ import annotations

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
# simple-websocket's default max_message_size is None (no limit) already.
app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 2 * 1024 * 1024}
sock = Sock(app)


@sock.route("/echo")
def echo(ws):  # type: ignore[no-untyped-def]
    while True:
        ws.send(ws.receive())

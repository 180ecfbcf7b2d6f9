"""How handlers end, as a 0.2 user wrote them: one that returns (close
1000), one that raises (close 1011), one that aborts (close 1008), and an
echo that browsers on other sites open (refused by the origin check)."""

from flask import Flask
from flask import abort

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route("/echo")
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


@sockets.route("/bye")
def bye(ws):
    ws.send("bye")


@sockets.route("/boom")
def boom(ws):
    ws.send("about to fail")
    raise RuntimeError("handler failed on purpose")


@sockets.route("/forbidden")
def forbidden(ws):
    ws.send("checking")
    abort(403)

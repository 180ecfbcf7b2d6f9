"""Rooms (0.3) in an app served as 0.2 apps were: every path, gevent-websocket's
own socket included, joins, publishes and lists members."""

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route("/rooms/<name>")
def room(ws, name):
    sockets.join(ws, name)
    # The members are the sockets as handlers have them, on every server.
    ws.send(f"joined {name}: {ws in sockets.members(name)}")
    while not ws.closed:
        message = ws.receive()
        if message == "boom":
            raise RuntimeError("handler failed on purpose")
        if message is not None:
            sockets.publish(name, message)

"""Scaling out with Flask-SocketIO: python scaling_socketio.py PORT

One of the P server processes of bench/scaling.py: Flask-SocketIO in gevent
mode on ``socketio.run`` with its Redis message queue at ``$BENCH_REDIS_URL``
(python-socketio's ``RedisManager``: one channel, every process receives
every message). Each Socket.IO client joins the room named by its
handshake's ``room`` query parameter in the connect handler.
``GET /stats`` answers JSON: ``broker_received``, the messages the manager's
listening thread got from Redis (counted by wrapping its ``_listen``
generator, before the thread starts).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import typing as t  # noqa: E402

from flask import Flask  # noqa: E402
from flask import jsonify  # noqa: E402
from flask import request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from flask_socketio import join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", message_queue=os.environ["BENCH_REDIS_URL"])
received = 0
manager = socketio.server.manager
listen = manager._listen


def counting_listen() -> t.Iterator[t.Any]:
    global received
    for message in listen():
        received += 1
        yield message


manager._listen = counting_listen


@socketio.on("connect")
def connect():  # type: ignore[no-untyped-def]
    join_room(request.args["room"])


@app.get("/stats")
def stats():  # type: ignore[no-untyped-def]
    return jsonify({"pid": os.getpid(), "design": "flask-socketio", "broker_received": received})


if __name__ == "__main__":
    socketio.run(app, "127.0.0.1", int(sys.argv[1]), log_output=False)

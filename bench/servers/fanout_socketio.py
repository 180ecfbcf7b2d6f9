"""Fan-out with Flask-SocketIO: python fanout_socketio.py PORT [--redis]

Each Socket.IO client joins the room ``bench`` in its connect handler (the
client knows it has joined when the namespace CONNECT packet arrives, which
Flask-SocketIO sends after that handler); ``POST /publish`` emits its body
to the room as the event ``fanout``. With ``--redis``, Flask-SocketIO's Redis
message queue at ``$BENCH_REDIS_URL`` carries the emit, through Redis and back. Served by
``socketio.run`` in gevent mode, which uses gevent-websocket's
``WebSocketHandler`` on ``gevent.pywsgi`` (as ours does), access log off.
A JSON body (``Content-Type: application/json``, the compressed fan-out's
1 KiB documents) is emitted as the object it is, so the Socket.IO packet
carries it as JSON, not as a JSON string in JSON.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from flask import Flask  # noqa: E402
from flask import request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from flask_socketio import join_room  # noqa: E402

app = Flask(__name__)
queue = os.environ["BENCH_REDIS_URL"] if "--redis" in sys.argv else None
socketio = SocketIO(app, async_mode="gevent", message_queue=queue)


@socketio.on("connect")
def connect():  # type: ignore[no-untyped-def]
    join_room("bench")


@app.post("/publish")
def publish():  # type: ignore[no-untyped-def]
    body = request.get_json() if request.is_json else request.get_data(as_text=True)
    socketio.emit("fanout", body, to="bench")
    return "", 204


if __name__ == "__main__":
    socketio.run(app, "127.0.0.1", int(sys.argv[1]), log_output=False)

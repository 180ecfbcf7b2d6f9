"""Fan-out with our rooms: python fanout_ours.py PORT [--redis]

Each socket on ``/fanout`` joins the room ``bench`` and is told ``joined``;
``POST /publish`` publishes its body to the room. With ``--redis`` the app
sets ``SOCKETS_MESSAGE_QUEUE`` to ``$BENCH_REDIS_URL``, so the message goes through Redis and back
even though one process serves every socket. ``$BENCH_COMPRESSION`` (JSON),
if set, is ``SOCKETS_COMPRESSION`` (the compressed fan-out). Served by
``flask_sockets_gevent.run``, access log off.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from flask import Flask  # noqa: E402
from flask import request  # noqa: E402
from hostile_common import compression  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
if "--redis" in sys.argv:
    app.config["SOCKETS_MESSAGE_QUEUE"] = os.environ["BENCH_REDIS_URL"]
if compression() is not None:
    app.config["SOCKETS_COMPRESSION"] = compression()
sockets = Sockets(app)


@sockets.route("/fanout")
def fanout(ws):  # type: ignore[no-untyped-def]
    sockets.join(ws, "bench")
    ws.send("joined")
    while ws.receive() is not None:
        pass


@app.post("/publish")
def publish():  # type: ignore[no-untyped-def]
    sockets.publish("bench", request.get_data(as_text=True))
    return "", 204


if __name__ == "__main__":
    flask_sockets_gevent.run(app, "127.0.0.1", int(sys.argv[1]), log=None)

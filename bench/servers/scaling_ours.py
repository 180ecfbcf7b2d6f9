"""Scaling out with our rooms: python scaling_ours.py PORT

One of the P server processes of bench/scaling.py. ``$BENCH_DESIGN`` says
which broker carries the messages, on ``$BENCH_REDIS_URL``:

- ``one-channel``: today's design before issue #13, frozen in
  ``onechannel.OneChannelBroker`` and passed as ``SOCKETS_MESSAGE_QUEUE``:
  one Redis channel, every process receives every message;
- ``per-room``: ``SOCKETS_MESSAGE_QUEUE = 'redis://...'`` (a channel per room);
- ``cluster``: ``SOCKETS_MESSAGE_QUEUE = 'redis+cluster://...'`` (sharded pub/sub).

A socket on ``/room?name=R`` joins the room ``R`` and is told ``joined``.
``GET /stats`` answers JSON: ``broker_received`` (messages this process
received from Redis: the frozen broker's counter, else
``sockets.stats()['broker_received']``) and ``stats`` (``sockets.stats()``
where it exists). Served by ``flask_sockets_gevent.run``, access log off.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from flask import Flask  # noqa: E402
from flask import jsonify  # noqa: E402
from flask import request  # noqa: E402
from onechannel import OneChannelBroker  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

DESIGN = os.environ["BENCH_DESIGN"]
URL = os.environ["BENCH_REDIS_URL"]

app = Flask(__name__)
frozen = OneChannelBroker(URL) if DESIGN == "one-channel" else None
app.config["SOCKETS_MESSAGE_QUEUE"] = frozen if frozen is not None else URL
sockets = Sockets(app)


@sockets.route("/room")
def room(ws):  # type: ignore[no-untyped-def]
    sockets.join(ws, request.args["name"])
    ws.send("joined")
    while ws.receive() is not None:
        pass


@app.get("/stats")
def stats():  # type: ignore[no-untyped-def]
    found = sockets.stats() if hasattr(sockets, "stats") else {}
    received = frozen.received if frozen is not None else found.get("broker_received")
    return jsonify({"pid": os.getpid(), "design": DESIGN, "broker_received": received, "stats": found})


if __name__ == "__main__":
    flask_sockets_gevent.run(app, "127.0.0.1", int(sys.argv[1]), log=None)

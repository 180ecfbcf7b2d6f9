"""The app the hostile-input tests attack, served by ``flask_sockets_gevent.run``
(``python app.py PORT``) or by gunicorn with our worker (``app:app``).

``HOSTILE_CONFIG`` (JSON) is merged into ``app.config``. ``GET /events``
returns, as JSON, how each socket handler ended; ``GET /pid`` the process id
(the gunicorn worker's, not the arbiter's).
"""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402
from flask import jsonify  # noqa: E402

from flask_sockets import ConnectionClosed  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
app.config.update(json.loads(os.environ.get("HOSTILE_CONFIG", "{}")))
sockets = Sockets(app)
#: One dict per socket handler that ended: route, how, seconds, close code.
events: list[dict[str, object]] = []


@app.get("/events")
def get_events():
    return jsonify(events)


@app.get("/pid")
def get_pid():
    return str(os.getpid())


@sockets.route("/echo")
def echo(ws):
    started = time.monotonic()
    while (message := ws.receive()) is not None:
        ws.send(message)
    events.append({"route": "echo", "how": "returned", "seconds": time.monotonic() - started, "code": ws.close_code})


@sockets.route("/sink")
def sink(ws):
    """Reads and drops every message."""
    count = 0
    while ws.receive() is not None:
        count += 1
    events.append({"route": "sink", "how": "returned", "messages": count, "code": ws.close_code})


@sockets.route("/firehose")
def firehose(ws):
    """Sends 64 KiB messages until sending fails (the client reads nothing)."""
    started, chunk, sent = time.monotonic(), b"x" * 65536, 0
    try:
        while sent < 100_000:  # bounded: 6.5 GB, far more than any socket buffer
            ws.send(chunk)
            sent += 1
        how = "sent everything"
    except ConnectionClosed as e:
        how = f"ConnectionClosed: {e}"
    events.append({"route": "firehose", "how": how, "seconds": time.monotonic() - started, "code": ws.close_code})


if __name__ == "__main__":
    import flask_sockets_gevent

    flask_sockets_gevent.run(app, port=int(sys.argv[1]), log=None)

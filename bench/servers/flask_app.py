"""Our stack: a Flask app with a ``@sockets.route`` echo.

``/firehose`` (the hostile ``firehose`` workload): after one message from
the client, sends 64 KiB binary messages until sending fails (see
``hostile_common``).

Served by ``ours_gevent.py`` (``flask_sockets_gevent.run``) and by
``gunicorn -k flask_sockets_gunicorn.worker -w 1 flask_app:app``. This module
does not monkey-patch: the run script does it first, the gunicorn worker
does it itself. ``$BENCH_COMPRESSION`` (JSON), if set, is
``SOCKETS_COMPRESSION`` (the compression workloads).
"""

from __future__ import annotations

import os

from flask import Flask
from hostile_common import compression
from hostile_common import default_limits
from hostile_common import firehose

from flask_sockets import Sockets

app = Flask(__name__)
if not default_limits():
    # The 1 MiB workload sends exactly 1 MiB; the default limit is 1 MiB, so leave room.
    # The hostile workloads (BENCH_DEFAULT_LIMITS=1) keep every default: 1 MiB, pings 20 s / 20 s,
    # flood control.
    app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 2 * 1024 * 1024
    # The echo workloads send as fast as the server answers (thousands of
    # messages a second per connection): flood control's rates are raised out
    # of their reach, not turned off, so that its cost per message (the
    # default code path) is in the figures.
    app.config.update(
        SOCKETS_MESSAGE_RATE=1e9, SOCKETS_MESSAGE_BURST=1e9, SOCKETS_BYTE_RATE=1e12, SOCKETS_BYTE_BURST=1e12
    )
if compression() is not None:
    app.config["SOCKETS_COMPRESSION"] = compression()
# The ours-gevent-metrics server: Prometheus metrics on (flask_sockets.metrics).
app.config["SOCKETS_METRICS"] = os.environ.get("BENCH_METRICS") == "1"
sockets = Sockets(app)


@sockets.route("/echo")
def echo(ws):  # type: ignore[no-untyped-def]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)


@sockets.route("/firehose")
def firehose_route(ws):  # type: ignore[no-untyped-def]
    ws.receive()
    firehose(ws.send)

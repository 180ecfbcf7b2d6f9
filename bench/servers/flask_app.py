"""Our stack: a Flask app with a ``@sockets.route`` echo.

Served by ``ours_gevent.py`` (``flask_sockets_gevent.run``) and by
``gunicorn -k flask_sockets_gunicorn.worker -w 1 flask_app:app``. This module
does not monkey-patch: the run script does it first, the gunicorn worker
does it itself.
"""

from __future__ import annotations

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
# The 1 MiB workload sends exactly 1 MiB; the default limit is 1 MiB, so leave room.
app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 2 * 1024 * 1024
sockets = Sockets(app)


@sockets.route("/echo")
def echo(ws):  # type: ignore[no-untyped-def]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)

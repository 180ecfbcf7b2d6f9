"""Blueprints: the classic Flask-Sockets blueprint example.

Shows two plain Flask blueprints: ``html`` holds the HTTP views and is
registered with ``app.register_blueprint``; ``ws`` holds socket handlers
and is registered with ``sockets.register_blueprint``, which turns every
route of that blueprint into a socket route. ``/`` answers "Hello World!"
and ``/echo`` echoes WebSocket messages. The app is served by
``flask_sockets_gevent.run``.

(To mix HTTP and socket routes in one blueprint instead, declare the socket
routes with ``@sockets.route('/echo', blueprint=bp)`` and register ``bp``
with ``app.register_blueprint``; see docs/routing.rst.)

Run it with::

    python examples/blueprints.py [--port 5000]

then open http://127.0.0.1:5000 for the greeting, and connect a WebSocket
client to ws://127.0.0.1:5000/echo, for example ``python -m websockets
ws://127.0.0.1:5000/echo``. Stop it with Ctrl+C.
"""

# Served by gevent (python blueprints.py): gevent must patch the standard library
# before anything else imports it. Not when imported by `flask run` or
# gunicorn: the development server's threads need no patching (and Ctrl+C
# would print gevent's report of the KeyboardInterrupt), the worker patches.
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402

from flask import Blueprint  # noqa: E402
from flask import Flask  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

html = Blueprint(r"html", __name__)
ws = Blueprint(r"ws", __name__)


@html.route("/")
def hello():
    return "Hello World!"


@ws.route("/echo")
def echo_socket(socket):
    while not socket.closed:
        message = socket.receive()
        socket.send(message)


app = Flask(__name__)
sockets = Sockets(app)

app.register_blueprint(html, url_prefix=r"/")
sockets.register_blueprint(ws, url_prefix=r"/")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the Flask-Sockets blueprint example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    args = parser.parse_args(argv)
    flask_sockets_gevent.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()

"""The Flask-Sockets 0.2.1 README (the "seed") and its examples, and the
port they listen on: shared by the tests that run them (tests/test_examples.py
from this checkout, tests/test_packaging.py from the built wheels)."""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import tempfile
import textwrap
import time
import typing as t
from pathlib import Path

import pytest

from .conftest import TIMEOUT

#: The Flask-Sockets 0.2.1 README (the "seed"), where this checkout was made.
SEED_README = Path("/work/shared/seed/Flask-Sockets-README.rst")

#: The two code examples of the Flask-Sockets 0.2.1 README, verbatim: what
#: users of 0.2 have in their apps. The tests run them from the seed README
#: when it is there (checking these copies against it), else from here.
SEED_EXAMPLES = [
    """\
from flask import Flask
from flask_sockets import Sockets


app = Flask(__name__)
sockets = Sockets(app)


@sockets.route('/echo')
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        ws.send(message)


@app.route('/')
def hello():
    return 'Hello World!'


if __name__ == "__main__":
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler
    server = pywsgi.WSGIServer(('', 5000), app, handler_class=WebSocketHandler)
    server.serve_forever()
""",
    """\
from flask import Flask, Blueprint
from flask_sockets import Sockets


html = Blueprint(r'html', __name__)
ws = Blueprint(r'ws', __name__)


@html.route('/')
def hello():
    return 'Hello World!'

@ws.route('/echo')
def echo_socket(socket):
    while not socket.closed:
        message = socket.receive()
        socket.send(message)


app = Flask(__name__)
sockets = Sockets(app)

app.register_blueprint(html, url_prefix=r'/')
sockets.register_blueprint(ws, url_prefix=r'/')


if __name__ == "__main__":
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler
    server = pywsgi.WSGIServer(('', 5000), app, handler_class=WebSocketHandler)
    server.serve_forever()
""",
]

#: The port the seed README's examples (and the demo, by default) listen on.
CLASSIC_PORT = 5000


# -- port 5000: hatch run demo and the seed README ---------------------------


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on all interfaces (as gevent
    binds: with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:  # pragma: no cover
                raise
            return False
    return True


@contextlib.contextmanager
def classic_port() -> t.Iterator[int]:
    """Hold port 5000 for one test: tests of this and any other run (xdist
    workers included) take turns through a lock file. Skips if something
    else listens there."""
    fcntl = pytest.importorskip("fcntl", reason="the port-5000 lock needs fcntl (POSIX)")
    lock_path = Path(tempfile.gettempdir()) / f"flask-sockets-tests-port-{CLASSIC_PORT}.lock"
    with lock_path.open("w") as lock:
        deadline = time.monotonic() + 4 * TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another test held port {CLASSIC_PORT} for more than {4 * TIMEOUT}s")
                time.sleep(0.1)
        try:
            if not port_is_free(CLASSIC_PORT):
                pytest.skip(f"port {CLASSIC_PORT} is busy; this test needs it free (the example listens there)")
            yield CLASSIC_PORT
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def readme_examples(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a README, dedented, verbatim."""
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", text, re.MULTILINE)
    return [textwrap.dedent(block).strip("\n") + "\n" for block in blocks]


def seed_examples() -> list[str]:
    """The seed README's examples: read from it at test time if it is there."""
    if SEED_README.exists():
        return readme_examples(SEED_README.read_text())
    return SEED_EXAMPLES

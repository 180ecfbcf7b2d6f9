"""Serve Flask-Sockets apps with gevent and a hardened gevent-websocket handler.

.. code-block:: python

    from gevent import monkey; monkey.patch_all()

    from flask import Flask
    from flask_sockets import Sockets
    import flask_sockets_gevent

    app = Flask(__name__)
    sockets = Sockets(app)
    ...
    flask_sockets_gevent.run(app, port=5000)
"""

from __future__ import annotations

from .handler import WebSocketHandler as WebSocketHandler
from .server import ConnectionLimitsMixin as ConnectionLimitsMixin
from .server import GracefulShutdownMixin as GracefulShutdownMixin
from .server import NotMonkeyPatchedWarning as NotMonkeyPatchedWarning
from .server import WebSocketServer as WebSocketServer
from .server import make_server as make_server
from .server import run as run
from .websocket import ConnectionClosed as ConnectionClosed
from .websocket import WebSocket as WebSocket

__all__ = [
    "ConnectionClosed",
    "ConnectionLimitsMixin",
    "GracefulShutdownMixin",
    "NotMonkeyPatchedWarning",
    "WebSocket",
    "WebSocketHandler",
    "WebSocketServer",
    "make_server",
    "run",
]

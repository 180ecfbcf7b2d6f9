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

import typing as t

from .handler import WebSocketHandler as WebSocketHandler
from .server import ConnectionLimitsMixin as ConnectionLimitsMixin
from .server import GracefulShutdownMixin as GracefulShutdownMixin
from .server import NotMonkeyPatchedWarning as NotMonkeyPatchedWarning
from .server import WebSocketServer as WebSocketServer
from .server import make_server as make_server
from .server import run as run
from .websocket import ConnectionClosed as ConnectionClosed
from .websocket import GeventConnectionClosed as GeventConnectionClosed
from .websocket import GeventWebSocket as GeventWebSocket

__all__ = [
    "ConnectionClosed",
    "ConnectionLimitsMixin",
    "GeventConnectionClosed",
    "GeventWebSocket",
    "GracefulShutdownMixin",
    "NotMonkeyPatchedWarning",
    "WebSocketHandler",
    "WebSocketServer",
    "make_server",
    "run",
]


def __getattr__(name: str) -> t.Any:
    # The deprecated name of GeventWebSocket (see flask_sockets_gevent.websocket).
    if name == "WebSocket":
        from .websocket import _renamed

        return _renamed()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

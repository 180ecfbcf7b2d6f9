"""Flask-Sockets: WebSocket routes for Flask apps.

The core is server-agnostic: it works behind any server that puts the
WebSocket object in ``environ['wsgi.websocket']``, such as
:mod:`flask_sockets_gevent` or the gunicorn worker in
:mod:`flask_sockets_gunicorn`.
"""

from __future__ import annotations

import typing as t

# Flask-Sockets 0.2 code imports Werkzeug's Rule and Map from here.
from werkzeug.routing import Map as Map
from werkzeug.routing import Rule as Rule

from .compat import SocketMiddleware as SocketMiddleware
from .exceptions import ConnectionClosed as ConnectionClosed
from .exceptions import MessageQueueUnavailable as MessageQueueUnavailable
from .exceptions import MissingWebSocketError as MissingWebSocketError
from .exceptions import UpgradeRequired as UpgradeRequired
from .extension import Sockets as Sockets
from .fanout.history import Position as Position
from .fanout.history import Recovery as Recovery
from .options import SocketOptions as SocketOptions
from .presence import PresenceChange as PresenceChange
from .rooms import CLOSE_SLOW_CONSUMER as CLOSE_SLOW_CONSUMER
from .typing import Message as Message
from .typing import WebSocket as WebSocket
from .views import websocket_view as websocket_view
from .wsgi import WSGI_WEBSOCKET_KEY as WSGI_WEBSOCKET_KEY
from .wsgi import is_origin_allowed as is_origin_allowed
from .wsgi import is_websocket_upgrade as is_websocket_upgrade
from .wsgi import requested_subprotocols as requested_subprotocols

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "WSGI_WEBSOCKET_KEY",
    "ConnectionClosed",
    "Message",
    "MessageQueueUnavailable",
    "MissingWebSocketError",
    "Position",
    "PresenceChange",
    "Recovery",
    "SocketMiddleware",
    "SocketOptions",
    "Sockets",
    "UpgradeRequired",
    "WebSocket",
    "is_origin_allowed",
    "is_websocket_upgrade",
    "requested_subprotocols",
    "websocket_view",
]


def __getattr__(name: str) -> t.Any:
    # ``gunicorn -k flask_sockets.worker`` and ``from flask_sockets import worker``
    # (or ``Worker``) from Flask-Sockets 0.2 keep working: the worker now lives in
    # its own distribution, loaded only when asked for so the core never imports
    # a server.
    if name in ("worker", "Worker"):
        try:
            from flask_sockets_gunicorn import worker
        except ImportError as e:
            raise ImportError(
                f"flask_sockets.{name} is the gunicorn worker from the"
                " 'flask-sockets-gunicorn' distribution, which is not installed"
                f" or failed to import ({e}). Install it with:"
                " pip install 'Flask-Sockets[gunicorn]'"
            ) from e
        return worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

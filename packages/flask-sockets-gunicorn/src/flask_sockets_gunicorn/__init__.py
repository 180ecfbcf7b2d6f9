"""A gunicorn worker for Flask-Sockets apps.

Serve an app with::

    gunicorn -k flask_sockets_gunicorn.worker module:app

gunicorn resolves ``flask_sockets_gunicorn.worker`` as this module's
``worker`` attribute, the worker class. ``-k flask_sockets.worker`` (the
Flask-Sockets 0.2 spelling) and ``-k egg:flask-sockets-gunicorn#websocket``
name the same class.
"""

from __future__ import annotations

from .workers import GeventWebSocketWorker as GeventWebSocketWorker
from .workers import GunicornWebSocketHandler as GunicornWebSocketHandler
from .workers import GunicornWebSocketServer as GunicornWebSocketServer

#: The worker class, for ``gunicorn -k flask_sockets_gunicorn.worker``.
worker = GeventWebSocketWorker

__all__ = ["GeventWebSocketWorker", "GunicornWebSocketHandler", "GunicornWebSocketServer", "worker"]

"""The gunicorn worker: gunicorn's gevent pywsgi worker with our WebSocket handler."""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker
from gunicorn.workers.ggevent import PyWSGIHandler

from flask_sockets_gevent import WebSocketHandler

__all__ = ["GeventWebSocketWorker", "GunicornWebSocketHandler"]


class GunicornWebSocketHandler(WebSocketHandler, PyWSGIHandler):  # type: ignore[misc]
    """Our WebSocket handler with gunicorn's environ additions and access log."""


class GeventWebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]
    """A gevent worker that serves HTTP and WebSocket routes.

    Use it with ``gunicorn -k flask_sockets_gunicorn.worker module:app``.
    """

    wsgi_handler = GunicornWebSocketHandler

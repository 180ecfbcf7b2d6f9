"""The gunicorn worker: gunicorn's gevent pywsgi worker with our WebSocket handler."""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker
from gunicorn.workers.ggevent import PyWSGIHandler
from gunicorn.workers.ggevent import PyWSGIServer

from flask_sockets_gevent import GracefulShutdownMixin
from flask_sockets_gevent import WebSocketHandler

__all__ = ["GeventWebSocketWorker", "GunicornWebSocketHandler", "GunicornWebSocketServer"]


class GunicornWebSocketHandler(WebSocketHandler, PyWSGIHandler):  # type: ignore[misc]
    """Our WebSocket handler with gunicorn's environ additions and access log."""


class GunicornWebSocketServer(GracefulShutdownMixin, PyWSGIServer):  # type: ignore[misc]
    """gunicorn's gevent server; on a graceful stop every open socket is closed with 1001."""


class GeventWebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]
    """A gevent worker that serves HTTP and WebSocket routes.

    Use it with ``gunicorn -k flask_sockets_gunicorn.worker module:app``.
    On a graceful stop (SIGTERM, or SIGHUP reload) open sockets get close
    1001 and their handlers up to ``--graceful-timeout`` seconds to finish.
    """

    server_class = GunicornWebSocketServer
    wsgi_handler = GunicornWebSocketHandler

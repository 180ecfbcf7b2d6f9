"""Running a Flask app on gevent's WSGI server with WebSocket support."""

from __future__ import annotations

import logging
import signal
import socket
import typing as t

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from .handler import WebSocketHandler

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIApplication

    from .websocket import WebSocket

__all__ = ["GracefulShutdownMixin", "WebSocketServer", "make_server", "run"]

logger = logging.getLogger("flask_sockets_gevent")

#: Close code and reason every open socket gets when the server stops.
GOING_AWAY = (1001, "Server shutting down")


class GracefulShutdownMixin:
    """Server mixin: when the server stops accepting (``close()``), every open
    WebSocket is closed with 1001 (going away). Frames a handler sent before
    go out first; its ``receive()`` then returns ``None`` and it can finish.
    HTTP keep-alive connections waiting for their next request are closed.
    ``stop(timeout)`` (gevent's) then waits for the handlers up to
    ``timeout`` before killing them.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        #: The accepted sockets still open; the sockets add and remove themselves.
        self.websockets: set[WebSocket] = set()
        #: Client connections waiting for a request line (kept by the handler).
        self.idle_connections: set[socket.socket] = set()

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        for ws in list(self.websockets):
            gevent.spawn(ws.close, *GOING_AWAY)
        for connection in list(self.idle_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class WebSocketServer(GracefulShutdownMixin, WSGIServer):
    """gevent's :class:`~gevent.pywsgi.WSGIServer` that closes open sockets
    with 1001 when it stops."""


def make_server(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    handler_class: type[WebSocketHandler] = WebSocketHandler,
    **server_options: t.Any,
) -> WebSocketServer:
    """Create (but do not start) a :class:`WebSocketServer` (a gevent
    :class:`~gevent.pywsgi.WSGIServer`) that serves ``app`` over HTTP and
    WebSocket. Handlers run in a :class:`gevent.pool.Pool`, so that
    ``server.stop(timeout)`` waits for them.

    :param app: The Flask app (any WSGI app works).
    :param host: The address to listen on. Use ``'0.0.0.0'`` to listen on
        all interfaces.
    :param port: The port to listen on; ``0`` picks a free one (read it
        back from ``server.server_port`` after ``server.start()``).
    :param handler_class: The per-connection handler; a subclass of
        :class:`~flask_sockets_gevent.WebSocketHandler`.
    :param server_options: Passed to :class:`~gevent.pywsgi.WSGIServer`
        (``certfile``/``keyfile`` for TLS, ``log``, ``error_log``, ``spawn``, ...).
    """
    server_options.setdefault("spawn", Pool())
    return WebSocketServer((host, port), app, handler_class=handler_class, **server_options)


def run(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    shutdown_timeout: float = 10.0,
    reload: bool = False,
    debug: bool = False,
    **server_options: t.Any,
) -> None:
    """Serve ``app`` until SIGINT (Ctrl+C) or SIGTERM.

    On either signal the server stops accepting, closes every open
    WebSocket with 1001 (going away), and gives the handlers up to
    ``shutdown_timeout`` seconds to finish before it exits.

    The process should be monkey-patched by gevent first
    (``from gevent import monkey; monkey.patch_all()`` at the very top of
    the main module) so that blocking calls in handlers yield to other
    connections. Other arguments are those of :func:`make_server`.

    :param reload: Restart the server when a Python file changes
        (Werkzeug's reloader), for development.
    :param debug: Development mode: set ``app.debug``, turn on the reloader
        and Werkzeug's interactive debugger for HTTP routes. Never in production.
    """
    if debug:
        from werkzeug.debug import DebuggedApplication

        app.debug = True  # type: ignore[attr-defined]
        app = DebuggedApplication(app, evalex=True)
    if reload or debug:
        # Werkzeug's reloader has no public entry point that runs another
        # server; Flask-SocketIO uses this same function.
        from werkzeug._reloader import run_with_reloader
        from werkzeug.serving import is_running_from_reloader

        if not is_running_from_reloader():
            _logger_setup()
            logger.info("Serving with the reloader; restarts when a file changes.")
        run_with_reloader(lambda: _serve(app, host, port, shutdown_timeout, server_options))
    else:
        _serve(app, host, port, shutdown_timeout, server_options)


def _serve(
    app: WSGIApplication, host: str, port: int, shutdown_timeout: float, server_options: dict[str, t.Any]
) -> None:
    server = make_server(app, host, port, **server_options)
    server.stop_timeout = shutdown_timeout
    # Handlers go in before listening: a signal that comes once clients can
    # connect must stop us cleanly, even while start() is still running.
    requested: list[int] = []

    def stop_on_signal(signum: int) -> None:
        logger.info("Received %s, shutting down.", signal.Signals(signum).name)
        requested.append(signum)
        if server.started:
            # serve_forever() returns and calls stop(), which waits for the handlers.
            server.close()

    _logger_setup()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop_on_signal, signum)
    server.start()
    _log_address(server)
    if requested:  # the signal came during start()
        server.stop()
    else:
        server.serve_forever()
    logger.info("Server stopped.")


def _logger_setup() -> None:
    """Show the server's info lines unless logging is configured already."""
    if not logger.handlers and not logging.getLogger().handlers:
        logger.addHandler(logging.StreamHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def _log_address(server: WSGIServer) -> None:
    host, port = str(server.server_host), server.server_port
    shown = f"[{host}]" if ":" in host else host
    http, ws = ("https", "wss") if server.ssl_enabled else ("http", "ws")
    logger.info("Serving on %s://%s:%d (WebSockets: %s://%s:%d)", http, shown, port, ws, shown, port)

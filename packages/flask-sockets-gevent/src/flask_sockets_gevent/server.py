"""Running a Flask app on gevent's WSGI server with WebSocket support."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
import typing as t
import warnings

import gevent
from gevent import Greenlet
from gevent import monkey
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from flask_sockets.protocol import CloseCode
from flask_sockets.shutdown import ShutdownPolicy
from flask_sockets.shutdown import drain

from .handler import DEFAULT_HANDSHAKE_TIMEOUT
from .handler import DEFAULT_KEEPALIVE_TIMEOUT
from .handler import WebSocketHandler
from .websocket import Clients

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIApplication

    from .websocket import GeventWebSocket

__all__ = [
    "ConnectionLimitsMixin",
    "GracefulShutdownMixin",
    "NotMonkeyPatchedWarning",
    "WebSocketServer",
    "default_max_connections",
    "make_server",
    "run",
]

logger = logging.getLogger("flask_sockets_gevent")

#: The close code and reason open sockets got when the server stopped,
#: before 0.3 (now ``SOCKETS_SHUTDOWN_CODE``, 1012 by default: see
#: :mod:`flask_sockets.shutdown`).
GOING_AWAY = (CloseCode.GOING_AWAY, "Server shutting down")


class NotMonkeyPatchedWarning(RuntimeWarning):
    """:func:`run` serves a process that gevent has not monkey-patched: a
    handler that blocks (``time.sleep``, a database or HTTP call) stalls
    every other connection until it returns."""


def _warn_if_not_patched() -> None:
    """Warn (:class:`NotMonkeyPatchedWarning`, at the caller of :func:`run`)
    if gevent has not patched ``socket`` or ``time`` in this process, with
    the two lines that fix it."""
    missing = [name for name in ("socket", "time") if not monkey.is_module_patched(name)]
    if missing:
        warnings.warn(
            f"gevent has not monkey-patched this process ({', '.join(missing)} not patched): a handler"
            " that blocks (time.sleep, a database or HTTP call) stalls every other connection."
            " Put these two lines at the very top of the main module, before any other import:\n\n"
            "    from gevent import monkey\n"
            "    monkey.patch_all()\n",
            NotMonkeyPatchedWarning,
            stacklevel=3,
        )


class GracefulShutdownMixin:
    """Server mixin: keeps the open sockets (``server.websockets``, and
    gevent-websocket's ``server.clients`` view of them: see
    :class:`~flask_sockets_gevent.websocket.Clients`). When the server stops
    accepting (``close()``), the open WebSockets are closed as the app's
    :class:`~flask_sockets.shutdown.ShutdownPolicy` says: with 1012
    (``SOCKETS_SHUTDOWN_CODE``), in batches spread over
    ``SOCKETS_SHUTDOWN_WINDOW`` seconds, cut to fit in :attr:`shutdown_grace`
    less ``SOCKETS_CLOSE_TIMEOUT``. Frames a handler sent before go out
    first; its ``receive()`` then returns ``None`` and it can finish.
    HTTP keep-alive connections waiting for their next request are closed.
    ``stop(timeout)`` (gevent's) then waits for the handlers up to
    ``timeout`` before killing them.

    :param shutdown_grace: Seconds the server gives its handlers once it
        stops (gunicorn's ``--graceful-timeout``); ``None``: gevent's
        ``stop_timeout``, which :func:`run` sets to its ``shutdown_timeout``.
    """

    def __init__(self, *args: t.Any, shutdown_grace: float | None = None, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace = shutdown_grace
        self._draining = False
        #: The accepted sockets still open; the sockets add and remove themselves.
        self.websockets: set[GeventWebSocket] = set()
        #: The same sockets as gevent-websocket's ``server.clients`` (for
        #: apps written against it): ``Client(address, ws)`` by client address.
        self.clients = Clients(self.websockets)
        #: Client connections waiting for a request line (kept by the handler).
        self.idle_connections: set[socket.socket] = set()

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        if not self._draining:  # (stop() closes again)
            self._draining = True
            grace = self.shutdown_grace
            if grace is None:
                grace = float(self.stop_timeout)  # type: ignore[attr-defined]
            policy = ShutdownPolicy.for_app(self.application, grace)  # type: ignore[attr-defined]

            def close(ws: GeventWebSocket) -> None:
                gevent.spawn(ws.close, policy.code, policy.reason)

            sockets = list(self.websockets)
            if len(policy.batches(len(sockets))) <= 1:
                drain(sockets, close, policy, gevent.sleep)
            else:
                gevent.spawn(drain, sockets, close, policy, gevent.sleep, late=lambda: list(self.websockets))
        for connection in list(self.idle_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


#: accept() errors that mean "out of file descriptors or memory", not a bug.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def default_max_connections() -> int | None:
    """The default ``max_connections``: the soft ``RLIMIT_NOFILE`` less some
    headroom (the larger of 32 and a tenth) for the app's own files and
    sockets; ``None`` (no cap) where the limit is unknown or unlimited."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(1, soft - max(32, soft // 10))


class _ConnectionGreenlet(Greenlet):  # type: ignore[type-arg]
    """The greenlet of one connection: a :class:`gevent.Greenlet` that
    does not record the stack it was spawned from. gevent keeps that
    stack (``spawning_stack``, for ``gevent.util.format_run_info``) as
    one object per frame, ~230 bytes per connection for as long as a
    WebSocket is open, and for a connection it is always the same: the
    server's accept loop."""

    __slots__ = ()
    spawning_stack_limit = 0


class ConnectionLimitsMixin:
    """Server mixin: the limits the handler and the accept loop enforce.

    :param handshake_timeout: Seconds a client has, from connecting (or
        from the first byte of a later request on a keep-alive connection),
        to send its request line and headers; then ``408`` and close.
        ``None``: no limit.
    :param keepalive_timeout: Seconds an idle keep-alive connection waits
        for its next request before it is closed; ``0``: no keep-alive,
        ``None``: no limit.

    It also keeps running out of file descriptors (``EMFILE``/``ENFILE`` on
    accept) quiet: accepting pauses (0.01 s, doubling up to 1 s) and a
    warning with a count is logged at most once per
    :attr:`accept_error_interval` seconds, instead of gevent's traceback per
    failed accept.
    """

    #: Seconds between two warnings about failed accepts.
    accept_error_interval = 10.0

    def __init__(
        self,
        *args: t.Any,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        keepalive_timeout: float | None = DEFAULT_KEEPALIVE_TIMEOUT,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        #: Read by the handler for each connection.
        self.handshake_timeout = handshake_timeout
        self.keepalive_timeout = keepalive_timeout
        #: Connections served at once: the size of the server's pool
        #: (``None``: no cap).
        self.max_connections: int | None = getattr(getattr(self, "pool", None), "size", None)
        self._accept_delay = 0.0
        self._accept_retry: t.Any = None
        self._accept_failures = 0
        self._accept_warned_at: float | None = None

    def do_handle(self, *args: t.Any) -> None:
        # gevent's do_handle starts each connection's greenlet in a helper
        # that calls ``handle(*args)``: a call through the interpreter's C
        # loop whose C stack (~370 bytes) the greenlet keeps saved for the
        # whole life of a WebSocket. The same, with a plain call.
        spawn = self._spawn  # type: ignore[attr-defined]
        if spawn is None or len(args) != 2:
            super().do_handle(*args)  # type: ignore[misc]
            return
        try:
            pool = self.pool  # type: ignore[attr-defined]
            if pool is not None and spawn == pool.spawn and pool.greenlet_class is Greenlet:
                # What pool.spawn does, with our greenlet class (a pool
                # the app made with a class of its own keeps it).
                pool.start(_ConnectionGreenlet(self._serve_connection, *args))
            elif spawn == Greenlet.spawn:
                _ConnectionGreenlet.spawn(self._serve_connection, *args)
            else:
                spawn(self._serve_connection, *args)
        except BaseException:
            self.do_close(*args)  # type: ignore[attr-defined]
            raise

    def _serve_connection(self, sock: t.Any, address: t.Any) -> None:
        try:
            self._handle(sock, address)  # type: ignore[attr-defined]
        finally:
            self.do_close(sock, address)  # type: ignore[attr-defined]

    def do_read(self) -> t.Any:
        try:
            args = super().do_read()  # type: ignore[misc]
        except OSError as e:
            if e.errno not in _RESOURCE_ERRORS:
                raise
            self._accept_failed(e)
            return None
        self._accept_delay = 0.0
        return args

    def _accept_failed(self, error: OSError) -> None:
        """Count the failure, warn at most once per interval, and pause
        accepting (the connection stays in the listen backlog)."""
        self._accept_failures += 1
        now = time.monotonic()
        if self._accept_warned_at is None or now - self._accept_warned_at >= self.accept_error_interval:
            logger.warning(
                "Cannot accept connections: %s (%d failed accepts since the last warning); "
                "retrying. Raise the open file limit (ulimit -n) or lower max_connections.",
                error.strerror or error,
                self._accept_failures,
            )
            self._accept_warned_at, self._accept_failures = now, 0
        self._accept_delay = min(1.0, max(0.01, self._accept_delay * 2))
        self.stop_accepting()  # type: ignore[attr-defined]
        self._cancel_accept_retry()
        loop = self.loop  # type: ignore[attr-defined]
        self._accept_retry = loop.timer(self._accept_delay)
        self._accept_retry.start(self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._cancel_accept_retry()
        if self.started and not self.closed:  # type: ignore[attr-defined]
            self.start_accepting()  # type: ignore[attr-defined]

    def _cancel_accept_retry(self) -> None:
        retry, self._accept_retry = self._accept_retry, None
        if retry is not None:
            retry.stop()
            retry.close()

    def close(self) -> None:
        self._cancel_accept_retry()
        super().close()  # type: ignore[misc]


class WebSocketServer(GracefulShutdownMixin, ConnectionLimitsMixin, WSGIServer):
    """gevent's :class:`~gevent.pywsgi.WSGIServer` that closes open sockets
    (1012, in batches: :class:`GracefulShutdownMixin`) when it stops, with
    the limits of :class:`ConnectionLimitsMixin`."""


def make_server(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    handler_class: type[WebSocketHandler] = WebSocketHandler,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    keepalive_timeout: float | None = DEFAULT_KEEPALIVE_TIMEOUT,
    max_connections: int | None = None,
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
    :param handshake_timeout: Seconds a client has to send its request line
        and headers (``408``, then close); ``None``: no limit.
    :param keepalive_timeout: Seconds an idle HTTP keep-alive connection is
        kept open; ``0``: no keep-alive; ``None``: no limit.
    :param max_connections: Connections served at once (the pool's size);
        more wait in the listen backlog until one closes. Default:
        :func:`default_max_connections`, from the open file limit.
    :param server_options: Passed to :class:`~gevent.pywsgi.WSGIServer`
        (``certfile``/``keyfile`` for TLS, ``log``, ``error_log``, ``spawn``, ...).
    """
    if "spawn" in server_options:
        if max_connections is not None:
            raise TypeError("pass max_connections or spawn, not both")
    else:
        if max_connections is None:
            max_connections = default_max_connections()
        server_options["spawn"] = Pool(max_connections)
    return WebSocketServer(
        (host, port),
        app,
        handler_class=handler_class,
        handshake_timeout=handshake_timeout,
        keepalive_timeout=keepalive_timeout,
        **server_options,
    )


def run(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    shutdown_timeout: float = 10.0,
    reload: bool = False,
    debug: bool = False,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    keepalive_timeout: float | None = DEFAULT_KEEPALIVE_TIMEOUT,
    max_connections: int | None = None,
    **server_options: t.Any,
) -> None:
    """Serve ``app`` until SIGINT (Ctrl+C) or SIGTERM.

    On either signal the server stops accepting, closes the open
    WebSockets with 1012 (``SOCKETS_SHUTDOWN_CODE``) in batches spread over
    ``SOCKETS_SHUTDOWN_WINDOW`` seconds (at most ``shutdown_timeout`` less
    ``SOCKETS_CLOSE_TIMEOUT``: see :mod:`flask_sockets.shutdown`), and gives
    the handlers up to ``shutdown_timeout`` seconds to finish before it
    exits.

    The process should be monkey-patched by gevent first
    (``from gevent import monkey; monkey.patch_all()`` at the very top of
    the main module) so that blocking calls in handlers yield to other
    connections; if it is not, ``run`` warns
    (:class:`NotMonkeyPatchedWarning`) and serves all the same. Other
    arguments (``handshake_timeout``, ``keepalive_timeout``,
    ``max_connections``, TLS, logs) are those of :func:`make_server`.

    :param reload: Restart the server when a Python file changes
        (Werkzeug's reloader), for development.
    :param debug: Development mode: set ``app.debug``, turn on the reloader
        and Werkzeug's interactive debugger for HTTP routes. Never in production.
    :raises SystemExit: With status 1, after logging one line that names
        the address, if the server cannot listen there (the port is in use,
        the address is not this host's, or the port needs privileges).
    """
    server_options.update(
        handshake_timeout=handshake_timeout, keepalive_timeout=keepalive_timeout, max_connections=max_connections
    )
    from werkzeug.serving import is_running_from_reloader

    if not (reload or debug) or is_running_from_reloader():  # (not the reloader's watching process)
        _warn_if_not_patched()
    if debug:
        from werkzeug.debug import DebuggedApplication

        app.debug = True  # type: ignore[attr-defined]
        app = DebuggedApplication(app, evalex=True)
    if reload or debug:
        # Werkzeug's reloader has no public entry point that runs another
        # server; Flask-SocketIO uses this same function.
        from werkzeug._reloader import run_with_reloader

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
    try:
        server.start()
    except OSError as e:
        if e.errno not in _LISTEN_ERRORS:
            raise
        # Werkzeug's development server answers a busy port the same way:
        # one line that says what to do, and exit status 1.
        shown = f"[{host}]" if ":" in host else host
        hint = ""
        if e.errno == errno.EADDRINUSE:
            hint = f" Stop the program using port {port}, or pick another one: run(app, port=...)."
        logger.error("Cannot listen on %s:%d: %s.%s", shown, port, os.strerror(e.errno), hint)
        raise SystemExit(1) from None
    _log_address(server)
    if requested:  # the signal came during start()
        server.stop()
    else:
        server.serve_forever()
    logger.info("Server stopped.")


#: Why a server cannot listen on its address: said in one line by run().
_LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


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

"""Turning a socket handler into a Flask view.

A socket route is an ordinary Flask view on a WebSocket rule, so routing,
``before_request``, error handlers, teardown and signals behave as for any
other view. The view built here finds the server's socket in the environ,
calls the handler with it, and closes it afterwards.
"""

from __future__ import annotations

import functools
import typing as t

from flask import abort
from flask import current_app
from flask import request
from werkzeug.exceptions import HTTPException

from .base import SocketBase
from .compression import compression_from_setting
from .exceptions import ConnectionClosed
from .exceptions import MissingWebSocketError
from .fanout.membership import EXTENSION_KEY as ROOMS_KEY
from .foreign import as_socket
from .metrics import EXTENSION_KEY as METRICS_KEY
from .options import SocketOptions
from .protocol import CloseCode
from .ratelimit import FLOOD_REASON_KEYS
from .ratelimit import flood_control_from_config
from .shutdown import ShutdownPolicy
from .threaded import CONNECTIONS_KEY
from .threaded import GUNICORN_SOCKET_KEY
from .threaded import WERKZEUG_SOCKET_KEY
from .threaded import Connections
from .threaded import HandshakeRefused
from .threaded import ThreadedWebSocket
from .threaded import gunicorn_graceful_timeout
from .threaded import gunicorn_worker_stopping
from .wsgi import WSGI_WEBSOCKET_KEY
from .wsgi import is_origin_allowed
from .wsgi import requested_subprotocols

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask import Request
    from flask.typing import ResponseReturnValue

    from .fanout.membership import Rooms
    from .metrics import SocketMetrics
    from .metrics import SocketTap
    from .typing import BasicWebSocket
    from .typing import SocketHandler
    from .typing import WebSocket

__all__ = ["CLOSE_INTERNAL_ERROR", "CLOSE_NORMAL", "CLOSE_POLICY_VIOLATION", "MAX_LOGGED_ORIGINS", "websocket_view"]

#: Close code sent when the handler returns.
CLOSE_NORMAL = CloseCode.NORMAL_CLOSURE
#: Close code sent when the handler aborts with a 4xx HTTP error after the handshake.
CLOSE_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
#: Close code sent when the handler raises.
CLOSE_INTERNAL_ERROR = CloseCode.INTERNAL_ERROR


def websocket_view(
    handler: SocketHandler,
    subprotocols: t.Sequence[str] | None = None,
    compression: t.Any = None,
    defer_accept: bool = False,
    flood_control: t.Any = None,
) -> t.Callable[..., ResponseReturnValue]:
    """Wrap a socket handler ``handler(ws, **url_variables)`` as a Flask view.

    - A browser request from an origin that ``SOCKETS_ALLOWED_ORIGINS`` does
      not allow is refused with 403, and a warning is logged (once per origin).
    - The first of ``subprotocols`` (in this, the server's, order) that the
      client offered is the one the socket is accepted with.
    - The socket is configured from the app's ``SOCKETS_*`` config, if it
      has a ``configure(options)`` method; ``compression``, when not
      ``None``, overrides ``SOCKETS_COMPRESSION`` for this route, and
      ``flood_control`` the flood control keys (``SOCKETS_MESSAGE_RATE``, ...;
      see :func:`~flask_sockets.ratelimit.flood_control_from_config`).
    - The handshake is answered (``ws.accept()``, on sockets that have it)
      right before the handler is called, as Flask-Sockets 0.2 did: a
      handler that keeps the socket and waits for something else opens at
      once. ``before_request`` hooks, the origin check and anything else
      that refuses before the handler starts still answer with a real HTTP
      status. With ``defer_accept=True`` the handler answers it instead, at
      its first send, receive or close, or at ``ws.accept()``: until then it
      can refuse with an HTTP response too (``abort(403)``).
    - The socket closes with 1000 when the handler returns.
    - An exception escaping the handler closes the socket with 1011 (1008
      for a 4xx ``HTTPException`` such as ``abort(403)``) and is re-raised,
      so Flask logs it, sends ``got_request_exception`` and runs error
      handlers, as for any view. If the handshake has not been answered
      yet (``ws.accepted`` is false), the socket is left alone and the
      client gets Flask's HTTP error response instead.
    - Close frames carry the close code on every socket, including
      gevent-websocket's own (whose ``close(code, message)`` drops the code).
    - While the handler runs, the socket is a member of the app's rooms
      (:mod:`flask_sockets.rooms`); when it ends, the socket leaves them all.
    - :exc:`~flask_sockets.ConnectionClosed` escaping the handler (the peer
      left while the handler was sending) ends the handler normally.
    - If the server gave no socket but exposes the connection (Werkzeug's
      development server, gunicorn's ``gthread`` and other workers), the
      view makes a :class:`~flask_sockets.threaded.ThreadedWebSocket` over
      it, and ends that connection after the handler; any other server gets
      a logged error naming the fix and a
      :exc:`~flask_sockets.MissingWebSocketError` (500).
    """

    if compression is not None:  # checked now: a bad setting fails where the route is declared
        compression = compression_from_setting(compression) or False
    if flood_control is not None:  # checked now too
        flood_control_from_config({}, flood_control)

    @functools.wraps(handler)
    def view(**kwargs: t.Any) -> ResponseReturnValue:
        # The request and the app, looked up once (each use of the proxies is a lookup).
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        ws: WebSocket | BasicWebSocket | None = req.environ.get(WSGI_WEBSOCKET_KEY)
        threaded: ThreadedWebSocket | None = None
        if ws is None:
            ws = threaded = _threaded_socket(req, app)
        # Flask-Sockets' own socket, or the server's adapted (flask_sockets.foreign).
        sock = as_socket(ws)
        tap: SocketTap | None = None
        try:
            _check_origin(req, app)
            sock.configure(
                SocketOptions.from_config(
                    app.config, _choose_subprotocol(req, subprotocols), compression, flood_control
                )
            )
            metrics: SocketMetrics | None = app.extensions.get(METRICS_KEY)
            if metrics is not None:
                route = req.url_rule.rule if req.url_rule is not None else ""
                tap = metrics.tap(ws, route, app.extensions.get(ROOMS_KEY))
            _run_handler(app, handler, ws, sock, kwargs, defer_accept, tap)
            _log_flood(app, req, sock)
        except ConnectionClosed:
            app.logger.debug("%s: the peer closed the socket", req.path)
        except OSError as e:
            # Servers that don't raise ConnectionClosed (stock gevent-websocket
            # raises its WebSocketError, an OSError) for a socket the peer has
            # closed: the peer left, nothing failed here.
            if not sock.closed:
                _end_with_error(sock, e)
                _end(threaded)
                if tap is not None:
                    tap.finish(ws)
                raise
            app.logger.debug("%s: the peer closed the socket (%r)", req.path, e)
        except BaseException as e:
            if isinstance(e, Exception):
                _end_with_error(sock, e)
            _end(threaded)
            if tap is not None:
                tap.finish(ws)
            raise
        _close(sock, CLOSE_NORMAL)
        _end(threaded)
        if tap is not None:
            tap.finish(ws)
        # The handshake already answered the client; this response only feeds
        # after_request hooks, session saving and access logs.
        return app.response_class(status=101)

    return view


def _run_handler(
    app: Flask,
    handler: SocketHandler,
    ws: WebSocket | BasicWebSocket,
    sock: SocketBase,
    kwargs: dict[str, t.Any],
    defer_accept: bool,
    tap: SocketTap | None = None,
) -> None:
    """Accept the socket (unless ``defer_accept``) and call the handler
    with ``ws`` (the server's socket; ``sock`` is ``ws`` or its adapter);
    while it runs, the socket is a member of the app's rooms (it gets
    broadcasts and can join rooms), and it leaves them all when the handler
    ends, however it ends."""
    rooms: Rooms | None = app.extensions.get(ROOMS_KEY)  # None: a websocket_view on an app without Sockets
    if rooms is not None:
        rooms.register(ws)
    try:
        if not defer_accept:
            # Last, so that anything failing before the handler starts is an HTTP error.
            sock.accept()
            if sock.closed:
                # The client left before the 101 could be written: no
                # connection was opened, nothing to handle (as on 0.2).
                app.logger.debug("%s: the client left before the handshake was answered", request.path)
                return
            if tap is not None:
                tap.accepted()
        # Without URL variables, a plain call: a ``**`` call re-enters the
        # interpreter's C loop, and the handler's greenlet would keep that
        # deeper C stack saved for the whole life of the connection.
        if kwargs:
            handler(ws, **kwargs)
        else:
            handler(ws)
    finally:
        if rooms is not None:
            rooms.forget(ws)


def _threaded_socket(req: Request, app: Flask) -> ThreadedWebSocket:
    """The socket for a threaded server that provides none but exposes the
    connection (Werkzeug's development server as ``werkzeug.socket``,
    gunicorn's workers as ``gunicorn.socket``): a
    :class:`~flask_sockets.threaded.ThreadedWebSocket` over it, counted in
    the server's :class:`~flask_sockets.threaded.Connections` (the app's,
    if the server has none). An invalid handshake gets its HTTP status, and
    a server at its connection cap (or stopping) ``503``. Any other server
    gets a logged error and a 500."""
    environ = req.environ
    sock = environ.get(WERKZEUG_SOCKET_KEY)
    if sock is None:
        sock = environ.get(GUNICORN_SOCKET_KEY)
    if sock is None:
        error = MissingWebSocketError()
        app.logger.error("%s %s: %s", req.method, req.path, error.description)
        raise error
    connections = environ.get(CONNECTIONS_KEY)
    if connections is None:
        connections = _app_connections(app, gunicorn=WERKZEUG_SOCKET_KEY not in environ)
    try:
        ws = ThreadedWebSocket(environ, sock, connections)
    except HandshakeRefused as e:
        abort(app.response_class(e.body, e.status, e.headers))
    if not connections.admit(ws):
        app.logger.warning(
            "Refused a WebSocket to %s with 503: %s",
            req.path,
            "the server is stopping"
            if connections.shutting_down
            else f"{connections.max_connections} sockets are open, the most this server takes",
        )
        abort(app.response_class("Too many open WebSockets; try again later.\n", 503, [("Retry-After", "1")]))
    connections.start()
    environ[WSGI_WEBSOCKET_KEY] = ws
    return ws


#: The ``app.extensions`` key of the app's own :class:`~flask_sockets.threaded.Connections`.
_CONNECTIONS_KEY = "sockets.connections"


def _app_connections(app: Flask, gunicorn: bool) -> Connections:
    """The app's :class:`~flask_sockets.threaded.Connections`, for servers
    that bring none: made at the first socket; under gunicorn, it closes the
    sockets when the worker stops, spread over ``SOCKETS_SHUTDOWN_WINDOW``
    within the worker's ``--graceful-timeout``."""
    connections: Connections | None = app.extensions.get(_CONNECTIONS_KEY)
    if connections is None:
        made = Connections(
            stopping=gunicorn_worker_stopping if gunicorn else None,
            shutdown_policy=ShutdownPolicy.from_config(app.config, gunicorn_graceful_timeout() or 0.0)
            if gunicorn
            else None,
        )
        connections = app.extensions.setdefault(_CONNECTIONS_KEY, made)
    return connections


def _end(ws: ThreadedWebSocket | None) -> None:
    """After the handler of a socket the view made itself: end its TCP
    connection (see :meth:`~flask_sockets.threaded.ThreadedWebSocket.end`)."""
    if ws is not None:
        ws.end()


#: The ``app.extensions`` key of the origins an app has refused (see :func:`_check_origin`).
_REFUSED_ORIGINS_KEY = "sockets.refused_origins"
#: Distinct refused origins an app names in a warning; later ones are logged at DEBUG.
MAX_LOGGED_ORIGINS = 100


def _check_origin(req: Request, app: Flask) -> None:
    origin = req.environ.get("HTTP_ORIGIN")  # what req.headers.get("Origin") reads
    if origin is None:  # not a browser: nothing to check (see is_origin_allowed)
        return
    allowed = app.config.get("SOCKETS_ALLOWED_ORIGINS")
    if not is_origin_allowed(origin, req.host, allowed):
        _log_refused_origin(app, req, origin, allowed)
        abort(403, f"WebSocket connections from {origin} are not allowed.")


def _log_refused_origin(app: Flask, req: Request, origin: str, allowed: t.Any) -> None:
    """Warn, once per origin, that ``origin`` was refused, with what was
    expected. The origins already named are kept per app, at most
    :data:`MAX_LOGGED_ORIGINS` of them (a client can send any number of
    distinct ones): past that, refusals are logged at DEBUG."""
    logged: set[str] = app.extensions.setdefault(_REFUSED_ORIGINS_KEY, set())
    if origin in logged:
        return
    if len(logged) >= MAX_LOGGED_ORIGINS:
        app.logger.debug("Refused a WebSocket to %s from origin %r", req.path, origin)
        return
    logged.add(origin)
    if allowed is None:
        expected = f"its own origin, {req.scheme}://{req.host} (SOCKETS_ALLOWED_ORIGINS is None: same origin only)"
    else:
        expected = f"SOCKETS_ALLOWED_ORIGINS = {allowed!r}"
    more = " (the last origin named; later ones are logged at DEBUG)" if len(logged) == MAX_LOGGED_ORIGINS else ""
    app.logger.warning(
        "Refused a WebSocket to %s from origin %r with 403: the app allows %s. To allow it, add it to"
        " SOCKETS_ALLOWED_ORIGINS. Each refused origin is logged once%s.",
        req.path,
        origin,
        expected,
        more,
    )


def _log_flood(app: Flask, req: Request, sock: SocketBase) -> None:
    """Warn that flood control closed the socket (a flooding client, or
    limits too low for the app: the warning names the key to raise)."""
    if getattr(sock, "close_code", None) == CloseCode.POLICY_VIOLATION:
        reason = getattr(sock, "close_reason", None)
        key = FLOOD_REASON_KEYS.get(reason)  # type: ignore[arg-type]
        if key is not None:
            app.logger.warning("Closed a WebSocket to %s with 1008 (%s; see %s)", req.path, reason, key)


def _choose_subprotocol(req: Request, supported: t.Sequence[str] | None) -> str | None:
    if not supported:
        return None
    offered = requested_subprotocols(req.environ)
    return next((protocol for protocol in supported if protocol in offered), None)


def _end_with_error(sock: SocketBase, error: Exception) -> None:
    """Close the socket for an exception that ended the handler. A server
    that defers the handshake (``accepted`` is false) turns the exception into
    a real HTTP response instead (a 403 from ``abort(403)``, a 500): the
    socket is left alone then."""
    if sock.accepted:
        _close(sock, *_close_code_for(error))


def _close_code_for(error: Exception) -> tuple[int, str]:
    """The close code and reason for an exception that ended a handler:
    1008 (policy violation) for an HTTP client error such as ``abort(403)``,
    1011 (internal error) for anything else."""
    if isinstance(error, HTTPException) and error.code is not None and 400 <= error.code < 500:
        return CLOSE_POLICY_VIOLATION, f"{error.code} {error.name}"
    return CLOSE_INTERNAL_ERROR, "Internal Server Error"


def _close(sock: SocketBase, code: int, reason: str = "") -> None:
    """Close ``sock`` with ``code`` and ``reason`` unless it is closed
    already. A socket the peer already dropped cannot take a close frame;
    that is logged, not raised."""
    if sock.closed:
        return
    try:
        sock.close(code, reason)
    except (ConnectionClosed, OSError) as e:
        current_app.logger.debug("closing the socket failed: %r", e)
